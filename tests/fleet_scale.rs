//! Issue 9: every account and every project of an organization.

mod support;

use serde_json::json;
use support::*;

fn sync(fleet: &Fleet, args: &[&str]) -> Ran {
    let kubeconfig = fleet.kubeconfig.display().to_string();
    let mut all = vec!["sync", "--kubeconfig", &kubeconfig];
    all.extend_from_slice(args);
    run(&mut fleet.world.fleetctx(&all))
}

#[test]
fn a_project_filter_and_exclusions_choose_what_is_scanned() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    fleet.gke(json!({
        "p-prod-a": {"labels": {"env": "prod"}, "clusters": [{"name": "a"}]},
        "p-dev": {"labels": {"env": "dev"}, "clusters": [{"name": "d"}]},
        "p-prod-b": {"labels": {"env": "prod"}, "clusters": [{"name": "b"}]},
        "p-prod-c": {"labels": {"env": "prod"}, "clusters": [{"name": "c"}]},
    }));
    let ran = sync(
        &fleet,
        &[
            "--gke-project-filter",
            "labels.env:prod",
            "--gke-exclude-project",
            "p-prod-c",
            "--no-eks",
        ],
    )
    .ok();
    assert_eq!(
        fleet.contexts(),
        [
            "gke_p-prod-a_europe-west1-b_a",
            "gke_p-prod-b_europe-west1-b_b"
        ],
        "{}",
        ran.stderr
    );
    assert_eq!(fleet.fakes.count_container("p-dev"), 0);
    assert_eq!(fleet.fakes.count_container("p-prod-c"), 0);

    // The same from config.yaml.
    let dir = fleet.world.path("config").join("fleetctx");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("config.yaml"),
        format!(
            "gke:\n  project-filter: labels.env:dev\n  exclude-projects: [p-prod-a]\neks:\n  enabled: false\nkubeconfig: {}\n",
            fleet.kubeconfig.display()
        ),
    )
    .unwrap();
    run(&mut fleet.world.fleetctx(&["sync"])).ok();
    assert_eq!(fleet.contexts(), ["gke_p-dev_europe-west1-b_d"]);
}

#[test]
fn every_profile_of_the_config_files_is_scanned_and_an_unusable_one_is_one_line() {
    needs!("kubectl");
    let Some(fleet) = Fleet::start() else { return };
    let mut config = std::fs::read_to_string(fleet.world.path("aws-config")).unwrap();
    config.push_str(
        "\n[profile no-creds]\nregion = us-east-1\n\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\n",
    );
    std::fs::write(fleet.world.path("aws-config"), config).unwrap();
    let ran = sync(
        &fleet,
        &[
            "--eks-all-profiles",
            "--eks-region",
            "us-east-1",
            "--no-gke",
        ],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert_eq!(
        fleet.contexts(),
        ["eks_dev_us-east-1_c1", "eks_on_us-east-1_c1"],
        "{}",
        ran.stderr
    );
    let skipped: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.contains("skipped"))
        .collect();
    assert_eq!(skipped.len(), 1, "{}", ran.stderr);
    assert!(skipped[0].contains("no-creds"), "{}", ran.stderr);
    assert!(
        !ran.stderr.contains("corp"),
        "an sso-session is not a profile: {}",
        ran.stderr
    );
}

fn denied_fleet(fleet: &Fleet, denied: usize) {
    let mut projects = serde_json::Map::new();
    projects.insert("p-ok".into(), json!({"clusters": [{"name": "a"}]}));
    for i in 0..denied {
        projects.insert(
            format!("p-denied-{i:03}"),
            json!({"error": "PERMISSION_DENIED"}),
        );
    }
    fleet.gke(serde_json::Value::Object(projects));
}

