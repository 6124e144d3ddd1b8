//! Issue 11: `fleetctx status` over a loopback fleet of fake API servers, each
//! misbehaving its own way, and the library behind it.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// A port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GKE clusters `healthy`, `slow` and `slow2` (1 s a call), `unauth` (401),
/// `nopods` (403 on pods),
/// `badcert` (a certificate of another CA) and `down` (nothing listening), plus
/// the fleet's EKS cluster `c1`, synced into the fleet's kubeconfig.
fn misbehaving_fleet() -> Option<Fleet> {
    let fleet = Fleet::start()?;
    let kube = fleet.fakes.url("kube");
    let host = kube.trim_start_matches("https://");
    let other = fleet.fakes.url("kube_other_ca");
    let other = other.trim_start_matches("https://");
    let at = |name: &str| json!({"name": name, "endpoint": format!("{host}/gke/{name}")});
    fleet.gke(json!({"p-status": {"clusters": [
        at("healthy"), at("slow"), at("slow2"), at("unauth"), at("nopods"),
        {"name": "badcert", "endpoint": format!("{other}/gke/badcert")},
        {"name": "down", "endpoint": format!("127.0.0.1:{}/gke/down", closed_port())},
    ]}}));
    let accepted = http_json(
        "POST",
        &fleet.fakes.url("google"),
        "/_kube/clusters",
        Some(json!({
            "healthy": {"nodes": 3, "pods": 42, "namespaces": ["default", "kube-system", "apps"]},
            "slow": {"delay_ms": 1000},
            "slow2": {"delay_ms": 1000},
            "unauth": {"status": 401},
            "nopods": {"forbid": ["pods"], "nodes": 1},
        })),
    );
    assert!(accepted.get("clusters").is_some(), "{accepted}");
    fleet.sync(&["--gke-project", "p-status", "--no-eks"]).ok();
    let kubeconfig = fleet.kubeconfig.display().to_string();
    run(&mut fleet.world.fleetctx(&[
        "sync",
        "--eks-profile",
        "dev",
        "--eks-region",
        "us-east-1",
        "--kubeconfig",
        &kubeconfig,
    ]))
    .ok();
    Some(fleet)
}

fn status(fleet: &Fleet, args: &[&str]) -> (Ran, Duration) {
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let mut all = vec!["status", "--kubeconfig", &kubeconfig];
    all.extend_from_slice(args);
    let started = Instant::now();
    let ran = run(&mut fleet.world.fleetctx(&all));
    (ran, started.elapsed())
}

fn row<'a>(report: &'a Value, context: &str) -> &'a Value {
    report
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["context"] == context)
        .unwrap_or_else(|| panic!("no row for {context} in {report}"))
}

#[test]
fn status_reports_every_cluster_its_own_way_in_about_the_time_of_the_slowest() {
    let Some(fleet) = misbehaving_fleet() else {
        return;
    };
    let (ran, took) = status(&fleet, &["-o", "json", "--timeout", "5s"]);
    assert_eq!(
        ran.status, 3,
        "a failed cluster makes the exit 3: {}",
        ran.stderr
    );
    let report = ran.json();
    assert_eq!(report.as_array().unwrap().len(), 8, "{report}");
    let gke = |name: &str| format!("gke_p-status_europe-west1-b_{name}");

    let healthy = row(&report, &gke("healthy"));
    assert_eq!(healthy["state"], "ok", "{healthy}");
    assert_eq!(healthy["reachable"], true);
    assert_eq!(healthy["authenticated"], true);
    assert_eq!(healthy["version"], "v1.37.0-fleetctx-fake");
    assert_eq!(healthy["nodes"], json!({"counted": 3}));
    assert_eq!(healthy["namespaces"], json!({"counted": 3}));
    assert_eq!(healthy["pods"], json!({"counted": 42}));
    assert!(healthy["latency_ms"].as_u64().is_some());

    let eks = row(&report, "eks_dev_us-east-1_c1");
    assert_eq!(eks["state"], "ok", "an EKS token the fake verifies: {eks}");
    assert_eq!(eks["pods"], json!({"counted": 5}));

    let slow = row(&report, &gke("slow"));
    assert_eq!(slow["state"], "ok", "{slow}");
    assert!(slow["latency_ms"].as_u64().unwrap() >= 1000, "{slow}");
    assert_eq!(slow["pods"], json!({"counted": 5}));

    let unauth = row(&report, &gke("unauth"));
    assert_eq!(unauth["state"], "unauthorized", "{unauth}");
    assert_eq!(unauth["reachable"], true);
    assert_eq!(unauth["authenticated"], false);

    let nopods = row(&report, &gke("nopods"));
    assert_eq!(nopods["state"], "ok", "{nopods}");
    assert_eq!(nopods["pods"], "forbidden", "never 0: {nopods}");
    assert_eq!(nopods["nodes"], json!({"counted": 1}));

    let badcert = row(&report, &gke("badcert"));
    assert_eq!(badcert["state"], "tls", "{badcert}");
    assert!(
        badcert["reason"]
            .as_str()
            .unwrap()
            .contains("does not match its CA"),
        "{badcert}"
    );
    assert_eq!(badcert["reachable"], false);

    let down = row(&report, &gke("down"));
    assert_eq!(down["state"], "connect", "{down}");

    // Concurrent: about the slowest cluster (1 s for /version, then 1 s for the
    // three counts at once), not the two slow ones' 4 s one after the other.
    assert!(took < Duration::from_millis(3500), "{took:?}");

    // The table: the summary first, one sorted row per cluster.
    let (table, _) = status(&fleet, &["--timeout", "5s"]);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("8 clusters: 5 ok"), "{}", table.stdout);
    assert!(lines[1].starts_with("CONTEXT"), "{}", table.stdout);
    let contexts: Vec<&str> = lines[2..]
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    let mut sorted = contexts.clone();
    sorted.sort();
    assert_eq!(contexts, sorted);
}

