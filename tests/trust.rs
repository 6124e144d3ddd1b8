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

#[test]
fn clusters_with_values_that_would_corrupt_the_file_are_skipped_and_their_source_is_not_pruned() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    fleet.gke(json!({
        "p-odd": {"clusters": [{"name": "good"}, {"name": "old"}]},
    }));
    sync(&fleet, &["--gke-project", "p-odd", "--no-eks"]).ok();
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ca = fleet.fakes.field("ca_b64");
    fleet.gke(json!({
        "p-odd": {"clusters": [
            {"name": "good"},
            {"name": "del-in-ca", "ca": format!("{}\u{7f}", &ca[..ca.len() - 4])},
            {"name": "c1-in-ca", "ca": format!("LS0t\u{85}{ca}")},
            {"name": "not-base64", "ca": "this is not base64!"},
            {"name": "not-pem", "ca": b64("hello")},
            {"name": "space-in-server", "endpoint": "127.0.0.1 evil"},
            {"name": "nel-in-server", "endpoint": "127.0.0.1\u{85}"},
            {"name": "ls\u{2028}name"},
            {"name": "tab\tname"},
        ]},
    }));
    let ran = sync(&fleet, &["--gke-project", "p-odd", "--no-eks"]);
    assert_eq!(
        ran.status, 0,
        "a partial answer is a warning\n{}",
        ran.stderr
    );
    for bad in [
        "del-in-ca",
        "c1-in-ca",
        "not-base64",
        "not-pem",
        "space-in-server",
        "nel-in-server",
    ] {
        assert!(
            ran.stderr.contains(&format!("\"{bad}\"")),
            "no warning names {bad}:\n{}",
            ran.stderr
        );
    }
    assert!(ran.stderr.contains("ls\\u{2028}name"), "{}", ran.stderr);
    // kubectl still reads the whole file, and nothing of the partial source was pruned.
    let contexts = fleet.contexts();
    assert_eq!(
        contexts,
        [
            "gke_p-odd_europe-west1-b_good",
            "gke_p-odd_europe-west1-b_old"
        ],
        "{}",
        ran.stderr
    );
    // The file fleetctx wrote is one it reads back.
    sync(&fleet, &["--gke-project", "p-odd", "--no-eks", "--dry-run"]).ok();
}

/// A small deterministic generator (xorshift64*), so a failing case can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

