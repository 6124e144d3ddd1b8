//! `fleetctx sync` against a loopback fleet, read back by a real kubectl.

mod support;

use serde_json::json;
use support::*;

#[test]
fn syncs_the_fleet_and_kubectl_reaches_every_context() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    fleet.gke(json!({
        "p-alpha": {"clusters": [{"name": "a"}, {"name": "on", "location": "us-east1"}]},
        "p-beta": {"clusters": [{"name": "b", "location": "asia-east1-a"}]},
        "p-disabled": {"error": "SERVICE_DISABLED"},
        "p-denied": {"error": "PERMISSION_DENIED"},
        "p-partial": {"clusters": [{"name": "no"}, {"name": "y"}], "missing_zones": ["us-west1-a"]},
        "p-dns": {"clusters": [{"name": "d", "ip_endpoints_enabled": false, "dns_endpoint": "gke-0123.europe-west1.gke.goog", "allow_external_traffic": true}]},
    }));
    let ran = fleet.sync(&[]);
    assert_eq!(
        ran.status, 3,
        "a failed source makes the exit code 3\n{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("p-denied") && ran.stderr.contains("hint:"),
        "{}",
        ran.stderr
    );
    assert!(
        !ran.stderr.contains("p-disabled"),
        "SERVICE_DISABLED is skipped quietly: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains("p-partial"), "{}", ran.stderr);
    assert!(
        fleet.fakes.count("rm_pages") >= 3,
        "projects.search must be paged"
    );

    let mut expected: Vec<String> = SYNCED.iter().map(|s| s.to_string()).collect();
    expected.push("gke_p-partial_europe-west1-b_no".to_string());
    expected.push("gke_p-partial_europe-west1-b_y".to_string());
    expected.sort();
    let mut all = expected.clone();
    all.push("gke_p-dns_europe-west1-b_d".to_string());
    all.sort();
    assert_eq!(fleet.contexts(), all);
    // A cluster whose IP endpoints are off gets its DNS endpoint, without CA data.
    let dns = fleet.kubectl(&["config", "view", "-o", "json"]).ok().json();
    let dns = dns["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gke_p-dns_europe-west1-b_d")
        .unwrap()
        .clone();
    assert_eq!(
        dns["cluster"]["server"],
        "https://gke-0123.europe-west1.gke.goog"
    );
    assert!(
        dns["cluster"].get("certificate-authority-data").is_none(),
        "{dns}"
    );
    for context in &expected {
        let got = fleet.kubectl(&[
            "--context",
            context,
            "get",
            "ns",
            "--request-timeout",
            "20s",
        ]);
        assert_eq!(
            got.status, 0,
            "kubectl --context {context} get ns\n{}",
            got.stderr
        );
        assert!(got.stdout.contains("kube-system"));
    }
    // The same cluster through two profiles is two users, not one overwriting the other.
    let view = fleet.kubectl(&["config", "view", "-o", "json"]).ok().json();
    let users: Vec<&str> = view["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(
        users.contains(&"eks_dev_us-east-1_c1") && users.contains(&"eks_on_us-east-1_c1"),
        "{users:?}"
    );
    assert!(
        users.contains(&"fleetctx_gke"),
        "GKE clusters share one user: {users:?}"
    );
    assert_eq!(users.len(), 5, "{users:?}");
    // Names YAML 1.1 reads as booleans stay strings through kubectl.
    let on_user = view["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "eks_on_eu-west-1_yes")
        .unwrap();
    let args: Vec<&str> = on_user["user"]["exec"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "token",
            "eks",
            "--cluster",
            "yes",
            "--region",
            "eu-west-1",
            "--profile",
            "on"
        ]
    );
    assert_eq!(on_user["user"]["exec"]["command"], BIN);
    assert_eq!(on_user["user"]["exec"]["interactiveMode"], "Never");
}

const FOREIGN: &str = r#"apiVersion: v1
kind: Config
preferences:
  colors: true
