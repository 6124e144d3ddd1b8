//! Issue 10: kubectl stays fast at fleet scale: one context alone in a file of
//! its own (`fleetctx kubeconfig`, `fleetctx shell`).

mod support;

use support::*;

fn synced() -> Option<Fleet> {
    let fleet = Fleet::start()?;
    let kubeconfig = fleet.kubeconfig.display().to_string();
    run(&mut fleet.world.fleetctx(&[
        "sync",
        "--gke-project",
        "p-beta",
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

#[test]
fn kubeconfig_writes_one_context_alone_that_kubectl_uses() {
    needs!("kubectl");
    let Some(fleet) = synced() else { return };
    let kubeconfig = fleet.kubeconfig.display().to_string();
    for context in ["eks_dev_us-east-1_c1", "gke_p-beta_asia-east1-a_b"] {
        let ran =
            run(&mut fleet
                .world
                .fleetctx(&["kubeconfig", context, "--kubeconfig", &kubeconfig]))
            .ok();
        let path = std::path::PathBuf::from(ran.stdout.trim());
        assert!(
            path.starts_with(fleet.world.cache_dir()),
            "{}",
            path.display()
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let kubectl = tool("kubectl").unwrap();
        let alone = run(fleet
            .world
            .command(&kubectl)
            .env("KUBECONFIG", &path)
            .args(["config", "view", "-o", "json"]))
        .ok()
        .json();
        assert_eq!(alone["contexts"].as_array().unwrap().len(), 1);
        assert_eq!(alone["clusters"].as_array().unwrap().len(), 1);
        assert_eq!(alone["users"].as_array().unwrap().len(), 1);
        assert_eq!(alone["current-context"], context);
        let got = run(fleet
            .world
            .command(&kubectl)
            .env("KUBECONFIG", &path)
            .args(["get", "ns"]));
        assert_eq!(got.status, 0, "{context}: {}", got.stderr);
    }
    let missing =
        run(&mut fleet
            .world
            .fleetctx(&["kubeconfig", "no-such", "--kubeconfig", &kubeconfig]));
    assert_eq!(missing.status, 1);
    assert!(missing.stderr.contains("no context no-such") && missing.stderr.contains("hint:"));
}

#[test]
fn kubeconfig_never_copies_a_static_credential_and_keeps_relative_paths_working() {
    let world = World::new();
    let dir = world.path("kube");
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    std::fs::write(dir.join("certs/ca.pem"), "not read here").unwrap();
    let file = dir.join("config");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1', certificate-authority: certs/ca.pem}\nusers:\n- name: static\n  user: {token: s3cr3t-token}\n- name: plugin\n  user:\n    exec: {apiVersion: client.authentication.k8s.io/v1, command: ./bin/helper, interactiveMode: Never}\ncontexts:\n- name: with-token\n  context: {cluster: c, user: static}\n- name: with-plugin\n  context: {cluster: c, user: plugin}\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let refused = run(&mut world.fleetctx(&["kubeconfig", "with-token", "--kubeconfig", &path]));
    assert_eq!(refused.status, 1);
    assert!(
        refused.stderr.contains("static credential"),
        "{}",
        refused.stderr
    );
    assert!(
        !refused.stderr.contains("s3cr3t"),
        "a token in an error: {}",
        refused.stderr
    );
    let cache = world.cache_dir().join("kubeconfigs");
    let leaked = std::fs::read_dir(&cache)
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
                .any(|t| t.contains("s3cr3t"))
        })
        .unwrap_or(false);
    assert!(!leaked, "a static token was written to the cache");

    let ran = run(&mut world.fleetctx(&["kubeconfig", "with-plugin", "--kubeconfig", &path])).ok();
    let alone = std::fs::read_to_string(ran.stdout.trim()).unwrap();
    assert!(
        alone.contains(&format!("{}/certs/ca.pem", dir.display())),
        "{alone}"
    );
    assert!(
        alone.contains(&format!("{}/./bin/helper", dir.display())),
        "{alone}"
    );
}

#[test]
fn shell_starts_bash_with_one_context_per_shell() {
    needs!("tmux", "bash", "kubectl");
    let Some(fleet) = synced() else { return };
    let bin = fleet.world.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(BIN, bin.join("fleetctx")).unwrap();
    let mut world = World::new();
    world.env = fleet.world.env.clone();
    let path = world
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .unwrap()
        .1
        .clone();
    world
        .set("PATH", format!("{}:{path}", bin.display()))
        .set("KUBECONFIG", fleet.kubeconfig.display().to_string())
        .set("SHELL", tool("bash").unwrap().display().to_string());
    let tmux = Tmux::bash("shell", &world.env);
    tmux.keys(&["fleetctx shell eks_dev_us-east-1_c1", "Enter"]);
    tmux.expect("exit to leave");
    tmux.keys(&["clear; echo ctx=$(kubectl config current-context) n=$(kubectl config get-contexts -o name | wc -l)", "Enter"]);
    tmux.expect("ctx=eks_dev_us-east-1_c1 n=1");
    tmux.keys(&["kubectl get ns && echo reached-cluster", "Enter"]);
    tmux.expect("reached-cluster");
    // Leaving the shell is back to the whole kubeconfig.
    tmux.keys(&["exit", "Enter"]);
    tmux.keys(&[
        "clear; echo n=$(kubectl config get-contexts -o name | wc -l)",
        "Enter",
    ]);
    tmux.expect("n=2");
}

/// `FLEETCTX_COMPLETE=fish fleetctx -- fleetctx kubeconfig PREFIX`: the candidates.
fn complete(world: &World, prefix: &str) -> Vec<String> {
    let ran = run(world
        .fleetctx(&["--", "fleetctx", "kubeconfig", prefix])
        .env("FLEETCTX_COMPLETE", "fish"))
    .ok();
    ran.stdout.lines().map(str::to_string).collect()
}

#[test]
fn a_fleet_kept_in_its_own_file_is_what_list_kubeconfig_and_completion_read() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    let store = fleet.world.path("fleet.yaml");
    std::fs::create_dir_all(fleet.world.path("config/fleetctx")).unwrap();
    std::fs::write(
        fleet.world.path("config/fleetctx/config.yaml"),
        format!("kubeconfig: {}\n", store.display()),
    )
    .unwrap();
    // kubectl's own file holds the user's entries and stays as it is.
    let main = fleet.world.path("home/.kube/config");
    std::fs::create_dir_all(main.parent().unwrap()).unwrap();
    let mine = "apiVersion: v1\nkind: Config\ncontexts:\n- name: gke_mine\n  context: {cluster: mine, user: mine}\n";
    std::fs::write(&main, mine).unwrap();
    run(&mut fleet
        .world
        .fleetctx(&["sync", "--gke-project", "p-beta", "--no-eks"]))
    .ok();
    assert_eq!(std::fs::read_to_string(&main).unwrap(), mine);

    let listed = run(&mut fleet.world.fleetctx(&["list", "-o", "json"]))
        .ok()
        .json();
    assert_eq!(
        listed[0]["context"], "gke_p-beta_asia-east1-a_b",
        "{listed}"
    );
    assert_eq!(
        complete(&fleet.world, "gke_"),
        ["gke_p-beta_asia-east1-a_b"]
    );
    // The sync left an index of the names, so completion parses nothing.
    let index = std::fs::read_dir(fleet.world.cache_dir().join("names"))
        .unwrap()
        .count();
    assert_eq!(index, 1);

    // A hand edit to the fleet file shows at the next TAB.
    let kubectl = tool("kubectl").unwrap();
    run(fleet
        .world
        .command(&kubectl)
        .args(["config", "set-context", "gke_by-hand", "--cluster", "x"])
        .arg("--kubeconfig")
        .arg(&store))
    .ok();
    assert_eq!(
        complete(&fleet.world, "gke_"),
        ["gke_by-hand", "gke_p-beta_asia-east1-a_b"]
    );

    let path = run(&mut fleet
        .world
        .fleetctx(&["kubeconfig", "gke_p-beta_asia-east1-a_b"]))
    .ok()
    .stdout;
    let got = run(fleet
        .world
        .command(&kubectl)
        .env("KUBECONFIG", path.trim())
        .args(["get", "ns"]));
    assert_eq!(got.status, 0, "{}", got.stderr);
}