/// A double-quoted YAML scalar of `s`, written the way a person might (escapes).
fn dq(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A name as people write them: plain when YAML keeps it a string, else quoted.
fn name(rng: &mut Rng, n: usize) -> String {
    let stem = rng.pick(&[
        "dev",
        "on",
        "yes",
        "No",
        "y",
        "off",
        "true",
        "null",
        "0777",
        "1e3",
        "clüster-ñ",
        "日本-prod",
        "a b",
        "x:y",
        "#hash",
        "-dash",
        "@at",
        "with\u{2028}sep",
        "nel\u{85}x",
        "bom\u{feff}x",
        "tab\tx",
        "quote\"d",
        "back\\slash",
        "🚀rocket",
        "arn:aws:eks:us-east-1:1:cluster/x",
    ]);
    let long = if rng.chance(10) {
        "-".repeat(200) + "long"
    } else {
        String::new()
    };
    let plain = format!("{stem}{long}-{n}");
    if plain
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && plain.chars().next().unwrap().is_ascii_alphabetic()
        && rng.chance(50)
    {
        plain
    } else if !plain.contains(['\'', '\n', '\t', '\u{85}', '\u{2028}', '\u{feff}'])
        && rng.chance(30)
    {
        format!("'{plain}'")
    } else {
        dq(&plain)
    }
}

/// A scalar for free-form places (extensions), in any style YAML 1.1 resolves.
fn scalar(rng: &mut Rng) -> String {
    rng.pick(&[
        "yes",
        "No",
        "on",
        "OFF",
        "y",
        "n",
        "~",
        "null",
        "0777",
        "0x1F",
        "1_000",
        "1.5e3",
        ".5",
        "-0b11",
        "2026-01-01",
        "'quoted yes'",
        "\"\\u2028ls\"",
        "\"nel\\x85\"",
        "plain text",
        "\"tab\\there\"",
        "'0777'",
        "ünïcode",
        "12345678901234567890",
    ])
    .to_string()
}

fn generated_kubeconfig(rng: &mut Rng) -> String {
    let mut y = String::from("apiVersion: v1\nkind: Config\npreferences: {}\n");
    let clusters = 1 + rng.next() % 3;
    let mut cluster_names = Vec::new();
    y.push_str("clusters:\n");
    for i in 0..clusters {
        let n = name(rng, i as usize);
        cluster_names.push(n.clone());
        y.push_str(&format!("- name: {n}\n  cluster:"));
        if i == 0 {
            y.push_str(" &cbase");
        }
        y.push('\n');
        if i > 0 && rng.chance(50) {
            y.push_str("    <<: *cbase\n");
        }
        y.push_str(&format!(
            "    server: {}\n",
            dq(&format!("https://127.0.0.1:{}/p?q=ü", 6000 + i))
        ));
        y.push_str(&format!(
            "    insecure-skip-tls-verify: {}\n",
            rng.pick(&["yes", "no", "on", "off", "y", "n", "true", "False"])
        ));
        if rng.chance(60) {
            y.push_str(&format!(
                "    extensions:\n    - name: {}\n      extension:\n        a: {}\n        b: [{}, {}]\n        {}: {}\n",
                name(rng, 99),
                scalar(rng),
                scalar(rng),
                scalar(rng),
                rng.pick(&["on", "yes", "k", "'n'"]),
                scalar(rng)
            ));
        }
    }
    y.push_str("users:\n- name: base-user\n  user: &ubase\n    token: ");
    y.push_str(&dq("tok\u{2028}en"));
    y.push_str("\n    username: admin\n");
    let users = 1 + rng.next() % 3;
    let mut user_names = vec!["base-user".to_string()];
    for i in 0..users {
        let n = name(rng, 10 + i as usize);
        user_names.push(n.clone());
        y.push_str(&format!("- name: {n}\n  user:\n"));
        match rng.next() % 3 {
            0 => y.push_str("    <<: *ubase\n    username: other\n"),
            1 => y.push_str("    username: first\n    <<: [*ubase]\n"),
            _ => y.push_str(&format!(
                "    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: {}\n      args: [{}, {}]\n      interactiveMode: Never\n      provideClusterInfo: {}\n",
                name(rng, 50),
                name(rng, 51),
                dq("arg\u{85}x"),
                rng.pick(&["yes", "off", "true"])
            )),
        }
    }
    y.push_str("contexts:\n");
    let contexts = 1 + rng.next() % 3;
    let mut first = None;
    for i in 0..contexts {
        let n = name(rng, 20 + i as usize);
        first.get_or_insert(n.clone());
        let cluster = &cluster_names[(rng.next() % cluster_names.len() as u64) as usize];
        let user = &user_names[(rng.next() % user_names.len() as u64) as usize];
        if rng.chance(50) {
            y.push_str(&format!(
                "- name: {n}\n  context: {{cluster: {cluster}, user: {user}, namespace: {}}}\n",
                name(rng, 30)
            ));
        } else {
            y.push_str(&format!(
                "- context:\n    cluster: {cluster}\n    user: {user}\n    namespace: {}\n  name: {n}\n",
                name(rng, 31)
            ));
        }
    }
    y.push_str(&format!("current-context: {}\n", first.unwrap()));
    y
}

/// What kubectl makes of every entry, by kind and name.
fn kubectl_view(fleet: &Fleet) -> serde_json::Value {
    fleet
        .kubectl(&["config", "view", "--raw", "-o", "json"])
        .ok()
        .json()
}

#[test]
fn foreign_entries_keep_their_meaning_through_a_sync_for_generated_kubeconfigs() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    let cases: u64 = std::env::var("FLEETCTX_PROPERTY_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let mut checked = 0;
    for seed in 1..=cases {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let text = generated_kubeconfig(&mut rng);
        std::fs::write(&fleet.kubeconfig, &text).unwrap();
        let before = fleet.kubectl(&["config", "view", "--raw", "-o", "json"]);
        if before.status != 0 {
            continue; // the generator made a file kubectl itself refuses
        }
        let before = before.json();
        let ran = sync(&fleet, &["--gke-project", "p-beta", "--no-eks"]);
        assert_eq!(ran.status, 0, "seed {seed}\n{}\n{text}", ran.stderr);
        let after = kubectl_view(&fleet);
        for list in ["clusters", "users", "contexts"] {
            for entry in before[list].as_array().unwrap() {
                let again = after[list]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["name"] == entry["name"]);
                assert_eq!(
                    again,
                    Some(entry),
                    "seed {seed}: {list} entry changed meaning\ninput:\n{text}\nwritten:\n{}",
                    fleet.read()
                );
            }
        }
        assert_eq!(
            after["current-context"], before["current-context"],
            "seed {seed}"
        );
        assert_eq!(after["preferences"], before["preferences"], "seed {seed}");
        checked += 1;
    }
    eprintln!("checked {checked} of {cases} generated kubeconfigs");
    assert!(
        checked * 2 >= cases,
        "most generated files must be valid: {checked}/{cases}"
    );
}

