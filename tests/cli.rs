//! The everyday commands: completions (in real shells), list, cache, progress,
//! verbosity, errors and exit codes.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

const SCRIPTS: [(&str, &str); 5] = [
    ("bash", "fleetctx.bash"),
    ("zsh", "_fleetctx"),
    ("fish", "fleetctx.fish"),
    ("powershell", "_fleetctx.ps1"),
    ("elvish", "fleetctx.elv"),
];

#[test]
fn checked_in_completions_match_what_the_binary_generates() {
    let world = World::new();
    for (shell, file) in SCRIPTS {
        let generated = run(&mut world.fleetctx(&["completions", shell]))
            .ok()
            .stdout;
        let checked_in =
            std::fs::read_to_string(Path::new(REPO).join("completions").join(file)).unwrap();
        assert_eq!(
            checked_in, generated,
            "completions/{file} is stale: run `fleetctx completions {shell} > completions/{file}`"
        );
    }
}

/// A kubeconfig with two contexts, and a PATH whose `fleetctx` is the built binary.
fn completion_world() -> World {
    let mut world = World::new();
    let bin = world.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("fleetctx")).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        world.env.iter().find(|(k, _)| k == "PATH").unwrap().1
    );
    world.set("PATH", path);
    let kubeconfig = world.path("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncontexts:\n- name: prod-eu\n  context: {cluster: a, user: a}\n- name: staging-us\n  context: {cluster: a, user: a}\n",
    )
    .unwrap();
    world.set("KUBECONFIG", kubeconfig.display().to_string());
    world
}

#[test]
fn bash_completes_subcommands_and_context_names_as_typed() {
    needs!("tmux", "bash");
    let world = completion_world();
    let tmux = Tmux::bash("completion", &world.env);
    let script = Path::new(REPO).join("completions/fleetctx.bash");
    tmux.keys(&[&format!("source {}", script.display()), "Enter"]);
    tmux.keys(&["clear", "Enter"]);
    tmux.keys(&["fleetctx sy", "Tab"]);
    tmux.expect("fleetctx sync");
    tmux.keys(&["C-u"]);
    tmux.keys(&["fleetctx list st", "Tab"]);
    tmux.expect("fleetctx list staging-us");
    tmux.keys(&["C-u"]);
    tmux.keys(&["fleetctx list ", "Tab", "Tab"]);
    let screen = tmux.expect("prod-eu");
    assert!(screen.contains("staging-us"), "{screen}");
}

#[test]
fn fish_completes_from_the_checked_in_script() {
    needs!("fish");
    let world = completion_world();
    let fish = tool("fish").unwrap();
    let script = Path::new(REPO).join("completions/fleetctx.fish");
    let query = |line: &str| {
        run(world
            .command(&fish)
            .args(["--no-config", "-c"])
            .arg(format!("source {}; complete -C '{line}'", script.display())))
        .ok()
        .stdout
    };
    assert!(
        query("fleetctx sy").lines().any(|l| l.starts_with("sync")),
        "{}",
        query("fleetctx sy")
    );
    let contexts = query("fleetctx list ");
    assert!(
        contexts.contains("prod-eu") && contexts.contains("staging-us"),
        "{contexts}"
    );
}

#[test]
fn a_completion_call_reads_only_the_local_kubeconfig() {
    let mut world = completion_world();
    // No credentials, no network: these endpoints refuse every connection.
    world.set("AWS_ENDPOINT_URL", "http://127.0.0.1:9").set(
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_CONTAINER",
        "http://127.0.0.1:9",
    );
    let started = Instant::now();
    let ran = run(world
        .fleetctx(&["--", "fleetctx", "list", "pr"])
        .env("FLEETCTX_COMPLETE", "fish"))
    .ok();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(ran.stdout.trim(), "prod-eu");
}