#[test]
fn the_same_error_from_many_sources_is_one_message() {
    let Some(fleet) = Fleet::start() else { return };
    denied_fleet(&fleet, 30);
    let ran = sync(&fleet, &["--gke-all-projects", "--no-eks"]);
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    let errors = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .count();
    assert_eq!(errors, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("the same for 29 more sources"),
        "{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains("and 24 more (-v lists them all)"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.lines().count() < 10, "{}", ran.stderr);

    let verbose = sync(&fleet, &["--gke-all-projects", "--no-eks", "-v"]);
    for i in 0..30 {
        assert!(
            verbose.stderr.contains(&format!("p-denied-{i:03}")),
            "{}",
            verbose.stderr
        );
    }
}

#[test]
fn sync_output_json_reports_each_source_and_the_changes_per_file() {
    let Some(fleet) = Fleet::start() else { return };
    denied_fleet(&fleet, 2);
    let ran = sync(&fleet, &["--gke-all-projects", "--no-eks", "-o", "json"]);
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    let report = ran.json();
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["dry_run"], false);
    let outcome = |source: &str| {
        report["sources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["source"] == source)
            .unwrap_or_else(|| panic!("no {source} in {report}"))
            .clone()
    };
    assert_eq!(outcome("gke/p-ok")["outcome"], "complete");
    assert_eq!(outcome("gke/p-ok")["clusters"], 1);
    assert_eq!(outcome("gke/p-denied-000")["outcome"], "failed");
    assert!(
        outcome("gke/p-denied-001")["reason"]
            .as_str()
            .unwrap()
            .contains("p-denied-001")
    );
    let file = &report["files"][0];
    assert_eq!(file["file"], fleet.kubeconfig.display().to_string());
    assert_eq!(file["written"], true);
    assert_eq!(file["added"], 3, "{report}");
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["kind"] == "context"
            && c["name"] == "gke_p-ok_europe-west1-b_a"
            && c["change"] == "added"),
        "{report}"
    );
    // A dry run reports what it would do, and only the JSON is on stdout.
    let dry = sync(
        &fleet,
        &["--gke-all-projects", "--no-eks", "-o", "json", "--dry-run"],
    );
    assert_eq!(dry.json()["files"][0]["written"], false);
    assert_eq!(dry.json()["files"][0]["unchanged"], 3);
}