fn is_root() -> bool {
    let uid = run(std::process::Command::new("id").arg("-u")).stdout;
    let root = uid.trim() == "0";
    if !root {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI runs as root"
        );
        eprintln!("SKIP: needs root (mounts, chown)");
    }
    root
}

/// Mounts stay mounted only as long as this guard.
struct Mount(std::path::PathBuf);

impl Mount {
    fn new(args: &[&str], at: &std::path::Path) -> Mount {
        let ran = run(std::process::Command::new("mount").args(args).arg(at));
        assert_eq!(ran.status, 0, "mount {args:?}: {}", ran.stderr);
        Mount(at.to_path_buf())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

fn temp_files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn symlinked_kubeconfigs_stay_links_dangling_ones_included() {
    let Some(fleet) = Fleet::start() else { return };
    let real_dir = fleet.world.path("dotfiles");
    std::fs::create_dir_all(&real_dir).unwrap();
    std::fs::write(real_dir.join("kube.yaml"), "apiVersion: v1\nkind: Config\n").unwrap();
    std::os::unix::fs::symlink(real_dir.join("kube.yaml"), &fleet.kubeconfig).unwrap();
    sync(&fleet, &["--gke-project", "p-beta", "--no-eks"]).ok();
    assert!(
        std::fs::symlink_metadata(&fleet.kubeconfig)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(real_dir.join("kube.yaml"))
            .unwrap()
            .contains("p-beta")
    );

    let dangling = fleet.world.path("dangling");
    std::os::unix::fs::symlink("dotfiles/new.yaml", &dangling).unwrap();
    let path = dangling.display().to_string();
    run(&mut fleet.world.fleetctx(&[
        "sync",
        "--gke-project",
        "p-beta",
        "--no-eks",
        "--kubeconfig",
        &path,
    ]))
    .ok();
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(real_dir.join("new.yaml"))
            .unwrap()
            .contains("p-beta")
    );
    assert!(temp_files(&real_dir).is_empty() && temp_files(fleet.world.dir.path()).is_empty());
}

#[test]
fn a_root_sync_keeps_the_owner_group_and_mode_of_a_users_file() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !is_root() {
        return;
    }
    let Some(fleet) = Fleet::start() else { return };
    std::fs::write(&fleet.kubeconfig, "apiVersion: v1\nkind: Config\n").unwrap();
    std::os::unix::fs::chown(&fleet.kubeconfig, Some(4321), Some(4322)).unwrap();
    std::fs::set_permissions(&fleet.kubeconfig, std::fs::Permissions::from_mode(0o640)).unwrap();
    sync(&fleet, &["--gke-project", "p-beta", "--no-eks"]).ok();
    let meta = std::fs::metadata(&fleet.kubeconfig).unwrap();
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (4321, 4322, 0o640)
    );
    assert!(fleet.read().contains("p-beta"));
}