clusters:
- name: foreign
  cluster:
    server: https://127.0.0.1:9
    x-unknown-field: kept
    extensions:
    - name: someone.else/ext
      extension:
        keep: me
users:
- name: foreign-user
  user:
    token: not-ours
contexts:
- name: foreign
  context:
    cluster: foreign
    user: foreign-user
    namespace: team-a
current-context: foreign
x-top-level: 1
extensions:
- name: top/ext
  extension: {a: 1}
"#;

#[test]
fn merge_keeps_what_it_does_not_own_and_a_resync_changes_no_byte() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    std::fs::write(&fleet.kubeconfig, FOREIGN).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fleet.kubeconfig, std::fs::Permissions::from_mode(0o640)).unwrap();
    fleet.sync(&[]).ok();

    let before: yaml_serde::Value = yaml_serde::from_str(FOREIGN).unwrap();
    let after: yaml_serde::Value = yaml_serde::from_str(&fleet.read()).unwrap();
    for key in [
        "preferences",
        "current-context",
        "x-top-level",
        "extensions",
        "apiVersion",
        "kind",
    ] {
        assert_eq!(after[key], before[key], "{key} changed");
    }
    for list in ["clusters", "users", "contexts"] {
        assert_eq!(
            after[list][0], before[list][0],
            "the foreign {list} entry changed or moved"
        );
    }
    assert_eq!(
        std::fs::metadata(&fleet.kubeconfig)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o640
    );
    assert!(
        fleet
            .kubectl(&["config", "view"])
            .ok()
            .stdout
            .contains("foreign")
    );

    let bytes = fleet.read();
    let again = fleet.sync(&[]).ok();
    assert_eq!(
        fleet.read(),
        bytes,
        "a re-sync with nothing new must leave the file byte-identical"
    );
    assert!(again.stderr.contains("left unchanged"), "{}", again.stderr);

    // A kubectl rewrite (sorted, defaults filled in) is still recognised as ours.
    fleet
        .kubectl(&["config", "set-context", "scratch", "--cluster", "foreign"])
        .ok();
    let reread = fleet.sync(&[]).ok();
    assert!(
        reread.stderr.contains(" 0 added, 0 updated, 0 removed"),
        "{}",
        reread.stderr
    );
    assert!(fleet.contexts().contains(&"scratch".to_string()));
}

#[test]
fn prunes_only_owned_entries_of_sources_that_answered_completely() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    fleet.gke(json!({
        "p-alpha": {"clusters": [{"name": "a"}, {"name": "on", "location": "us-east1"}]},
        "p-beta": {"clusters": [{"name": "b", "location": "asia-east1-a"}]},
        "p-flaky": {"clusters": [{"name": "f"}]},
    }));
    fleet.sync(&[]).ok();
    fleet
        .kubectl(&["config", "use-context", "gke_p-alpha_us-east1_on"])
        .ok();

    // `on` is deleted; p-flaky now fails; c1 is deleted in us-east-1.
    fleet.gke(json!({
        "p-alpha": {"clusters": [{"name": "a"}]},
        "p-beta": {"clusters": [{"name": "b", "location": "asia-east1-a"}]},
        "p-flaky": {"error": 503},
    }));
    fleet.delete_eks("us-east-1", "c1");

    let dry = fleet.sync(&["--dry-run"]);
    assert!(
        dry.stdout.contains("- context gke_p-alpha_us-east1_on"),
        "{}",
        dry.stdout
    );
    assert!(
        fleet
            .contexts()
            .contains(&"gke_p-alpha_us-east1_on".to_string()),
        "dry run wrote"
    );
    let kept = fleet.sync(&["--no-prune"]);
    assert_eq!(kept.status, 3);
    assert!(
        fleet
            .contexts()
            .contains(&"gke_p-alpha_us-east1_on".to_string()),
        "--no-prune pruned"
    );

    let ran = fleet.sync(&[]);
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    let contexts = fleet.contexts();
    assert!(!contexts.contains(&"gke_p-alpha_us-east1_on".to_string()));
    assert!(!contexts.contains(&"eks_dev_us-east-1_c1".to_string()));
    assert!(!contexts.contains(&"eks_on_us-east-1_c1".to_string()));
    assert!(
        contexts.contains(&"gke_p-flaky_europe-west1-b_f".to_string()),
        "a failed source must prune nothing"
    );
    assert!(contexts.contains(&"gke_p-alpha_europe-west1-b_a".to_string()));
    let view = fleet.kubectl(&["config", "view", "-o", "json"]).ok().json();
    assert_eq!(
        view["current-context"], "",
        "current-context must not point at a pruned context"
    );
    let users: Vec<&str> = view["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(!users.contains(&"eks_dev_us-east-1_c1"), "{users:?}");
    assert!(users.contains(&"fleetctx_gke"), "{users:?}");
    assert!(ran.stderr.contains("current-context"), "{}", ran.stderr);
}

