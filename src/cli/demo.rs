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
    /// What the `edge` lane's canary routes through: nginx where it is
    /// installed (auto), or always the built-in router, or nginx
    #[arg(long, value_enum, default_value = "auto")]
    pub router: crate::demo::EdgeRouter,
    /// Run the demo's live canary in the workspace DIR (the workbench
    /// starts this itself)
    #[arg(long, hide = true)]
    pub canary: bool,
}

pub fn run(ctx: &Context, a: DemoArgs) -> Result<u8, Failure> {
    let dir = match &a.dir {
        Some(d) if d.is_absolute() => d.clone(),
        Some(d) => ctx.cwd.join(d),
        None => crate::demo::default_dir(&ctx.cwd),
    };
    if a.canary {
        return canary(ctx, &dir);
    }
    println!("Building the stella demo in {}", dir.display());
    let started = std::time::Instant::now();
    // Decided once: the workspace and the summary say the same.
    let router = a.router.resolve();
    let ws = crate::demo::build(&dir, a.force, chrono::Utc::now(), router, |line| {
        println!("  {line}")
    })?;
    println!(
        "Built in {:.1}s: three apps, four lanes (edge: a canary on {}), {} sealed capsules",
        started.elapsed().as_secs_f64(),
        router.describe(),
        ws.read_store()?
            .capsules(&Default::default())
            .map(|c| c.len())
            .unwrap_or(0)
    );
    let open = !a.no_open && std::io::IsTerminal::is_terminal(&std::io::stdout());
    if !open {
        println!("Try:");
        let w = format!("stella --workspace {}", dir.display());
        println!(
            "  {w} gate check web:3.1 --env staging --key oncall       # approved, ready to promote"
        );
        println!(
            "  {w} release promote web:3.1 --to staging --key oncall   # as the on-call, proven by their key"
        );
        println!("  {w} gate check billing:2.4 --env staging    # blocked by a critical finding");
        println!(
            "  {w} gate check api-gateway:1.1 --env prod   # prod is frozen, api-gateway pinned by its rollback"
        );
        println!("  {w} status                                  # what runs where");
        println!("  {w} release pins                            # what rollbacks pinned");
        println!("  {w} capsule list");
        let live = ws
            .read_store()?
            .live_at("prod", "api-gateway", &chrono::Utc::now())?;
        if let Some(live) = live {
            let key = dir.join("workspace.pub");
            println!("  {w} key export workspace > {}", key.display());
            println!(
                "  stella verify oci-layout:{}@{} --env prod --key {}   # no workspace: the decision attached to the image",
                dir.join("images/api-gateway").display(),
                live.digest,
                key.display()
            );
        }
        println!(
            "  stella demo {}                         # opens it with a live canary in edge",
            dir.display()
        );
        println!(
            "  {w} tui --key oncall                        # the workbench, acting as the on-call"
        );
        return Ok(exit::OK);
    }
    // Something alive on the Rollout screen: a canary on the built-in
    // router under load, in a process of its own that ends with us.
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(ws.root().join(".stella/demo-canary.log"))?;
    let mut child = std::process::Command::new(exe)
        .args(["demo", "--canary"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    // The workbench acts as the demo's on-call, whose key the demo made.
    let shown = super::tui::open(
        ctx,
        &ws,
        super::tui::TuiArgs {
            key: Some(crate::demo::ONCALL_KEY.into()),
            ..Default::default()
        },
    );
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    shown
}

/// The demo's live canary: web 3.0 into `edge` (straight to stable,
/// starting the target's router: the built-in one, or nginx), a load generator of about 40 requests a
/// second, then web 3.1 as a canary whose steps hold ten minutes each.
/// Ends — stopping the router — when asked (SIGTERM) or when the
/// workbench that started it is gone.
fn canary(ctx: &Context, dir: &std::path::Path) -> Result<u8, Failure> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let ws = crate::workspace::Workspace::at(dir.to_owned());
    let config = ws.load_config()?;
    let listen = config
        .targets
        .get("edge-web")
        .and_then(|t| t.listen())
        .ok_or_else(|| {
            Failure::error(
                "this demo has no `edge-web` target; rebuild it with `stella demo --force`",
            )
        })?;
    let term = std::sync::Arc::new(AtomicBool::new(false));
    // SIGTERM, or SIGHUP from a terminal that closed under the workbench
    // (its whole process group gets it), sets `term`: either way the
    // router is stopped before this process ends. A runtime of its own
    // waits for them.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (mut sigterm, mut sighup) = rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    let flag = term.clone();
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = sigterm.recv() => {}
                _ = sighup.recv() => {}
            }
        });
        flag.store(true, Ordering::Relaxed);
    });
    let parent = nix::unistd::getppid();
    let root = ws.root().to_owned();
    std::thread::spawn(move || {
        while !term.load(Ordering::Relaxed) && nix::unistd::getppid() == parent {
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
        // Its router stops its nginx and release processes with it.
        let ws = crate::workspace::Workspace::at(root);
        if let Ok(config) = ws.load_config() {
            let _ = super::decide::drive(&ws, &config, |h| h.router_stop("edge-web"), |_| {});
        }
        std::process::exit(0);
    });
    let ctx = Context {
        cwd: ctx.cwd.clone(),
        workspace: Ok(ws.clone()),
    };
    let promote = |tag: &str| {
        super::decide::promote(
            &ctx,
            super::decide::PromoteArgs {
                reference: format!("web:{tag}"),
                also: Vec::new(),
                to: "edge".into(),
                approve: false,
                key: Some(crate::demo::ONCALL_KEY.into()),
                dry_run: false,
                at: None,
                requester: None,
                break_glass: None,
                json: false,
                parallel: None,
            },
        )
    };
    promote("3.0")?;
    let url = format!("http://{listen}/");
    std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(async {
            let client = reqwest::Client::new();
            loop {
                let _ = client.get(&url).send().await;
                tokio::time::sleep(std::time::Duration::from_millis(25)).await;
            }
        });
    });
    promote("3.1")?;
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