#[test]
fn a_read_only_kubeconfig_is_refused_not_replaced() {
    use std::os::unix::fs::PermissionsExt;
    let Some(fleet) = Fleet::start() else { return };
    let text = "apiVersion: v1\nkind: Config\n";
    std::fs::write(&fleet.kubeconfig, text).unwrap();
    std::fs::set_permissions(&fleet.kubeconfig, std::fs::Permissions::from_mode(0o444)).unwrap();
    let ran = sync(&fleet, &["--gke-project", "p-beta", "--no-eks"]);
    assert_eq!(ran.status, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("read-only") && ran.stderr.contains("hint:"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&fleet.kubeconfig.display().to_string()),
        "{}",
        ran.stderr
    );
    assert_eq!(fleet.read(), text);
    let meta = std::fs::metadata(&fleet.kubeconfig).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o444);
}

#[test]
fn a_bind_mounted_kubeconfig_is_rewritten_in_place_with_a_warning() {
    if !is_root() {
        return;
    }
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    let host_file = fleet.world.path("host-kubeconfig");
    std::fs::write(&host_file, "apiVersion: v1\nkind: Config\n").unwrap();
    std::fs::write(&fleet.kubeconfig, "").unwrap();
    let _mount = Mount::new(
        &["--bind", &host_file.display().to_string()],
        &fleet.kubeconfig,
    );
    let ran = sync(&fleet, &["--gke-project", "p-beta", "--no-eks"]).ok();
    assert!(ran.stderr.contains("in place"), "{}", ran.stderr);
    assert!(
        std::fs::read_to_string(&host_file)
            .unwrap()
            .contains("p-beta")
    );
    assert_eq!(fleet.contexts(), ["gke_p-beta_asia-east1-a_b"]);
    assert!(temp_files(fleet.world.dir.path()).is_empty());
}

#[test]
fn a_full_disk_leaves_the_original_byte_identical_and_no_temp_file() {
    if !is_root() {
        return;
    }
    let Some(fleet) = Fleet::start() else { return };
    let disk = fleet.world.path("small-disk");
    std::fs::create_dir_all(&disk).unwrap();
    let _mount = Mount::new(&["-t", "tmpfs", "-o", "size=64k", "tmpfs"], &disk);
    let kubeconfig = disk.join("config");
    // A file that fills more than half the disk: its rewrite cannot fit.
    let mut text = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
    let mut i = 0;
    while text.len() < 40_000 {
        text.push_str(&format!(
            "- name: c{i}\n  cluster:\n    server: https://127.0.0.1:{i}\n"
        ));
        i += 1;
    }
    std::fs::write(&kubeconfig, &text).unwrap();
    let path = kubeconfig.display().to_string();
    let ran = run(&mut fleet.world.fleetctx(&[
        "sync",
        "--gke-project",
        "p-beta",
        "--no-eks",
        "--kubeconfig",
        &path,
    ]));
    assert_eq!(ran.status, 1, "{}", ran.stderr);
    assert!(ran.stderr.contains(&path), "{}", ran.stderr);
    assert_eq!(std::fs::read_to_string(&kubeconfig).unwrap(), text);
    assert!(temp_files(&disk).is_empty(), "{:?}", temp_files(&disk));
    assert!(!disk.join("config.lock").exists());
}

