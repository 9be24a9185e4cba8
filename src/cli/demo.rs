//! `stella demo [DIR]`: build the embedded demo workspace, then open the
//! workbench on it.

use std::path::PathBuf;

use clap::Args;

use super::{Context, Failure, exit};

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to build it (default: ./stella-demo); nothing is written outside it
    pub dir: Option<PathBuf>,
    /// Rebuild a demo folder that already exists
    #[arg(long)]
    pub force: bool,
    /// Build the workspace only; do not open the workbench
    #[arg(long)]
    pub no_open: bool,
}

pub fn run(ctx: &Context, a: DemoArgs) -> Result<u8, Failure> {
    let dir = match &a.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => ctx.cwd.join(d),
        None => crate::demo::default_dir(&ctx.cwd),
    };
    println!("Building the stella demo in {}", dir.display());
    let started = std::time::Instant::now();
    let ws = crate::demo::build(&dir, a.force, chrono::Utc::now(), |line| {
        println!("  {line}")
    })?;
    println!(
        "Built in {:.1}s: three apps, three lanes, {} sealed capsules",
        started.elapsed().as_secs_f64(),
        ws.open_store()?
            .capsules(&Default::default())
            .map(|c| c.len())
            .unwrap_or(0)
    );
    let open = !a.no_open && std::io::IsTerminal::is_terminal(&std::io::stdout());
    if !open {
        println!("Try:");
        let w = format!("stella --workspace {}", dir.display());
        println!("  {w} gate check web:3.1 --env staging        # approved, ready to promote");
        println!("  {w} release promote web:3.1 --to staging    # watch its workflow run");
        println!("  {w} gate check billing:2.4 --env staging    # blocked by a critical finding");
        println!("  {w} gate check api-gateway:1.1 --env prod   # prod is frozen right now");
        println!("  {w} capsule list");
        println!("  {w} tui                                     # the workbench");
        return Ok(exit::OK);
    }
    super::tui::open(ctx, &ws, super::tui::TuiArgs::default())
}
