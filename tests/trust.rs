//! Issue 7: sync never loses, shadows or corrupts an entry, and every path signs
//! as the identity the user chose. Each test pins one behaviour that was broken.

mod support;

use serde_json::json;
use support::*;

fn sync(fleet: &Fleet, args: &[&str]) -> Ran {
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let mut all = vec!["sync", "--kubeconfig", &kubeconfig];
    all.extend_from_slice(args);
    run(&mut fleet.world.fleetctx(&all))
}

fn has_context(fleet: &Fleet, name: &str) -> bool {
    fleet.contexts().iter().any(|c| c == name)
}

/// The exec args of a user, as kubectl reads them.
fn exec_args(fleet: &Fleet, user: &str) -> Vec<String> {
    let view = fleet.kubectl(&["config", "view", "-o", "json"]).ok().json();
    let entry = view["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user)
        .unwrap_or_else(|| panic!("no user {user} in {view}"))
        .clone();
    entry["user"]["exec"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn revoked_aws_keys_fail_the_profile_and_prune_nothing() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    sync(
        &fleet,
        &["--eks-profile", "dev", "--eks-region", "us-east-1"],
    )
    .ok();
    assert!(has_context(&fleet, "eks_dev_us-east-1_c1"));
    let before = fleet.read();

    fleet.fakes.config(json!({"aws_revoked_keys": [DEV_KEY]}));
    let ran = sync(
        &fleet,
        &["--eks-profile", "dev", "--eks-region", "us-east-1"],
    );
    assert_eq!(
        ran.status, 3,
        "rejected credentials are a failure\n{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("profile dev"), "{}", ran.stderr);
    assert!(
        ran.stderr.contains("InvalidClientTokenId"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("hint:") && ran.stderr.contains("aws configure --profile dev"),
        "{}",
        ran.stderr
    );
    assert_eq!(fleet.read(), before, "nothing of the profile may be pruned");
    assert!(fleet.fakes.sts_count("GetCallerIdentity") >= 1);
}

#[test]
fn a_role_profile_without_a_region_scans_every_region_with_opt_in_ones_disabled() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    let mut config = std::fs::read_to_string(fleet.world.path("aws-config")).unwrap();
    config.push_str(
        "\n[profile ops]\nrole_arn = arn:aws:iam::123456789012:role/ops\nsource_profile = dev\n",
    );
    std::fs::write(fleet.world.path("aws-config"), config).unwrap();
    // Opt-in regions this account has not enabled reject every call, STS included.
    fleet.fakes.config(json!({"aws_disabled_regions": [
        "af-south-1", "ap-east-1", "ap-east-2", "ap-south-2", "ap-southeast-3",
        "ap-southeast-4", "ap-southeast-5", "ap-southeast-6", "ap-southeast-7", "ca-west-1",
        "eu-central-2", "eu-south-1", "eu-south-2", "il-central-1", "me-central-1",
        "me-south-1", "mx-central-1"
    ]}));
    let ran = sync(&fleet, &["--eks-profile", "ops"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert!(
        has_context(&fleet, "eks_ops_us-east-1_c1"),
        "{}",
        ran.stderr
    );
    assert!(
        has_context(&fleet, "eks_ops_eu-west-1_yes"),
        "{}",
        ran.stderr
    );
    assert_eq!(fleet.fakes.sts_count("AssumeRole"), 1, "{}", ran.stderr);
}

#[test]
fn the_profile_from_the_environment_is_recorded_in_name_marker_and_args() {
    needs!("kubectl");
    let Some(mut fleet) = Fleet::start() else {
        return;
    };
    // botocore's precedence: AWS_DEFAULT_PROFILE over AWS_PROFILE.
    fleet
        .world
        .set("AWS_PROFILE", "on")
        .set("AWS_DEFAULT_PROFILE", "dev");
    sync(&fleet, &["--eks-region", "us-east-1", "--no-gke"]).ok();
    assert!(
        has_context(&fleet, "eks_dev_us-east-1_c1"),
        "{:?}",
        fleet.contexts()
    );
    let args = exec_args(&fleet, "eks_dev_us-east-1_c1");
    assert!(
        args.windows(2).any(|w| w == ["--profile", "dev"]),
        "{args:?}"
    );
    let listed = run(&mut fleet.world.fleetctx(&[
        "list",
        "-o",
        "json",
        "--kubeconfig",
        &fleet.kubeconfig.display().to_string(),
    ]))
    .ok()
    .json();
    assert_eq!(listed[0]["profile"], "dev", "{listed}");

    // kubectl's environment later names another profile: the entry still signs as dev.
    fleet
        .world
        .unset("AWS_DEFAULT_PROFILE")
        .set("AWS_PROFILE", "no-such-profile");
    let got = fleet.kubectl(&["--context", "eks_dev_us-east-1_c1", "get", "ns"]);
    assert_eq!(got.status, 0, "{}", got.stderr);

    // A sync under another profile adds its own entries and prunes none of dev's.
    fleet.world.set("AWS_PROFILE", "on");
    sync(&fleet, &["--eks-region", "us-east-1", "--no-gke"]).ok();
    assert!(has_context(&fleet, "eks_on_us-east-1_c1"));
    assert!(has_context(&fleet, "eks_dev_us-east-1_c1"));
}

#[test]
fn iso_partitions_get_their_own_sts_host_and_unknown_ones_are_refused() {
    let mut world = World::new();
    world.aws_keys("AKIAFLEETCTXISO00001", "iso-secret", None);
    for (region, host) in [
        ("us-isof-south-1", "sts.us-isof-south-1.csp.hci.ic.gov"),
        ("eu-isoe-west-1", "sts.eu-isoe-west-1.cloud.adc-e.uk"),
        ("us-iso-east-1", "sts.us-iso-east-1.c2s.ic.gov"),
    ] {
        let ran = run(&mut world.fleetctx(&[
            "token",
            "eks",
            "--cluster",
            "c",
            "--region",
            region,
            "--no-cache",
        ]))
        .ok();
        let (got, _, _) = url_parts(&eks_url(&ran.token()));
        assert_eq!(got, host);
    }
    let ran = run(&mut world.fleetctx(&[
        "token",
        "eks",
        "--cluster",
        "c",
        "--region",
        "mars-north-1",
        "--no-cache",
    ]));
    assert_eq!(ran.status, 1, "{}", ran.stdout);
    assert!(ran.stdout.is_empty());
    assert!(
        ran.stderr.contains("mars-north-1") && ran.stderr.contains("partition"),
        "{}",
        ran.stderr
    );
}

#[test]
fn an_unknown_region_in_a_sync_fails_alone() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    let ran = sync(
        &fleet,
        &[
            "--eks-profile",
            "dev",
            "--eks-region",
            "us-east-1",
            "--eks-region",
            "mars-north-1",
        ],
    );
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    assert!(ran.stderr.contains("mars-north-1"), "{}", ran.stderr);
    assert!(has_context(&fleet, "eks_dev_us-east-1_c1"));
}

#[test]
fn a_lock_timeout_on_the_role_session_refreshes_with_a_warning() {
    needs!("flock");
    let Some(fleet) = Fleet::start() else { return };
    let mut world = World::new();
    world
        .aws_keys(DEV_KEY, DEV_SECRET, None)
        .set("AWS_ENDPOINT_URL", fleet.fakes.url("moto"))
        .set("FLEETCTX_LOCK_TIMEOUT", "1");
    let args = [
        "token",
        "eks",
        "--cluster",
        "c1",
        "--region",
        "us-east-1",
        "--role-arn",
        "arn:aws:iam::123456789012:role/admin",
    ];
    run(&mut world.fleetctx(&args)).ok();
    // Drop both entries, then hold only the role session's lock.
    let mut role_lock = None;
    for entry in std::fs::read_dir(world.cache_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".json") {
            std::fs::remove_file(&path).unwrap();
        }
        if name.starts_with("aws-role-") && name.ends_with(".lock") {
            role_lock = Some(path);
        }
    }
    let role_lock = role_lock.expect("a role session lock file");
    let mut holder = std::process::Command::new(tool("flock").unwrap())
        .arg(&role_lock)
        .args(["sleep", "8"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let ran = run(&mut world.fleetctx(&args));
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert!(ran.token().starts_with("k8s-aws-v1."));
    assert!(
        ran.stderr.contains("refreshing without the lock"),
        "{}",
        ran.stderr
    );
}

#[test]
fn home_in_config_yaml_paths_means_the_home_directory() {
    let Some(fleet) = Fleet::start() else { return };
    let dir = fleet.world.path("config").join("fleetctx");
    std::fs::create_dir_all(&dir).unwrap();
    let cwd = fleet.world.path("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    for (n, path) in [
        "~/.kube/fleet.yaml",
        "$HOME/.kube/fleet-2.yaml",
        "${HOME}/fleet-3.yaml",
    ]
    .iter()
    .enumerate()
    {
        std::fs::write(
            dir.join("config.yaml"),
            format!("gke:\n  projects: [p-beta]\neks:\n  enabled: false\nkubeconfig: {path}\n"),
        )
        .unwrap();
        run(fleet.world.fleetctx(&["sync"]).current_dir(&cwd)).ok();
        let home = fleet.world.path("home");
        let written = home.join(path.split_once('/').unwrap().1);
        assert!(
            std::fs::read_to_string(&written)
                .unwrap_or_default()
                .contains("gke_p-beta_asia-east1-a_b"),
            "case {n}: {path} was not written to {}",
            written.display()
        );
    }
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing may be created under the working directory"
    );
}

fn cache_files(world: &World) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(world.cache_dir())
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn cache_clear_removes_entries_it_refuses_to_read_and_their_locks() {
    use std::os::unix::fs::PermissionsExt;
    let mut world = World::new();
    world.aws_keys("AKIAFLEETCTXCLEAR001", "clear-secret", None);
    let token = ["token", "eks", "--cluster", "c", "--region", "us-east-1"];
    run(&mut world.fleetctx(&token)).ok();
    for name in cache_files(&world) {
        let path = world.cache_dir().join(&name);
        if name.ends_with(".json") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    // A stray temp file of a crashed write, and a file that is not ours.
    let stem = cache_files(&world)[0]
        .split('.')
        .next()
        .unwrap()
        .to_string();
    std::fs::write(world.cache_dir().join(format!(".{stem}.99.1.tmp")), "x").unwrap();
    std::fs::write(world.cache_dir().join("notes.txt"), "mine").unwrap();
    run(&mut world.fleetctx(&["cache", "clear"])).ok();
    assert_eq!(cache_files(&world), ["notes.txt"]);
}

#[test]
fn writes_collect_expired_entries_and_their_locks() {
    let mut world = World::new();
    world.aws_keys("AKIAFLEETCTXSWEEP001", "sweep-secret", None);
    run(&mut world.fleetctx(&["token", "eks", "--cluster", "c", "--region", "us-east-1"])).ok();
    let digest = "0123456789abcdef0123456789abcdef";
    let stale = world.cache_dir().join(format!("eks-{digest}.json"));
    std::fs::write(
        &stale,
        r#"{"format":1,"kind":"eks","identity":"old","expires_at":1,"expiration":"1970-01-01T00:00:01Z","created_at":0,"secret":"x"}"#,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stale, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(stale.with_extension("lock"), "").unwrap();
    run(&mut world.fleetctx(&["token", "eks", "--cluster", "d", "--region", "us-east-1"])).ok();
    let names = cache_files(&world);
    assert!(
        !names.iter().any(|n| n.contains(digest)),
        "expired entry kept: {names:?}"
    );
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".json")).count(),
        2,
        "{names:?}"
    );
}

#[test]
fn the_exec_command_is_the_package_managers_link_not_the_versioned_target() {
    let Some(fleet) = Fleet::start() else { return };
    // Homebrew's shape: bin/fleetctx -> ../Cellar/fleetctx/0.1.0/bin/fleetctx.
    let prefix = fleet.world.path("brew");
    let cellar = prefix.join("Cellar/fleetctx/0.1.0/bin");
    std::fs::create_dir_all(&cellar).unwrap();
    std::fs::create_dir_all(prefix.join("bin")).unwrap();
    std::fs::copy(BIN, cellar.join("fleetctx")).unwrap();
    std::os::unix::fs::symlink(
        "../Cellar/fleetctx/0.1.0/bin/fleetctx",
        prefix.join("bin/fleetctx"),
    )
    .unwrap();
    let mut world = World::new();
    world.env = fleet.world.env.clone();
    let path = format!(
        "{}:{}",
        prefix.join("bin").display(),
        world.env.iter().find(|(k, _)| k == "PATH").unwrap().1
    );
    world.set("PATH", path);
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let ran = run(world.command("fleetctx").args([
        "sync",
        "--gke-project",
        "p-beta",
        "--kubeconfig",
        &kubeconfig,
    ]))
    .ok();
    let view = fleet.kubectl(&["config", "view", "-o", "json"]).ok().json();
    assert_eq!(
        view["users"][0]["user"]["exec"]["command"],
        prefix.join("bin/fleetctx").display().to_string(),
        "{}",
        ran.stderr
    );
}

#[test]
fn the_readme_install_command_runs_the_main_job_and_explains_what_is_missing() {
    let readme = std::fs::read_to_string(std::path::Path::new(REPO).join("README.md")).unwrap();
    assert!(
        readme.contains("cargo install --locked --path . && fleetctx sync --dry-run"),
        "the README's install command must run the main job"
    );
    let world = World::new();
    let ran = run(&mut world.fleetctx(&["sync", "--dry-run"])).ok();
    assert!(ran.stderr.contains("gcloud"), "{}", ran.stderr);
    assert!(ran.stderr.contains("aws configure"), "{}", ran.stderr);
    assert!(ran.stderr.contains("nothing was scanned"), "{}", ran.stderr);
    assert!(!world.path("home/.kube/config").exists());
}