/// kubectl with the world's `KUBECONFIG` (no `--kubeconfig`): the merged view.
fn kubectl_merged(world: &World, args: &[&str]) -> Ran {
    run(world.command(tool("kubectl").unwrap()).args(args))
}

fn context_entry(view: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
    view["contexts"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .cloned()
}

#[test]
fn several_kubeconfig_files_follow_kubectls_rules() {
    needs!("kubectl");
    let Some(mut fleet) = Fleet::start() else {
        return;
    };
    let first = fleet.world.path("a.yaml");
    let second = fleet.world.path("b.yaml");
    let projects = [
        "--gke-project",
        "p-alpha",
        "--gke-project",
        "p-beta",
        "--no-eks",
    ];
    // An earlier sync wrote into the second file, and the user set a namespace there.
    fleet.world.set("KUBECONFIG", second.display().to_string());
    run(&mut fleet.world.fleetctx(&[&["sync"], &projects[..]].concat())).ok();
    kubectl_merged(
        &fleet.world,
        &[
            "config",
            "set-context",
            "gke_p-alpha_europe-west1-b_a",
            "--namespace",
            "team",
        ],
    )
    .ok();
    // A hand-written entry in the second file with a name sync would write.
    let mut text = std::fs::read_to_string(&second).unwrap();
    text = text.replace(
        "contexts:\n",
        "contexts:\n- name: gke_p-gamma_europe-west1-b_g\n  context:\n    cluster: handwritten\n    user: me\n",
    );
    std::fs::write(&second, text).unwrap();
    std::fs::write(
        &first,
        "apiVersion: v1\nkind: Config\ncontexts:\n- name: mine\n  context:\n    cluster: mine\n    user: mine\ncurrent-context: mine\n",
    )
    .unwrap();

    fleet.world.set(
        "KUBECONFIG",
        format!("{}:{}", first.display(), second.display()),
    );
    fleet.gke(json!({
        "p-alpha": {"clusters": [{"name": "a"}]},
        "p-beta": {"clusters": [{"name": "b", "location": "asia-east1-a"}]},
        "p-gamma": {"clusters": [{"name": "g"}]},
        "p-delta": {"clusters": [{"name": "d"}]},
    }));
    let ran = run(&mut fleet.world.fleetctx(&[
        "sync",
        "--gke-project",
        "p-alpha",
        "--gke-project",
        "p-beta",
        "--gke-project",
        "p-gamma",
        "--gke-project",
        "p-delta",
        "--no-eks",
    ]))
    .ok();
    assert!(
        ran.stderr.contains("gke_p-gamma_europe-west1-b_g")
            && ran.stderr.contains(&format!("in {}", second.display())),
        "the shadowed hand-written entry is a reported conflict:\n{}",
        ran.stderr
    );
    let view = kubectl_merged(&fleet.world, &["config", "view", "-o", "json"])
        .ok()
        .json();
    let alpha = context_entry(&view, "gke_p-alpha_europe-west1-b_a").unwrap();
    assert_eq!(
        alpha["context"]["namespace"], "team",
        "the user's namespace was lost"
    );
    let gamma = context_entry(&view, "gke_p-gamma_europe-west1-b_g").unwrap();
    assert_eq!(gamma["context"]["cluster"], "handwritten", "{gamma}");
    assert!(
        context_entry(&view, "gke_p-alpha_us-east1_on").is_none(),
        "an owned entry of a gone cluster in the second file must be pruned"
    );
    let first_text = std::fs::read_to_string(&first).unwrap();
    assert!(
        !first_text.contains("p-alpha") && !first_text.contains("p-gamma"),
        "{first_text}"
    );
    assert!(
        first_text.contains("gke_p-delta_europe-west1-b_d"),
        "new entries go to the first file"
    );
    assert_eq!(view["current-context"], "mine");

    // Only the files that change are locked: a lock on the second file does not
    // stop a sync that writes only the first.
    let lock = fleet.world.path("b.yaml.lock");
    std::fs::write(&lock, "").unwrap();
    let mut projects = json!({
        "p-alpha": {"clusters": [{"name": "a"}]},
        "p-beta": {"clusters": [{"name": "b", "location": "asia-east1-a"}]},
        "p-gamma": {"clusters": [{"name": "g"}]},
        "p-delta": {"clusters": [{"name": "d"}]},
        "p-eps": {"clusters": [{"name": "e"}]},
    });
    fleet.gke(projects.clone());
    let args = [
        "sync",
        "--gke-project",
        "p-alpha",
        "--gke-project",
        "p-beta",
        "--gke-project",
        "p-gamma",
        "--gke-project",
        "p-delta",
        "--gke-project",
        "p-eps",
        "--no-eks",
        "--lock-timeout",
        "1",
    ];
    run(&mut fleet.world.fleetctx(&args)).ok();
    // Now the second file must change (p-beta's cluster is gone): its lock is waited for.
    projects["p-beta"] = json!({"clusters": []});
    fleet.gke(projects);
    let blocked = run(&mut fleet.world.fleetctx(&args));
    assert_eq!(blocked.status, 1, "{}", blocked.stderr);
    assert!(
        blocked.stderr.contains(&lock.display().to_string()),
        "{}",
        blocked.stderr
    );
    std::fs::remove_file(&lock).unwrap();
    run(&mut fleet.world.fleetctx(&args)).ok();
    let view = kubectl_merged(&fleet.world, &["config", "view", "-o", "json"])
        .ok()
        .json();
    assert!(context_entry(&view, "gke_p-beta_asia-east1-a_b").is_none());
}

/// A stand-in `gcloud` on PATH, shaped like the real one's `config config-helper
/// --format=json` and `auth print-access-token`, serving a real token the Google
/// fake issued to `key` (the "gcloud user") with the given expiry.
fn gcloud_stand_in(world: &mut World, fakes: &Fakes, key: &str, expires_in: i64) -> String {
    let python = tool("python").unwrap();
    let token = run(std::process::Command::new(python)
        .arg(std::path::Path::new(REPO).join("tests/fakes/fakes.py"))
        .args(["--google-token", key]))
    .ok()
    .stdout
    .trim()
    .to_string();
    let _ = fakes;
    let bin = world.path("gcloud-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let expiry = run(std::process::Command::new("date").args([
        "-u",
        "-d",
        &format!("@{}", now() + expires_in),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]))
    .ok()
    .stdout
    .trim()
    .to_string();
    let script = format!(
        "#!/bin/sh\ncase \"$*\" in\n  'config config-helper --format=json') printf '%s\\n' '{{\"configuration\":{{\"active_configuration\":\"default\",\"properties\":{{\"core\":{{\"account\":\"user@example.com\"}}}}}},\"credential\":{{\"access_token\":\"{token}\",\"id_token\":\"x.y.z\",\"token_expiry\":\"{expiry}\"}},\"sentinels\":{{\"config_sentinel\":\"/dev/null\"}}}}' ;;\n  'auth print-access-token'*) echo '{token}' ;;\n  *) echo \"gcloud stand-in: $*\" >&2; exit 2 ;;\nesac\n"
    );
    let path = bin.join("gcloud");
    std::fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = world
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .unwrap()
        .1
        .clone();
    world.set("PATH", format!("{}:{old}", bin.display()));
    expiry
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Who the Google fake issued `token` to, and through whom.
fn issued(fakes: &Fakes, token: &str) -> serde_json::Value {
    let tokens = http_json("GET", &fakes.url("google"), "/_tokens", None);
    tokens["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["token"] == token)
        .cloned()
        .unwrap_or_else(|| panic!("the fake never issued this token"))
}

/// What `gcloud auth application-default login --impersonate-service-account`
/// writes: a user login as the source, the target's generateAccessToken URL.
fn impersonated_adc(fakes: &Fakes, delegate: &str, target: &str) -> String {
    json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": format!(
            "{}/v1/projects/-/serviceAccounts/{target}:generateAccessToken",
            fakes.url("google")
        ),
        "delegates": [format!("projects/-/serviceAccounts/{delegate}")],
        "source_credentials": {
            "type": "authorized_user",
            "client_id": "764086051850-fake.apps.googleusercontent.com",
            "client_secret": "d-FL95Q19q7MQmFpd7hHD0Ty",
            "refresh_token": "1//fake-refresh-user@example.com",
            "token_uri": format!("{}/token", fakes.url("google")),
        },
        "quota_project_id": "test-project",
    })
    .to_string()
}