#[test]
fn list_shows_managed_entries_in_three_formats() {
    let Some(fleet) = Fleet::start() else { return };
    std::fs::write(
        &fleet.kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: foreign\n  cluster: {server: https://127.0.0.1:9}\ncontexts:\n- name: foreign\n  context: {cluster: foreign, user: foreign}\nusers:\n- name: foreign\n  user: {token: x}\n",
    )
    .unwrap();
    fleet.sync(&[]).ok();
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let list = |format: &str| {
        run(&mut fleet
            .world
            .fleetctx(&["list", "-o", format, "--kubeconfig", &kubeconfig]))
        .ok()
        .stdout
    };

    let json: serde_json::Value = serde_json::from_str(&list("json")).unwrap();
    let rows = json.as_array().unwrap();
    let contexts: Vec<&str> = rows
        .iter()
        .map(|r| r["context"].as_str().unwrap())
        .collect();
    assert_eq!(contexts, SYNCED, "foreign entries must not appear");
    let gke = &rows[4];
    assert_eq!(gke["provider"], "gke");
    assert_eq!(gke["project"], "p-alpha");
    assert_eq!(gke["account"], serde_json::Value::Null);
    assert_eq!(gke["location"], "europe-west1-b");
    assert_eq!(gke["cluster"], "a");
    assert!(
        gke["server"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1:")
    );
    assert!(gke["last_changed"].as_str().unwrap().ends_with('Z'));
    let eks = &rows[2];
    assert_eq!(
        (
            eks["provider"].as_str(),
            eks["account"].as_str(),
            eks["profile"].as_str()
        ),
        (Some("eks"), Some("123456789012"), Some("on"))
    );
    for key in [
        "context",
        "provider",
        "project",
        "account",
        "profile",
        "location",
        "cluster",
        "server",
        "last_changed",
        "file",
    ] {
        assert!(
            rows.iter().all(|r| r.get(key).is_some()),
            "key {key} missing"
        );
    }

    let yaml: serde_json::Value = yaml_serde::from_str(&list("yaml")).unwrap();
    assert_eq!(yaml, json, "yaml and json carry the same shape");

    let table = list("table");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("CONTEXT"));
    assert_eq!(lines.count(), SYNCED.len());
    assert!(!table.contains("foreign"));
}

#[test]
fn cache_list_shows_no_secret_and_clear_removes_only_what_it_says() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let mut world = World::new();
    world
        .set("GOOGLE_APPLICATION_CREDENTIALS", fakes.field("sa_key"))
        .aws_keys("AKIAFLEETCTXCACHE001", "cache-secret-value", None);
    let gke = run(&mut world.fleetctx(&["token", "gke"])).ok().token();
    let eks =
        run(&mut world.fleetctx(&["token", "eks", "--cluster", "c", "--region", "us-east-1"]))
            .ok()
            .token();

    for format in ["table", "json", "yaml"] {
        let listing = run(&mut world.fleetctx(&["cache", "list", "-o", format]))
            .ok()
            .stdout;
        assert!(
            !listing.contains(&gke) && !listing.contains(&eks),
            "a token in `cache list`"
        );
        assert!(!listing.contains("cache-secret-value"));
        assert!(
            listing.contains("fleetctx-test@test-project.iam.gserviceaccount.com"),
            "{listing}"
        );
        assert!(listing.contains("cluster c in us-east-1"), "{listing}");
    }
    let cleared = run(&mut world.fleetctx(&["cache", "clear", "--provider", "gke"])).ok();
    assert!(cleared.stderr.contains("removed 1"), "{}", cleared.stderr);
    let json: serde_json::Value = serde_json::from_str(
        &run(&mut world.fleetctx(&["cache", "list", "-o", "json"]))
            .ok()
            .stdout,
    )
    .unwrap();
    let providers: Vec<&str> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["eks"]);
    run(&mut world.fleetctx(&["cache", "clear"])).ok();
    assert_eq!(
        run(&mut world.fleetctx(&["cache", "list", "-o", "json"]))
            .ok()
            .stdout
            .trim(),
        "[]"
    );
}

