//! Decisions attached to images: `stella verify IMAGE@DIGEST --env ENV`
//! (no workspace: the image and trusted keys are enough), and `stella
//! capsule push|pull|envelope`.

use std::path::{Path, PathBuf};

use clap::Args;

use super::{Context, Failure, exit, print_json};
use crate::capsule::attached::{self, ImageVerdict};
use crate::capsule::summary::VerificationResult;
use crate::capsule::verify::Trusted;
use crate::domain::{Digest, ImageRef, Selector};
use crate::engine::EventKind;
use crate::engine::publish::{PushWhich, Pushed};
use crate::registry::RegistryError;
use crate::sign::bundle::Bundle;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image, by digest: `HOST[:PORT]/REPO@sha256:…` or
    /// `oci-layout:PATH@sha256:…`
    pub image: String,
    /// The environment it is to run in
    #[arg(long)]
    pub env: String,
    /// A sealing public key to trust (SPKI PEM: what `stella key export
    /// workspace` prints in the deciding workspace); repeatable, at least
    /// one
    #[arg(long = "key", value_name = "KEY.pub", required = true)]
    pub keys: Vec<PathBuf>,
    /// Plain HTTP to the registry (loopback registries use it anyway)
    #[arg(long)]
    pub insecure: bool,
    /// Give up (exit 1) when the whole check takes longer, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub timeout: u64,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs `fut` on a fresh runtime, giving up after `seconds`: a registry
/// (or layout) that answers too slowly, or lists too much, never holds a
/// deploy script for longer.
fn within<T>(
    seconds: u64,
    fut: impl std::future::Future<Output = Result<T, RegistryError>>,
) -> Result<T, Failure> {
    super::runtime()?
        .block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(seconds.max(1)), fut).await
        })
        .map_err(|_| {
            Failure::error(format!(
                "no complete answer within {seconds} s (--timeout); nothing was verified"
            ))
            .hint("the registry or layout is slow or lists a great deal; try again, or raise --timeout")
        })?
        .map_err(registry_failure)
}

/// An image given by digest; a tag is refused, since what is verified is
/// one exact image.
fn image_by_digest(text: &str) -> Result<(ImageRef, Digest), Failure> {
    let image = ImageRef::parse(text).map_err(|e| {
        Failure::usage(e).hint("write HOST[:PORT]/REPO@sha256:… or oci-layout:PATH@sha256:…")
    })?;
    match &image.selector {
        Some(Selector::Digest(d)) => Ok((image.clone(), d.clone())),
        _ => Err(Failure::usage(format!(
            "`{text}` names no digest; decisions are about one exact image"
        ))
        .hint(format!(
            "give the digest: `{}@sha256:…` (`skopeo inspect --format '{{{{.Digest}}}}' docker://{}:TAG` prints it)",
            image.repository, image.repository
        ))),
    }
}

fn registry_failure(e: RegistryError) -> Failure {
    let hint = match &e {
        RegistryError::Unreachable { .. } => {
            "nothing was verified; check the registry is up and the address right, then run again"
        }
        RegistryError::Unauthorized { .. } => {
            "nothing was verified; give read access to the repository"
        }
        _ => "nothing was verified",
    };
    Failure::error(e).hint(hint)
}

fn trusted_keys(files: &[PathBuf]) -> Result<Vec<Trusted>, Failure> {
    let mut keys = crate::capsule::trust::from_files(files).map_err(|e| {
        // A private key given by mistake is said so, not parsed at.
        let private = files.iter().find(|f| {
            std::fs::File::open(f).is_ok_and(|h| {
                let mut head = String::new();
                std::io::Read::read_to_string(&mut std::io::Read::take(h, 4096), &mut head).is_ok()
                    && head.contains("PRIVATE KEY")
            })
        });
        match private {
            Some(f) => Failure::usage(format!(
                "{} is a private key; --key takes the public half",
                f.display()
            ))
            .hint("`stella key export workspace` prints the sealing key's public half (SPKI PEM)"),
            None => Failure::usage(e)
                .hint("--key takes a public key file (SPKI PEM), as `stella key export workspace` prints it"),
        }
    })?;
    for k in &mut keys {
        k.name = k.name.replace("trusted by --trust", "trusted by --key");
    }
    Ok(keys)
}