#[test]
fn an_impersonated_adc_file_signs_as_its_target_never_as_the_gcloud_user() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let (delegate, target) = (fakes.field("sa_email"), fakes.field("sa_email_2"));
    for config_dir in ["home/.config/gcloud", "elsewhere/gcloud"] {
        let mut world = World::new();
        gcloud_stand_in(&mut world, &fakes, &fakes.field("sa_key"), 3000);
        let dir = world.path(config_dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("application_default_credentials.json"),
            impersonated_adc(&fakes, &delegate, &target),
        )
        .unwrap();
        if config_dir.starts_with("elsewhere") {
            world.set("CLOUDSDK_CONFIG", dir.display().to_string());
        }
        let ran = run(&mut world.fleetctx(&["token", "gke"])).ok();
        let who = issued(&fakes, &ran.token());
        assert_eq!(who["email"], target.as_str(), "{config_dir}: {who}");
        assert_eq!(who["source"], "user@example.com", "{config_dir}: {who}");
        assert_eq!(
            fakes.stats()["generate_access_token_delegates"],
            json!([format!("projects/-/serviceAccounts/{delegate}")])
        );
    }
}

#[test]
fn an_external_account_adc_file_is_an_error_naming_the_file() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let mut world = World::new();
    gcloud_stand_in(&mut world, &fakes, &fakes.field("sa_key"), 3000);
    let adc = world.path("home/.config/gcloud/application_default_credentials.json");
    std::fs::create_dir_all(adc.parent().unwrap()).unwrap();
    std::fs::write(
        &adc,
        r#"{"type":"external_account","audience":"//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/x","subject_token_type":"urn:ietf:params:oauth:token-type:jwt","token_url":"https://sts.googleapis.com/v1/token","credential_source":{"file":"/var/run/token"}}"#,
    )
    .unwrap();
    let ran = run(&mut world.fleetctx(&["token", "gke"]));
    assert_eq!(ran.status, 1, "{}", ran.stdout);
    assert!(ran.stdout.is_empty());
    assert!(
        ran.stderr.contains(&adc.display().to_string()) && ran.stderr.contains("external_account"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("hint:"), "{}", ran.stderr);
}

#[test]
fn a_gcloud_user_token_is_served_until_its_real_expiry_not_an_assumed_hour() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let mut world = World::new();
    let expiry = gcloud_stand_in(&mut world, &fakes, &fakes.field("sa_key_2"), 600);
    let ran = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert_eq!(ran.json()["status"]["expirationTimestamp"], expiry.as_str());
    assert_eq!(
        issued(&fakes, &ran.token())["email"],
        fakes.field("sa_email_2").as_str()
    );
}

#[test]
fn the_metadata_server_is_found_through_gce_metadata_host() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let mut world = World::new();
    let host = fakes
        .url("google")
        .trim_start_matches("http://")
        .to_string();
    world.set("GCE_METADATA_HOST", &host);
    let ran = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert_eq!(fakes.count("metadata_token_requests"), 1);
    let who = issued(&fakes, &ran.token());
    assert_eq!(who["email"], fakes.field("sa_email").as_str());
    assert_eq!(who["source"], "metadata");
}