#[test]
fn progress_shows_on_a_terminal_and_not_through_a_pipe() {
    let Some(fleet) = Fleet::start() else { return };
    let python = tool("python").unwrap();
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let args = [
        "sync",
        "--gke-all-projects",
        "--eks-profile",
        "dev",
        "--eks-region",
        "us-east-1",
        "--kubeconfig",
        &kubeconfig,
    ];
    let mut under_pty = fleet.world.command(&python);
    under_pty
        .args([
            "-c",
            "import pty, sys; sys.exit(pty.spawn(sys.argv[1:]) >> 8)",
            BIN,
        ])
        .args(args);
    let ran = run(&mut under_pty);
    assert!(
        ran.stdout.contains("scanning:") && ran.stdout.contains("sources done"),
        "no progress on a terminal:\n{}",
        ran.stdout
    );
    let piped = run(&mut fleet.world.fleetctx(&args)).ok();
    assert!(!piped.stderr.contains("scanning:"), "{}", piped.stderr);
    let quiet = run(&mut fleet.world.fleetctx(&[&["-q"][..], &args[..]].concat())).ok();
    assert!(
        quiet.stderr.is_empty(),
        "-q prints nothing but errors: {}",
        quiet.stderr
    );
}

#[test]
fn verbose_logs_every_call_and_no_secret() {
    let Some(fleet) = Fleet::start() else { return };
    let ran = fleet.sync(&["-v"]).ok();
    assert!(ran.stderr.contains("clusters"), "{}", ran.stderr);
    assert!(ran.stderr.contains("ms)"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("ListClusters") && ran.stderr.contains("projects.search"),
        "{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("ya29."),
        "an access token in -v output"
    );
    assert!(
        !ran.stderr.contains(DEV_SECRET),
        "a secret key in -v output"
    );
    assert!(
        !ran.stderr.contains("k8s-aws-v1."),
        "an EKS token in -v output"
    );
}

#[test]
fn a_closed_stdout_pipe_exits_quietly() {
    let Some(fleet) = Fleet::start() else { return };
    fleet.sync(&[]).ok();
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let mut child = fleet
        .world
        .fleetctx(&["list", "--kubeconfig", &kubeconfig])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // `| head -0`: the reader is gone before the first write
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn usage_errors_exit_2_with_a_clear_message() {
    let world = World::new();
    let ran = run(&mut world.fleetctx(&["sync", "--no-such-flag"]));
    assert_eq!(ran.status, 2);
    assert!(ran.stderr.contains("--no-such-flag"), "{}", ran.stderr);
    let ran = run(&mut world.fleetctx(&["token", "eks", "--region", "us-east-1"]));
    assert_eq!(ran.status, 2);
    assert!(ran.stderr.contains("--cluster"), "{}", ran.stderr);
    assert!(ran.stdout.is_empty());
}

#[test]
fn help_teaches_and_version_works() {
    let world = World::new();
    let version = run(&mut world.fleetctx(&["--version"])).ok();
    assert_eq!(
        version.stdout.trim(),
        format!("fleetctx {}", env!("CARGO_PKG_VERSION"))
    );
    let help = run(&mut world.fleetctx(&["--help"])).ok().stdout;
    for command in ["token", "sync", "list", "cache", "completions"] {
        assert!(help.contains(command), "{help}");
    }
    for args in [
        &["sync", "--help"][..],
        &["list", "--help"],
        &["token", "eks", "--help"],
        &["token", "gke", "--help"],
        &["cache", "clear", "--help"],
        &["completions", "--help"],
    ] {
        let text = run(&mut world.fleetctx(args)).ok().stdout;
        assert!(
            text.contains("Example: fleetctx"),
            "{args:?} --help shows no example:\n{text}"
        );
    }
}

#[test]
fn token_parses_the_same_through_its_short_command_line_as_through_the_whole() {
    let world = World::new();
    // `fleetctx token ...` builds the token tree alone; a global flag first
    // (`-q token ...`) goes through the whole command line.
    for args in [
        &["token", "eks", "--help"][..],
        &["token", "gke", "--help"],
        &["token", "--help"],
        &["token", "eks", "--no-such-flag"],
        &["token", "eks"],
    ] {
        let short = run(&mut world.fleetctx(args));
        let mut whole_args = vec!["-q"];
        whole_args.extend_from_slice(args);
        let whole = run(&mut world.fleetctx(&whole_args));
        assert_eq!(short.status, whole.status, "{args:?}");
        assert_eq!(short.stdout, whole.stdout, "{args:?}");
        assert_eq!(short.stderr, whole.stderr, "{args:?}");
    }
}