/// `stella verify`: exit 0 when the newest valid decision for the
/// environment passed, 3 when it failed or there is none, 1 when the
/// registry could not be read.
pub fn verify(ctx: &Context, a: VerifyArgs) -> Result<u8, Failure> {
    let (json, place) = (a.json, format!("stella verify {}", a.image));
    super::decide::json_error(json, place, verify_inner(ctx, a))
}

fn verify_inner(ctx: &Context, a: VerifyArgs) -> Result<u8, Failure> {
    let (image, digest) = image_by_digest(&a.image)?;
    let trusted = trusted_keys(&a.keys)?;
    let base = ctx.cwd.clone();
    let verdict = within(
        a.timeout,
        attached::verify_image(
            &image.repository,
            &digest,
            &a.env,
            &trusted,
            a.insecure,
            &base,
        ),
    )?;
    for r in &verdict.rejected {
        eprintln!(
            "warning: ignored attestation {}: {}",
            r.manifest.short(),
            r.problem
        );
    }
    if a.json {
        print_json(&verdict)?;
    } else {
        print_verdict(&verdict);
    }
    Ok(if verdict.allowed {
        exit::OK
    } else {
        exit::BLOCKED
    })
}

fn print_verdict(v: &ImageVerdict) {
    let at = format!("{}@{}", v.image, v.digest);
    match &v.decision {
        Some(d) if v.allowed => {
            println!("✓ ALLOWED  {at} may run in {}", v.environment);
        }
        Some(_) => println!(
            "✗ DENIED  {at}: its newest decision for {} FAILED",
            v.environment
        ),
        None => println!(
            "✗ DENIED  {at}: no valid decision for {} is attached{}",
            v.environment,
            if v.environments.is_empty() {
                String::new()
            } else {
                format!(" (decisions for: {})", v.environments.join(", "))
            }
        ),
    }
    if let Some(d) = &v.decision {
        println!(
            "  decided    {} by {}{}",
            d.time_verified,
            d.requested_by.as_deref().unwrap_or("?"),
            if d.requester_proven == Some(true) {
                " (proven by signature)"
            } else {
                ""
            }
        );
        println!(
            "  decision   {} {} → {}",
            d.action.as_deref().unwrap_or("?"),
            d.app.as_deref().unwrap_or("?"),
            d.outcome.as_deref().unwrap_or("?"),
        );
        println!(
            "  policy     {} {}",
            d.policy_uri.as_deref().unwrap_or("?"),
            d.policy_digest.as_deref().unwrap_or("")
        );
        println!(
            "  checked    {}",
            match (d.verified_levels.is_empty(), d.result) {
                (false, _) => d.verified_levels.join(", "),
                (true, VerificationResult::Passed) => "no gate: the environment has none".into(),
                (true, VerificationResult::Failed) => "no gate held".into(),
            }
        );
        println!("  signed by  {}", d.signed_by);
        if let Some(c) = &d.capsule {
            println!("  capsule    {c}  (`stella capsule pull {at}` fetches it)");
        }
        if v.decisions > 1 {
            println!(
                "  ({} valid decisions for {}; the newest decides)",
                v.decisions, v.environment
            );
        }
    }
    if !v.rejected.is_empty() {
        println!(
            "  {} attestation(s) ignored: not signed by a trusted key, tampered, or not about this image (listed above)",
            v.rejected.len()
        );
    }
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// A capsule id or `latest` (of the environment with --env)
    #[arg(required_unless_present = "pending", conflicts_with = "pending")]
    pub id: Option<String>,
    /// With `latest`: the latest of this environment
    #[arg(long)]
    pub env: Option<String>,
    /// Every attachment still pending (refused or unreachable before)
    #[arg(long)]
    pub pending: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// `stella capsule push`: through the engine, which records each push.
pub fn push(ctx: &Context, a: PushArgs) -> Result<u8, Failure> {
    let json = a.json;
    super::decide::json_error(json, "stella capsule push".into(), push_inner(ctx, a))
}

fn push_inner(ctx: &Context, a: PushArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let config = super::load_config(ctx, ws)?;
    let which = match &a.id {
        Some(id) if !a.pending => {
            let (row, _) = super::capsule::find(ctx, id, a.env.as_deref())?;
            PushWhich::Capsule(row.id)
        }
        _ => PushWhich::Pending,
    };
    let json = a.json;
    let pushed = super::decide::drive(
        ws,
        &config,
        |h| h.push_capsules(which.clone()),
        |ev| {
            if !json {
                super::decide::print_note(&ev.kind);
            }
        },
    )?;
    let failed = pushed
        .iter()
        .filter(|p| p.state == crate::domain::AttachState::Pending)
        .count();
    if json {
        print_json(&serde_json::json!({ "pushed": pushed }))?;
    } else if pushed.is_empty() {
        println!("nothing pending: every capsule to attach is attached");
    } else {
        for p in &pushed {
            print_pushed(p);
        }
    }
    Ok(if failed > 0 { exit::ERROR } else { exit::OK })
}

fn print_pushed(p: &Pushed) {
    match (&p.capsule_manifest, &p.summary_manifest, &p.error) {
        (_, _, Some(e)) => println!(
            "✗ capsule #{} → {}: {e} (pending, {} tries)",
            p.capsule_id, p.image, p.attempts
        ),
        (Some(c), Some(s), None) => println!(
            "✓ capsule #{} → {}  capsule {}  summary {}",
            p.capsule_id,
            p.image,
            c.short(),
            s.short()
        ),
        _ => println!("? capsule #{} → {}", p.capsule_id, p.image),
    }
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// The image, by digest: `HOST[:PORT]/REPO@sha256:…` or
    /// `oci-layout:PATH@sha256:…`
    pub image: String,
    /// The folder to write them into (default: `capsules-SHORT12`)
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Verify each against this sealing public key (SPKI PEM); repeatable
    #[arg(long = "key", alias = "trust", value_name = "KEY.pub")]
    pub keys: Vec<PathBuf>,
    /// Also write each verification summary as a Sigstore bundle
    #[arg(long)]
    pub bundle: bool,
    /// Plain HTTP to the registry (loopback registries use it anyway)
    #[arg(long)]
    pub insecure: bool,
    /// Give up (exit 1) when fetching takes longer, in seconds
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    pub timeout: u64,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, serde::Serialize)]
struct PulledFile {
    path: PathBuf,
    environment: String,
    action: String,
    decision: String,
    sealed: String,
    payload_digest: Option<Digest>,
    /// With --key: whether it verifies, and why not.
    valid: Option<bool>,
    problems: Vec<String>,
    summary: Option<PathBuf>,
    bundle: Option<PathBuf>,
}