#[test]
fn a_same_named_entry_it_does_not_own_is_left_alone_unless_adopted() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    let name = "gke_p-beta_asia-east1-a_b";
    std::fs::write(
        &fleet.kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: https://hand-written\ncontexts: []\nusers: []\n"),
    )
    .unwrap();
    let ran = fleet.sync(&[]).ok();
    assert!(
        ran.stderr.contains(name) && ran.stderr.contains("--adopt"),
        "{}",
        ran.stderr
    );
    assert!(fleet.read().contains("https://hand-written"));
    assert!(
        !fleet.contexts().contains(&name.to_string()),
        "the whole entry group stays out"
    );

    fleet.sync(&["--adopt"]).ok();
    assert!(!fleet.read().contains("https://hand-written"));
    assert!(fleet.contexts().contains(&name.to_string()));
    let ran = fleet.kubectl(&["--context", name, "get", "ns"]).ok();
    assert!(ran.stdout.contains("default"));
}

#[test]
fn an_unparseable_kubeconfig_is_never_written() {
    let Some(fleet) = Fleet::start() else { return };
    let garbage = "apiVersion: v1\nclusters:\n- name: x\n  cluster: {server: [unclosed\n";
    std::fs::write(&fleet.kubeconfig, garbage).unwrap();
    let ran = fleet.sync(&[]).failed();
    assert_eq!(ran.status, 1);
    assert!(
        ran.stderr.contains(&fleet.kubeconfig.display().to_string()),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("hint:"), "{}", ran.stderr);
    assert_eq!(fleet.read(), garbage);
    assert_eq!(
        fleet.fakes.count("rm_pages"),
        0,
        "no network before the file is known to parse"
    );
    let lock = format!("{}.lock", fleet.kubeconfig.display());
    assert!(!std::path::Path::new(&lock).exists());
}

