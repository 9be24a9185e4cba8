//! `stella key gen|list|export|import`: ed25519 keys. Private keys live in
//! `.stella/keys/NAME.key` (PKCS#8 PEM, mode 0600); the store knows every
//! key's owner email and id.

use chrono::SecondsFormat;
use clap::{Args, Subcommand};

use super::{Context, Failure, exit, load_config, print_json};
use crate::domain::release::{valid_app_name, valid_email};
use crate::engine::KeyRequest;
use crate::sign::PublicKey;
use crate::workspace::Workspace;

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Generate an ed25519 key pair for EMAIL (`workspace` is the key that
    /// seals capsules; `stella init` makes it)
    Gen(GenArgs),
    /// List the keys this workspace knows
    List(ListArgs),
    /// Print a key's public half (SPKI PEM), to give to other workspaces
    Export(ExportArgs),
    /// Trust someone else's public key (SPKI PEM) as EMAIL's
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    pub name: String,
    /// The key owner's email (approver lists name people by it)
    #[arg(long)]
    pub email: String,
    /// EMAIL already has a key and this is another one for them, on purpose
    #[arg(long)]
    pub another_key: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    pub name: String,
    /// The key owner's email (approver lists name people by it)
    #[arg(long)]
    pub email: String,
    /// A public key file (`-----BEGIN PUBLIC KEY-----`)
    pub file: std::path::PathBuf,
    /// EMAIL already has a key and this is another one for them, on purpose
    #[arg(long)]
    pub another_key: bool,
}

pub fn run(ctx: &Context, cmd: KeyCommand) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    match cmd {
        KeyCommand::Gen(a) => gen_key(ctx, ws, a),
        KeyCommand::List(a) => list(ws, a),
        KeyCommand::Export(a) => export(ws, a),
        KeyCommand::Import(a) => import(ctx, ws, a),
    }
}

fn check_name_email(name: &str, email: &str) -> Result<(), Failure> {
    if !valid_app_name(name) {
        return Err(Failure::usage(format!("`{name}` cannot be a key name"))
            .hint("use letters, digits, `-`, `_` and `.`, e.g. alice"));
    }
    if !valid_email(email) {
        return Err(Failure::usage(format!(
            "`{email}` is not an email address like alice@example.com"
        )));
    }
    Ok(())
}

fn gen_key(ctx: &Context, ws: &Workspace, a: GenArgs) -> Result<u8, Failure> {
    check_name_email(&a.name, &a.email)?;
    // The name first (no key has an empty id): a taken name is the
    // clearer error.
    let req = KeyRequest {
        name: a.name.clone(),
        email: a.email.clone(),
        import_pem: None,
        another: a.another_key,
    };
    let added = super::decide::drive(ws, &load_config(ctx, ws)?, |h| h.new_key(req), |_| {})?;
    println!(
        "Created key `{}` for {} (keyid {})",
        a.name,
        a.email,
        &added.keyid[..16]
    );
    if let Some(path) = &added.private {
        println!("  private: {} (mode 0600)", path.display());
    }
    println!("  public:  `stella key export {}`", a.name);
    Ok(exit::OK)
}

fn list(ws: &Workspace, a: ListArgs) -> Result<u8, Failure> {
    let keys = ws.read_store()?.keys()?;
    if a.json {
        print_json(&keys)?;
        return Ok(exit::OK);
    }
    if keys.is_empty() {
        eprintln!("no keys yet; `stella key gen NAME --email EMAIL` makes one");
        return Ok(exit::OK);
    }
    let wn = keys.iter().map(|k| k.name.len()).max().unwrap_or(4).max(4);
    let we = keys.iter().map(|k| k.email.len()).max().unwrap_or(5).max(5);
    println!(
        "{:<wn$}  {:<we$}  {:<16}  {:<7}  ADDED",
        "NAME", "EMAIL", "KEYID", "PRIVATE"
    );
    for k in keys {
        println!(
            "{:<wn$}  {:<we$}  {:<16}  {:<7}  {}",
            k.name,
            k.email,
            &k.keyid[..16],
            if k.private { "yes" } else { "no" },
            k.added_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        );
    }
    Ok(exit::OK)
}

fn export(ws: &Workspace, a: ExportArgs) -> Result<u8, Failure> {
    let rec = ws.read_store()?.key(&a.name)?.ok_or_else(|| {
        Failure::usage(format!("no key named `{}`", a.name))
            .hint("`stella key list` shows the keys")
    })?;
    print!("{}", rec.public_pem);
    Ok(exit::OK)
}

fn import(ctx: &Context, ws: &Workspace, a: ImportArgs) -> Result<u8, Failure> {
    check_name_email(&a.name, &a.email)?;
    let file = a.file.display().to_string();
    let pem = std::fs::read_to_string(&a.file)
        .map_err(|e| Failure::error(format!("cannot read {file}: {e}")))?;
    // Named here: a file that is not a public key says which file.
    PublicKey::from_pem(&pem).map_err(|e| Failure::error(format!("{file}: {e}")))?;
    let req = KeyRequest {
        name: a.name.clone(),
        email: a.email.clone(),
        import_pem: Some(pem),
        another: a.another_key,
    };
    let added = super::decide::drive(ws, &load_config(ctx, ws)?, |h| h.new_key(req), |_| {})?;
    println!(
        "Imported `{}` as {}'s key (keyid {})",
        a.name,
        a.email,
        &added.keyid[..16]
    );
    if a.another_key {
        println!(
            "note: {} now has more than one key; each approves and asks as them",
            a.email
        );
    }
    Ok(exit::OK)
}