/// `stella capsule pull`: every capsule attached to the image, written as
/// files a reviewer can `capsule verify` and `capsule replay` offline.
pub fn pull(ctx: &Context, a: PullArgs) -> Result<u8, Failure> {
    let (json, place) = (a.json, format!("stella capsule pull {}", a.image));
    super::decide::json_error(json, place, pull_inner(ctx, a))
}

fn pull_inner(ctx: &Context, a: PullArgs) -> Result<u8, Failure> {
    let (image, digest) = image_by_digest(&a.image)?;
    let trusted = if a.keys.is_empty() {
        Vec::new()
    } else {
        trusted_keys(&a.keys)?
    };
    let (pulled, rejected) = within(
        a.timeout,
        attached::pull(&image.repository, &digest, a.insecure, &ctx.cwd),
    )?;
    for r in &rejected {
        eprintln!("warning: skipped {}: {}", r.manifest.short(), r.problem);
    }
    if pulled.is_empty() {
        return Err(Failure::error(format!(
            "no capsule is attached to {}@{digest}",
            image.repository
        ))
        .hint("decisions are attached when the app has `attach = true` (the default for registries); `stella capsule push ID` attaches an earlier one"));
    }
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("capsules-{}", &digest.hex()[..12])));
    std::fs::create_dir_all(&out).map_err(|e| {
        Failure::error(format!("cannot create {}: {e}", out.display()))
            .hint("give a folder you can write with --out")
    })?;
    // What the registry sent names the files: written through a handle on
    // the folder, so no name can reach outside it, whatever it holds.
    let folder = cap_std::fs::Dir::open_ambient_dir(&out, cap_std::ambient_authority())
        .map_err(|e| Failure::error(format!("cannot open {}: {e}", out.display())))?;
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, Failure> {
        let tmp = format!(".{name}.{}.tmp", std::process::id());
        folder
            .create(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, bytes))
            .and_then(|()| folder.rename(&tmp, &folder, name))
            .map_err(|e| {
                Failure::error(format!("cannot write {name} in {}: {e}", out.display()))
            })?;
        Ok(out.join(name))
    };
    let mut files = Vec::new();
    let mut invalid = 0usize;
    for p in &pulled {
        let report =
            (!trusted.is_empty()).then(|| crate::capsule::verify::verify(&p.file, &trusted));
        let st = report
            .as_ref()
            .and_then(|r| r.statement.clone())
            .or_else(|| {
                p.file
                    .envelope
                    .payload_bytes()
                    .ok()
                    .and_then(|b| serde_json::from_slice::<crate::capsule::Statement>(&b).ok())
            });
        let Some(st) = st else { continue };
        let payload = Digest::of(&p.file.envelope.payload_bytes().unwrap_or_default());
        // With --key, a capsule that does not verify is named, not kept.
        if let Some(r) = report.as_ref().filter(|r| !r.valid) {
            invalid += 1;
            eprintln!(
                "warning: not written: capsule {} (manifest {}) does not verify: {}",
                payload.short(),
                p.manifest.short(),
                r.problems.join("; ")
            );
            continue;
        }
        let stem = format!(
            "{}-{}-{}",
            file_word(&st.predicate.to),
            st.predicate.action.as_str(),
            &payload.hex()[..12]
        );
        let path = write(&format!("{stem}.capsule.json"), &p.bytes)?;
        let (mut summary, mut bundle) = (None, None);
        if let Some(s) = &p.file.summary {
            let mut bytes = serde_json::to_vec_pretty(s).map_err(Failure::error)?;
            bytes.push(b'\n');
            summary = Some(write(&format!("{stem}.summary.dsse.json"), &bytes)?);
            if a.bundle {
                bundle = Some(write(
                    &format!("{stem}.summary.sigstore.json"),
                    &Bundle::of(s).to_json(),
                )?);
            }
        }
        files.push(PulledFile {
            path,
            environment: st.predicate.to.clone(),
            action: st.predicate.action.as_str().to_owned(),
            decision: st.predicate.decision_word().to_owned(),
            sealed: st.predicate.clock.clone(),
            payload_digest: Some(payload),
            valid: report.as_ref().map(|r| r.valid),
            problems: report.map(|r| r.problems).unwrap_or_default(),
            summary,
            bundle,
        });
    }
    if a.json {
        print_json(&serde_json::json!({
            "verified": !trusted.is_empty(),
            "not_written": invalid,
            "image": image.repository.to_string(),
            "digest": digest,
            "capsules": files,
            "skipped": rejected,
        }))?;
    } else {
        for f in &files {
            let mark = match f.valid {
                Some(true) => "✓ verified  ",
                Some(false) => "✗ invalid   ",
                None => "· unverified",
            };
            println!(
                "{mark} {}  {} {} {} ({})",
                f.path.display(),
                f.environment,
                f.action,
                f.decision,
                f.sealed
            );
            for p in &f.problems {
                println!("    ! {p}");
            }
        }
        println!(
            "{} capsule(s) in {}{}; `stella capsule verify FILE --trust KEY.pub` and `stella capsule replay FILE --trust KEY.pub` check one offline",
            files.len(),
            out.display(),
            if trusted.is_empty() {
                " — NOT verified: what they say is unchecked until verified with the sealing key (--key)"
            } else {
                ""
            }
        );
    }
    Ok(if invalid > 0 { exit::ERROR } else { exit::OK })
}