#[test]
fn kubectl_writing_concurrently_loses_no_entry() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    fleet.sync(&[]).ok();
    let kubeconfig = fleet.kubeconfig.clone();
    let world_env = fleet.world.env.clone();
    let writer = std::thread::spawn(move || {
        let kubectl = tool("kubectl").unwrap();
        let mut written = Vec::new();
        for i in 0..25 {
            let name = format!("hand-{i}");
            // kubectl gives up at once on a held lock: retry as a person would.
            for _ in 0..200 {
                let out = std::process::Command::new(&kubectl)
                    .env_clear()
                    .envs(world_env.iter().map(|(k, v)| (k, v)))
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args([
                        "config",
                        "set-context",
                        &name,
                        "--cluster",
                        "x",
                        "--namespace",
                        "n",
                    ])
                    .output()
                    .unwrap();
                if out.status.success() {
                    written.push(name.clone());
                    break;
                }
                let err = String::from_utf8_lossy(&out.stderr);
                assert!(
                    err.contains(".lock"),
                    "kubectl failed for another reason: {err}"
                );
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
        written
    });
    for _ in 0..8 {
        let ran = fleet.sync(&["--lock-timeout", "20"]);
        assert_eq!(ran.status, 0, "{}", ran.stderr);
    }
    let written = writer.join().unwrap();
    assert_eq!(written.len(), 25);
    let contexts = fleet.contexts();
    for name in written.iter().map(String::as_str).chain(SYNCED) {
        assert!(contexts.contains(&name.to_string()), "{name} was lost");
    }
}

#[test]
fn sigkill_at_any_point_leaves_a_file_kubectl_reads() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    std::fs::write(&fleet.kubeconfig, FOREIGN).unwrap();
    let lock = std::path::PathBuf::from(format!("{}.lock", fleet.kubeconfig.display()));
    for i in 0..12u64 {
        // Alternate between two fleets so most runs have something to write.
        if i % 2 == 0 {
            fleet.delete_eks("eu-west-1", "yes");
        } else {
            fleet.eks(&[("eu-west-1", "yes")]);
        }
        let kubeconfig = fleet.kubeconfig.display().to_string();
        let mut child = fleet
            .world
            .fleetctx(&[
                "sync",
                "--gke-all-projects",
                "--eks-profile",
                "dev",
                "--eks-region",
                "eu-west-1",
                "--kubeconfig",
                &kubeconfig,
            ])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20 + (i * 37) % 400));
        let _ = child.kill();
        let _ = child.wait();
        let view = fleet.kubectl(&["config", "view", "-o", "json"]);
        assert_eq!(view.status, 0, "after a kill at step {i}: {}", view.stderr);
        assert!(
            view.stdout.contains("foreign"),
            "the foreign entries survived step {i}"
        );
        if lock.exists() {
            // What the hint says to do after a crash.
            let stale = fleet.sync(&["--lock-timeout", "1"]).failed();
            assert!(
                stale.stderr.contains(&format!("remove {}", lock.display())),
                "{}",
                stale.stderr
            );
            std::fs::remove_file(&lock).unwrap();
        }
    }
    fleet.sync(&[]).ok();
}

#[test]
fn a_bare_sync_reads_config_yaml() {
    let Some(fleet) = Fleet::start() else { return };
    let dir = fleet.world.path("config").join("fleetctx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "gke:\n  projects: [p-beta]\neks:\n  profiles: [dev]\n  regions: [eu-west-1]\nkubeconfig: {}\n",
            fleet.kubeconfig.display()
        ),
    )
    .unwrap();
    let ran = run(&mut fleet.world.fleetctx(&["sync"])).ok();
    assert!(ran.stderr.contains("2 sources scanned"), "{}", ran.stderr);
    let text = fleet.read();
    assert!(
        text.contains("gke_p-beta_asia-east1-a_b") && text.contains("eks_dev_eu-west-1_yes"),
        "{text}"
    );
    assert!(!text.contains("p-alpha"));
}

#[test]
fn with_nothing_set_up_each_provider_is_skipped_with_one_line() {
    let world = World::new();
    let kubeconfig = world.path("kubeconfig").display().to_string();
    let ran = run(&mut world.fleetctx(&["sync", "--kubeconfig", &kubeconfig])).ok();
    let skipped: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.contains("skipped"))
        .collect();
    assert_eq!(skipped.len(), 3, "{}", ran.stderr);
    assert!(
        skipped
            .iter()
            .any(|l| l.starts_with("fleetctx: AKS skipped") && l.contains("az login")),
        "{}",
        ran.stderr
    );
    assert!(
        skipped
            .iter()
            .any(|l| l.starts_with("fleetctx: GKE skipped") && l.contains("gcloud")),
        "{}",
        ran.stderr
    );
    assert!(
        skipped
            .iter()
            .any(|l| l.starts_with("fleetctx: EKS skipped") && l.contains("aws")),
        "{}",
        ran.stderr
    );
    assert!(
        !std::path::Path::new(&kubeconfig).exists(),
        "nothing to write, nothing written"
    );
}
