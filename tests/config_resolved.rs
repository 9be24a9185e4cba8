//! `stella.toml` resolved into types: every value parsed and every default
//! applied once, when the file is read; nothing downstream parses config.

use std::path::Path;
use std::time::Duration;

use stella::config::resolved::DEFAULT_KEEP;
use stella::config::{Config, Pause, Strategy, Target};

fn parse(src: &str) -> Config {
    Config::parse(Path::new("/nowhere/stella.toml"), src).unwrap_or_else(|e| panic!("{e}"))
}

const TARGETS: &str = r#"
[workspace]
name = "acme"

[targets.files]
kind = "dir"
path = "deploy/{app}"

[targets.edge]
kind = "router"
path = "deploy/edge"
listen = "127.0.0.1:8080"
keep = 2
unpack = { max_release_mib = 10 }

[targets.front]
kind = "nginx"
path = "deploy/front"
listen = "127.0.0.1:8081"
command = "./server --port {port}"
nginx = { conf_dir = "/etc/nginx/conf.d" }

[targets.k8s]
kind = "script"
deploy = "kubectl apply -f web.yaml"
"#;

#[test]
fn each_target_is_its_kind_with_its_fields_parsed_and_defaulted() {
    let c = parse(TARGETS);
    let Target::Dir(files) = &c.targets["files"] else {
        panic!("{:?}", c.targets["files"])
    };
    assert_eq!(files.path, "deploy/{app}");
    assert_eq!(files.keep, DEFAULT_KEEP);
    assert_eq!(files.unpack, stella::deploy::unpack::Limits::default());

    let Target::Router(edge) = &c.targets["edge"] else {
        panic!("{:?}", c.targets["edge"])
    };
    assert_eq!(edge.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(edge.unpacked.keep, 2);
    assert_eq!(edge.unpacked.unpack.max_release_bytes, 10 << 20);
    assert_eq!(
        edge.unpacked.unpack.max_ratio,
        stella::deploy::unpack::Limits::default().max_ratio
    );
    assert_eq!(edge.command, None);

    let Target::Nginx(front, Some(existing)) = &c.targets["front"] else {
        panic!("{:?}", c.targets["front"])
    };
    assert_eq!(front.listen.port(), 8081);
    assert_eq!(front.command.as_deref(), Some("./server --port {port}"));
    assert_eq!(existing.conf_dir.get_ref(), "/etc/nginx/conf.d");

    let Target::Script(k8s) = &c.targets["k8s"] else {
        panic!("{:?}", c.targets["k8s"])
    };
    assert_eq!(k8s.deploy, "kubectl apply -f web.yaml");
    assert_eq!(k8s.timeout, Duration::from_secs(600));
    assert_eq!(k8s.rollback, None);
}

fn with_env(env: &str) -> Config {
    parse(&format!(
        "{TARGETS}\n[environments.prod]\ntargets = [\"edge\"]\n{env}"
    ))
}

#[test]
fn a_canary_carries_its_steps_pause_and_analysis_with_every_default() {
    let c = with_env(
        "strategy = \"canary\"\n[environments.prod.rollout]\nsteps = [10, 50, 100]\nscale_down_delay = \"10m\"\n",
    );
    let env = c.environment("prod").unwrap();
    assert_eq!(env.scale_down_delay, Some(Duration::from_secs(600)));
    let Strategy::Canary(canary) = &env.strategy else {
        panic!("{:?}", env.strategy)
    };
    assert_eq!(canary.steps, vec![10, 50, 100]);
    assert_eq!(canary.pause, Pause::For(Duration::from_secs(60)));
    // Counters are read once per pause unless told otherwise; without an
    // analysis table nothing judges them.
    assert_eq!(canary.interval, Duration::from_secs(60));
    assert_eq!(canary.analysis, None);

    let c = with_env(
        "strategy = \"canary\"\n[environments.prod.rollout]\nsteps = [50, 100]\npause = \"manual\"\n[environments.prod.rollout.analysis]\nmax_error_rate = 0.05\nprobe = { path = \"/healthz\" }\n",
    );
    let canary = c
        .environment("prod")
        .unwrap()
        .strategy
        .canary()
        .unwrap()
        .clone();
    assert_eq!(canary.pause, Pause::Manual);
    assert_eq!(canary.interval, Duration::from_secs(30));
    let analysis = canary.analysis.unwrap();
    assert_eq!(analysis.max_error_rate, Some(0.05));
    assert_eq!((analysis.min_requests, analysis.failure_limit), (1, 0));
    let probe = analysis.probe.unwrap();
    assert_eq!(
        (probe.path.as_str(), probe.status, probe.timeout),
        ("/healthz", 200, Duration::from_secs(2))
    );

    // Sampling is never faster than the counters are read.
    let c = with_env(
        "strategy = \"canary\"\n[environments.prod.rollout]\nsteps = [100]\n[environments.prod.rollout.analysis]\ninterval = \"0s\"\n",
    );
    let canary = c
        .environment("prod")
        .unwrap()
        .strategy
        .canary()
        .unwrap()
        .clone();
    assert_eq!(canary.interval, Duration::from_millis(500));
}

#[test]
fn other_strategies_carry_their_parameters() {
    let c = with_env("strategy = \"ab\"\n");
    assert!(matches!(
        c.environment("prod").unwrap().strategy,
        Strategy::Ab { split: 50 }
    ));
    let c = with_env("strategy = \"ab\"\n[environments.prod.rollout]\nsplit = 30\n");
    assert!(matches!(
        c.environment("prod").unwrap().strategy,
        Strategy::Ab { split: 30 }
    ));
    let c = with_env("strategy = \"bluegreen\"\n");
    assert!(matches!(
        c.environment("prod").unwrap().strategy,
        Strategy::BlueGreen
    ));
    let c = with_env("");
    let env = c.environment("prod").unwrap();
    assert!(matches!(env.strategy, Strategy::Direct));
    assert_eq!(env.scale_down_delay, None);
}

/// Config values are parsed where `stella.toml` is read: no code
/// downstream parses a duration, an address or a config string again
/// (and so none falls back to a default of its own when it cannot).
#[test]
fn nothing_downstream_reparses_config() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // Where parsing belongs: the config loader, the domain's parsers,
    // workflow templates (their own files, validated when loaded, and the
    // builtins that read a step's `with`), and the gates, which replay
    // from the environment a capsule recorded, not from `stella.toml`.
    let allowed = [
        "src/config/",
        "src/domain/",
        "src/workflow/",
        "src/gates/",
        "src/engine/builtins.rs",
    ];
    let forbidden = [
        "parse_duration(",
        ".get_ref().parse",
        ".parse::<std::net::SocketAddr>",
        ".parse::<SocketAddr>",
    ];
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(root.join("src")) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        if allowed.iter().any(|a| rel.starts_with(a)) {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            if forbidden.iter().any(|f| line.contains(f)) {
                found.push(format!("{rel}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "config parsed again downstream (resolve it in config/ instead):\n{}",
        found.join("\n")
    );
}