#[derive(Debug, Args)]
pub struct EnvelopeArgs {
    /// A capsule id or `latest`
    pub id: String,
    /// With `latest`: the latest of this environment
    #[arg(long)]
    pub env: Option<String>,
    /// The decision's verification summary instead of the capsule's own
    /// envelope
    #[arg(long)]
    pub summary: bool,
    /// As a Sigstore bundle (v0.3, a public-key hint, no log entry)
    #[arg(long)]
    pub bundle: bool,
    /// Where to write it (default: stdout)
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `stella capsule envelope`: a DSSE envelope by itself, for tools that
/// take envelopes or bundles rather than capsule files.
pub fn envelope(ctx: &Context, a: EnvelopeArgs) -> Result<u8, Failure> {
    let ws = ctx.workspace()?;
    let (row, envelope) = super::capsule::find(ctx, &a.id, a.env.as_deref())?;
    let bytes = if a.summary {
        ws.read_store()?
            .summary(row.id)?
            .ok_or_else(|| {
                Failure::error(format!(
                    "capsule #{} has no verification summary: it is a {} decision, or was sealed before summaries existed",
                    row.id, row.action
                ))
                .hint("`stella capsule push ID` makes one for a promotion or rollback sealed before")
            })?
            .envelope
    } else {
        envelope
    };
    let env: crate::sign::Envelope = serde_json::from_slice(&bytes).map_err(Failure::error)?;
    let out = if a.bundle {
        Bundle::of(&env).to_json()
    } else {
        let mut v = serde_json::to_vec_pretty(&env).map_err(Failure::error)?;
        v.push(b'\n');
        v
    };
    write_out(a.out.as_deref(), &out)
}

/// An environment's name as part of a file name: what the config allows
/// (letters, digits, `-`, `_`, `.`), anything else `_`, at most 64.
fn file_word(name: &str) -> String {
    let w: String = name
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if w.is_empty() || w.starts_with('.') {
        format!("_{w}")
    } else {
        w
    }
}

fn write_out(path: Option<&Path>, bytes: &[u8]) -> Result<u8, Failure> {
    match path {
        Some(p) => {
            crate::engine::seal::write_atomic(p, bytes)?;
            eprintln!("written: {}", p.display());
        }
        None => {
            use std::io::Write;
            std::io::stdout().write_all(bytes)?;
        }
    }
    Ok(exit::OK)
}

/// How an attachment event reads on stderr.
pub fn attach_line(kind: &EventKind) -> Option<String> {
    match kind {
        EventKind::CapsuleAttached {
            capsule_id,
            image,
            via,
            ..
        } => Some(format!(
            "attached: capsule #{capsule_id} and its verification summary → {image} ({via})"
        )),
        EventKind::CapsuleAttachFailed {
            capsule_id,
            image,
            error,
            attempts,
            pending,
        } => Some(format!(
            "warning: capsule #{capsule_id} is not attached to {image} ({attempts} tries): {error}\n\
             hint: the decision stands, sealed; {pending} attachment(s) pending — `stella capsule push --pending` tries again, as does the next decision attached to the same image"
        )),
        _ => None,
    }
}