#[test]
fn throttled_sources_are_retried_and_count_as_complete() {
    let Some(fleet) = Fleet::start() else { return };
    let mut projects = serde_json::Map::new();
    for i in 0..20 {
        projects.insert(
            format!("p-busy-{i:02}"),
            json!({"error": 429, "error_count": 2, "clusters": [{"name": "c"}]}),
        );
    }
    fleet.gke(serde_json::Value::Object(projects));
    // Resource Manager throttles too, saying when to come back.
    fleet
        .fakes
        .config(json!({"fail": {"route": "rm", "status": 429, "count": 2}}));
    let started = std::time::Instant::now();
    let ran = sync(&fleet, &["--gke-all-projects", "--no-eks", "-o", "json"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let report = ran.json();
    let complete = report["sources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["outcome"] == "complete")
        .count();
    assert_eq!(complete, 20, "{report}");
    assert_eq!(report["files"][0]["added"], 20 * 2 + 1, "{report}");
    // Two Retry-After: 1 waits, then the backed-off Container retries.
    assert!(started.elapsed().as_secs() < 15, "{:?}", started.elapsed());
    assert_eq!(fleet.fakes.count_container("p-busy-07"), 3);
}

/// `aws organizations ...` against moto, as the dev profile (the management account).
fn organizations(fleet: &Fleet, args: &[&str]) -> serde_json::Value {
    let aws = tool("aws").unwrap();
    run(fleet
        .world
        .command(aws)
        .args([
            "organizations",
            "--profile",
            "dev",
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args))
    .ok()
    .json()
}

#[test]
fn every_account_of_the_organization_through_its_role_and_kubectl_reaches_them() {
    needs!("kubectl", "aws");
    let Some(fleet) = Fleet::start() else { return };
    organizations(&fleet, &["create-organization", "--feature-set", "ALL"]);
    let mut accounts = Vec::new();
    for team in ["team-a", "team-b"] {
        let created = organizations(
            &fleet,
            &[
                "create-account",
                "--email",
                &format!("{team}@example.com"),
                "--account-name",
                team,
            ],
        );
        let id = created["CreateAccountStatus"]["AccountId"]
            .as_str()
            .unwrap()
            .to_string();
        http_json(
            "POST",
            &fleet.fakes.url("google"),
            "/_eks/create",
            Some(json!({"account": id, "region": "us-east-1", "name": format!("{team}-c")})),
        );
        accounts.push(id);
    }
    let role = "OrganizationAccountAccessRole";
    let denied = format!("arn:aws:iam::{}:role/{role}", accounts[1]);
    fleet.fakes.config(json!({"aws_denied_roles": [denied]}));
    let args = [
        "--eks-profile",
        "dev",
        "--eks-org-role",
        role,
        "--eks-region",
        "us-east-1",
        "--no-gke",
    ];
    let ran = sync(&fleet, &args);
    assert_eq!(
        ran.status, 3,
        "the account whose role is refused fails\n{}",
        ran.stderr
    );
    assert!(
        ran.stderr.contains(&accounts[1]) && ran.stderr.contains("AccessDenied"),
        "{}",
        ran.stderr
    );
    let team_a = format!("eks_{}_{role}_us-east-1_team-a-c", accounts[0]);
    let contexts = fleet.contexts();
    assert!(contexts.contains(&team_a), "{contexts:?}\n{}", ran.stderr);
    assert!(
        contexts.contains(&format!("eks_123456789012_{role}_us-east-1_c1")),
        "the management account is scanned too: {contexts:?}"
    );
    let got = fleet.kubectl(&["--context", &team_a, "get", "ns"]);
    assert_eq!(got.status, 0, "{}", got.stderr);

    // The refused account's entries survive its next failure; once it answers,
    // it is scanned like the others.
    fleet.fakes.config(json!({"aws_denied_roles": []}));
    sync(&fleet, &args).ok();
    let team_b = format!("eks_{}_{role}_us-east-1_team-b-c", accounts[1]);
    assert!(fleet.contexts().contains(&team_b));
    fleet
        .fakes
        .config(json!({"aws_denied_roles": [format!("arn:aws:iam::{}:role/{role}", accounts[1])]}));
    assert_eq!(sync(&fleet, &args).status, 3);
    assert!(
        fleet.contexts().contains(&team_b),
        "a failed account prunes nothing"
    );
}

fn rfc3339_in(secs: i64) -> String {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + secs;
    run(std::process::Command::new("date").args([
        "-u",
        "-d",
        &format!("@{at}"),
        "+%Y-%m-%dT%H:%M:%SZ",
    ]))
    .ok()
    .stdout
    .trim()
    .to_string()
}

/// What `aws sso login --sso-session corp` leaves behind: the session in the
/// config file and the cached login under `~/.aws/sso/cache`.
fn sso_login(fleet: &mut Fleet, expires_in: i64, refresh: bool) -> std::path::PathBuf {
    let google = fleet.fakes.url("google");
    fleet
        .world
        .set("AWS_ENDPOINT_URL_SSO", format!("{google}/sso"))
        .set("AWS_ENDPOINT_URL_SSO_OIDC", format!("{google}/oidc"));
    let mut config = std::fs::read_to_string(fleet.world.path("aws-config")).unwrap();
    if !config.contains("sso-session corp") {
        config.push_str("\n[sso-session corp]\nsso_start_url = https://corp.awsapps.com/start\nsso_region = us-east-1\nsso_registration_scopes = sso:account:access\n");
        std::fs::write(fleet.world.path("aws-config"), config).unwrap();
    }
    use sha1::Digest;
    let name: String = sha1::Sha1::digest(b"corp")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = fleet.world.path("home/.aws/sso/cache");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(format!("{name}.json"));
    let mut login = json!({
        "startUrl": "https://corp.awsapps.com/start",
        "region": "us-east-1",
        "accessToken": "fake-sso-login-1",
        "expiresAt": rfc3339_in(expires_in),
        "clientId": "fake-client-id",
        "clientSecret": "fake-client-secret",
        "registrationExpiresAt": rfc3339_in(86400 * 30),
    });
    if refresh {
        login["refreshToken"] = json!("fake-refresh-1");
    }
    std::fs::write(&file, login.to_string()).unwrap();
    http_json(
        "POST",
        &google,
        "/_sso/setup",
        Some(json!({
            "access_token": "fake-sso-login-1",
            "expires_in": if expires_in > 0 { 3600 } else { 0 },
            "refresh_token": "fake-refresh-1",
            "accounts": [
                {"id": "111111111111", "name": "prod", "roles": ["Admin", "ReadOnly"]},
                {"id": "222222222222", "name": "dev", "roles": ["Admin"]},
                {"id": "333333333333", "name": "sandbox", "roles": ["ReadOnly"]},
            ],
        })),
    );
    file
}

#[test]
fn an_sso_session_reaches_every_account_and_role_and_kubectl_signs_as_each() {
    needs!("kubectl");
    let Some(mut fleet) = Fleet::start() else {
        return;
    };
    for (account, name) in [("111111111111", "p1"), ("222222222222", "d1")] {
        http_json(
            "POST",
            &fleet.fakes.url("google"),
            "/_eks/create",
            Some(json!({"account": account, "region": "us-east-1", "name": name})),
        );
    }
    sso_login(&mut fleet, 3600, true);
    let ran = sync(
        &fleet,
        &[
            "--eks-sso-session",
            "corp",
            "--eks-region",
            "us-east-1",
            "--no-gke",
        ],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    let expected = [
        "eks_111111111111_Admin_us-east-1_p1",
        "eks_111111111111_ReadOnly_us-east-1_p1",
        "eks_222222222222_Admin_us-east-1_d1",
    ];
    assert_eq!(fleet.contexts(), expected, "{}", ran.stderr);
    for context in expected {
        let got = fleet.kubectl(&["--context", context, "get", "ns"]);
        assert_eq!(got.status, 0, "{context}: {}", got.stderr);
    }
    let listed = fleet.fakes.stats()["sso"].clone();
    assert!(
        listed["ListAccounts"].as_u64().unwrap() >= 2,
        "paged: {listed}"
    );

    // --eks-sso-role keeps only the named permission sets.
    let only = sync(
        &fleet,
        &[
            "--eks-sso-session",
            "corp",
            "--eks-sso-role",
            "ReadOnly",
            "--eks-region",
            "us-east-1",
            "--no-gke",
            "--dry-run",
            "-o",
            "json",
        ],
    )
    .ok()
    .json();
    let sources: Vec<&str> = only["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source"].as_str().unwrap())
        .collect();
    assert_eq!(
        sources,
        [
            "eks/sso/corp/111111111111/ReadOnly/us-east-1",
            "eks/sso/corp/333333333333/ReadOnly/us-east-1"
        ],
        "{only}"
    );
    // Like a profile left out, a permission set left out is not gone: its entries stay.
    assert_eq!(only["changes"], json!([]), "{only}");
}

#[test]
fn an_expired_sso_login_is_refreshed_or_is_one_clear_error_that_prunes_nothing() {
    let Some(mut fleet) = Fleet::start() else {
        return;
    };
    http_json(
        "POST",
        &fleet.fakes.url("google"),
        "/_eks/create",
        Some(json!({"account": "111111111111", "region": "us-east-1", "name": "p1"})),
    );
    let args = [
        "--eks-sso-session",
        "corp",
        "--eks-region",
        "us-east-1",
        "--no-gke",
    ];
    // Expired, with a refresh token: SSO-OIDC refreshes it, as the aws CLI would.
    let file = sso_login(&mut fleet, -60, true);
    let ran = sync(&fleet, &args);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert!(
        fleet.fakes.stats()["sso"]["CreateToken"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    );
    let refreshed: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_ne!(refreshed["accessToken"], "fake-sso-login-1");
    let before = fleet.read();
    assert!(before.contains("eks_111111111111_Admin_us-east-1_p1"));

    // Expired for good: one clear error, exit 3, nothing pruned.
    sso_login(&mut fleet, -60, false);
    let ran = sync(&fleet, &args);
    assert_eq!(ran.status, 3, "{}", ran.stderr);
    let errors: Vec<&str> = ran
        .stderr
        .lines()
        .filter(|l| l.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("aws sso login --sso-session corp"),
        "{}",
        ran.stderr
    );
    assert_eq!(fleet.read(), before);
}

#[test]
fn the_sso_token_path_caches_role_credentials_until_a_new_login() {
    let Some(mut fleet) = Fleet::start() else {
        return;
    };
    let file = sso_login(&mut fleet, 3600, true);
    let token = |cluster: &str| {
        run(&mut fleet.world.fleetctx(&[
            "token",
            "eks",
            "--cluster",
            cluster,
            "--region",
            "us-east-1",
            "--sso-session",
            "corp",
            "--account-id",
            "111111111111",
            "--role-name",
            "Admin",
        ]))
        .ok()
        .token()
    };
    let fetched = || {
        fleet.fakes.stats()["sso"]["GetRoleCredentials"]
            .as_u64()
            .unwrap_or(0)
    };
    let first = token("p1");
    token("p2");
    assert_eq!(
        fetched(),
        1,
        "a second cluster reuses the cached role credentials"
    );
    let (host, _, params) = url_parts(&eks_url(&first));
    assert_eq!(host, "sts.us-east-1.amazonaws.com");
    assert!(param(&params, "X-Amz-Security-Token").is_some());
    // A new `aws sso login` (the cached login file changes) is a new identity.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let mut login: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    login["registrationExpiresAt"] = json!(rfc3339_in(86400 * 60));
    std::fs::write(&file, format!("{login}\n")).unwrap();
    token("p3");
    assert_eq!(fetched(), 2);
}

#[test]
fn an_sso_profile_scans_every_region_and_its_entries_sign_through_kubectl() {
    needs!("kubectl");
    let Some(mut fleet) = Fleet::start() else {
        return;
    };
    http_json(
        "POST",
        &fleet.fakes.url("google"),
        "/_eks/create",
        Some(json!({"account": "111111111111", "region": "us-east-1", "name": "p1"})),
    );
    sso_login(&mut fleet, 3600, true);
    let mut config = std::fs::read_to_string(fleet.world.path("aws-config")).unwrap();
    // No region of its own: credentials are resolved in the partition's default.
    config.push_str("\n[profile sso-dev]\nsso_session = corp\nsso_account_id = 111111111111\nsso_role_name = Admin\n");
    std::fs::write(fleet.world.path("aws-config"), config).unwrap();
    fleet
        .fakes
        .config(json!({"aws_disabled_regions": ["af-south-1", "ap-east-1", "me-south-1"]}));
    let ran = sync(&fleet, &["--eks-profile", "sso-dev", "--no-gke"]);
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    assert_eq!(
        fleet.contexts(),
        ["eks_sso-dev_us-east-1_p1"],
        "{}",
        ran.stderr
    );
    let got = fleet.kubectl(&["--context", "eks_sso-dev_us-east-1_p1", "get", "ns"]);
    assert_eq!(got.status, 0, "{}", got.stderr);
}

#[test]
fn the_project_listing_never_waits_behind_the_cluster_lists_it_feeds() {
    let Some(fleet) = Fleet::start() else { return };
    let projects: serde_json::Map<String, serde_json::Value> = (0..24)
        .map(|i| (format!("p-{i:02}"), json!({"clusters": [{"name": "c"}]})))
        .collect();
    http_json(
        "POST",
        &fleet.fakes.url("google"),
        "/_gke/fleet",
        Some(json!({"rm_page_size": 6, "projects": projects})),
    );
    fleet.fakes.config(json!({"api_delay_ms": 100}));
    let ran = sync(
        &fleet,
        &["--gke-all-projects", "--no-eks", "--concurrency", "1", "-v"],
    );
    assert_eq!(ran.status, 0, "{}", ran.stderr);
    // -v prints each call as it ends. The four pages take 0.4 s one after another;
    // the 24 lists, one at a time, 2.4 s. Pages that queued behind the lists they
    // feed would end only after the first page's six lists.
    let calls: Vec<&str> = ran.stderr.lines().filter(|l| l.ends_with(" ms)")).collect();
    let last_page = calls
        .iter()
        .rposition(|l| l.contains("projects.search"))
        .expect("pages were listed");
    let lists_before = calls[..last_page]
        .iter()
        .filter(|l| l.contains("/locations/-/clusters"))
        .count();
    assert!(lists_before <= 4, "{}", ran.stderr);
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.contains("/locations/-/clusters"))
            .count(),
        24
    );
}