#[test]
fn a_cluster_slower_than_the_timeout_or_unusable_fails_alone_and_the_others_still_report() {
    needs!("kubectl");
    let Some(fleet) = misbehaving_fleet() else {
        return;
    };
    // A hand edit gives the EKS user a static token as well: that context can
    // no longer be probed (fleetctx never sends a static credential), and says so.
    fleet
        .kubectl(&[
            "config",
            "set-credentials",
            "eks_dev_us-east-1_c1",
            "--token=s3kr1t-static",
        ])
        .ok();
    let (ran, took) = status(
        &fleet,
        &[
            "-o",
            "json",
            "--timeout",
            "700ms",
            "--context",
            "gke_*_slow",
            "--context",
            "*_healthy",
            "--context",
            "eks_*",
        ],
    );
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    let report = ran.json();
    assert_eq!(report.as_array().unwrap().len(), 3, "{report}");
    assert_eq!(
        row(&report, "gke_p-status_europe-west1-b_slow")["state"],
        "timeout"
    );
    assert_eq!(
        row(&report, "gke_p-status_europe-west1-b_healthy")["state"],
        "ok"
    );
    let eks = row(&report, "eks_dev_us-east-1_c1");
    assert_eq!(eks["state"], "error", "{eks}");
    assert!(eks["reason"].as_str().unwrap().contains("static"), "{eks}");
    assert!(!ran.stdout.contains("s3kr1t") && !ran.stderr.contains("s3kr1t"));
    assert!(took < Duration::from_millis(1900), "{took:?}");
}

#[test]
fn the_library_example_lists_the_namespaces_of_every_discovered_cluster() {
    let Some(fleet) = Fleet::start() else { return };
    let example = std::path::Path::new(env!("CARGO_BIN_EXE_fleetctx"))
        .parent()
        .unwrap()
        .join("examples/namespaces");
    let ran = run(fleet.world.command(&example).args([
        "--gke-project",
        "p-beta",
        "--eks-profile",
        "dev",
        "--eks-region",
        "us-east-1",
    ]))
    .ok();
    let mut lines: Vec<&str> = ran.stdout.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "eks_dev_us-east-1_c1: default kube-system",
            "gke_p-beta_asia-east1-a_b: default kube-system"
        ],
        "{}",
        ran.stderr
    );
    // In memory: no kubeconfig written, no token cache.
    assert!(!fleet.world.path("home/.kube").exists());
    assert!(
        !fleet.world.cache_dir().exists(),
        "{:?}",
        fleet.world.cache_dir()
    );
}

#[test]
fn status_discover_probes_what_sync_would_scan_and_writes_nothing() {
    let Some(fleet) = misbehaving_fleet() else {
        return;
    };
    let before = fleet.read();
    let ran = run(&mut fleet.world.fleetctx(&[
        "status",
        "--discover",
        "--gke-project",
        "p-status",
        "--context",
        "*_healthy",
        "--context",
        "*_nopods",
        "-o",
        "json",
    ]));
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let report = ran.json();
    assert_eq!(report.as_array().unwrap().len(), 2, "{report}");
    assert_eq!(
        row(&report, "gke_p-status_europe-west1-b_healthy")["pods"],
        json!({"counted": 42})
    );
    assert_eq!(fleet.read(), before, "the kubeconfig is not touched");
}

#[test]
fn source_flags_imply_discover_and_names_follow_the_name_template() {
    let Some(fleet) = misbehaving_fleet() else {
        return;
    };
    std::fs::create_dir_all(fleet.world.path("config/fleetctx")).unwrap();
    std::fs::write(
        fleet.world.path("config/fleetctx/config.yaml"),
        "name-template: \"{provider}-{name}\"\n",
    )
    .unwrap();
    let before = fleet.read();
    let ran = run(&mut fleet.world.fleetctx(&[
        "status",
        "--gke-project-filter=-labels.none:x",
        "--gke-project",
        "p-status",
        "--context",
        "gke-healthy",
        "-o",
        "json",
    ]));
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let report = ran.json();
    assert_eq!(row(&report, "gke-healthy")["state"], "ok", "{report}");
    assert_eq!(fleet.read(), before);
}
