//! AKS end to end: `fleetctx sync` against a loopback ARM and Entra ID, then the
//! real kubectl through every synced context, each request's Entra ID token
//! verified by the fake API server (signature, audience, expiry, tenant).

mod support;

use serde_json::{Value, json};
use support::*;

const PROD: &str = "11111111-1111-4111-8111-111111111111";
const SHARED: &str = "22222222-2222-4222-8222-222222222222";
const OFF: &str = "33333333-3333-4333-8333-333333333333";
const LATER: &str = "44444444-4444-4444-8444-444444444444";

fn fleet() -> Value {
    json!([
        {"id": PROD, "name": "prod", "clusters": [
            // Resource group names may hold dots and parentheses.
            {"name": "web", "resource_group": "Team.Web(1)", "location": "westeurope"},
            {"name": "api", "resource_group": "rg-api", "location": "eastus"},
            {"name": "legacy", "resource_group": "rg-old", "aad": false},
        ]},
        {"id": SHARED, "name": "shared", "clusters": [
            {"name": "a", "resource_group": "rg"},
            {"name": "b", "resource_group": "rg"},
            {"name": "c", "resource_group": "rg"},
            {"name": "hidden", "resource_group": "rg", "private": true, "public_fqdn": false},
        ]},
        {"id": OFF, "name": "cancelled", "state": "Disabled", "clusters": [
            {"name": "gone", "resource_group": "rg"},
        ]},
    ])
}

/// The loopback fleet (`Fleet`'s kubectl and contexts), its Azure part only.
fn start() -> Option<Fleet> {
    let fakes = Fakes::start(&["--no-moto"])?;
    azure_fleet(&fakes, fleet());
    let mut world = azure_world(&fakes);
    azure_sp(&mut world, &fakes);
    let kubeconfig = world.path("kubeconfig");
    Some(Fleet {
        fakes,
        world,
        kubeconfig,
    })
}

/// `fleetctx sync` of AKS alone into the fleet's kubeconfig.
fn sync(azure: &Fleet, extra: &[&str]) -> Ran {
    let kubeconfig = azure.kubeconfig.display().to_string();
    let mut args = vec!["sync", "--no-gke", "--no-eks", "--kubeconfig", &kubeconfig];
    args.extend_from_slice(extra);
    run(&mut azure.world.fleetctx(&args))
}

fn name(subscription: &str, group: &str, cluster: &str) -> String {
    format!("aks_{subscription}_{group}_{cluster}")
}

#[test]
fn sync_writes_every_entra_cluster_and_kubectl_reaches_each_with_one_cached_token() {
    needs!("kubectl");
    let Some(azure) = start() else {
        return;
    };
    let ran = sync(&azure, &[]).ok();
    let mut expected = vec![
        name(PROD, "Team.Web(1)", "web"),
        name(PROD, "rg-api", "api"),
        name(SHARED, "rg", "a"),
        name(SHARED, "rg", "b"),
        name(SHARED, "rg", "c"),
    ];
    expected.sort();
    assert_eq!(azure.contexts(), expected, "stderr:\n{}", ran.stderr);

    // Local accounts only: reported, never asked for credentials, never written.
    assert!(
        ran.stderr.contains("legacy") && ran.stderr.contains("local accounts"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("hidden"), "{}", ran.stderr);
    let written = std::fs::read_to_string(&azure.kubeconfig).unwrap();
    for secret_field in ["client-key-data", "client-certificate-data", "token:"] {
        assert!(!written.contains(secret_field), "{written}");
    }
    let stats = azure.fakes.stats();
    assert_eq!(
        stats["arm_credential_requests"]["legacy"]
            .as_u64()
            .unwrap_or(0),
        0,
        "the credentials of a local-accounts cluster must not even be asked for: {stats}"
    );
    // A disabled subscription lists nothing and is not scanned.
    assert!(!written.contains(OFF), "{written}");

    // One user per tenant, its exec naming the tenant.
    let tenant = azure.fakes.field("azure_tenant");
    let view = azure.kubectl(&["config", "view", "-o", "json"]).ok().json();
    let users = view["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{view}");
    assert_eq!(users[0]["name"], format!("fleetctx_aks_{tenant}"));
    assert_eq!(
        users[0]["user"]["exec"]["args"],
        json!(["token", "aks", "--tenant", tenant])
    );

    // The real kubectl through every context: the API server verifies each
    // token; one token is minted for all of them (and one for ARM, by sync).
    let before = azure.fakes.count("entra_token_requests");
    assert_eq!(before, 1, "sync asks Entra ID once, for ARM");
    for context in &expected {
        let got = azure.kubectl(&["--context", context, "get", "namespaces", "-o", "name"]);
        let got = got.ok();
        assert!(got.stdout.contains("namespace/default"), "{}", got.stdout);
    }
    assert_eq!(
        azure.fakes.count("entra_token_requests"),
        2,
        "one AKS token serves every cluster"
    );
    let kinds = &azure.fakes.stats()["kube_token_kinds"];
    assert!(
        kinds["aks"].as_u64().unwrap() >= expected.len() as u64,
        "{kinds}"
    );
}

#[test]
fn a_failing_subscription_or_cluster_is_reported_and_nothing_of_it_is_pruned() {
    needs!("kubectl");
    let Some(azure) = start() else {
        return;
    };
    sync(&azure, &[]).ok();
    let before = azure.contexts();

    // PROD: `web` is gone but `api`'s credentials fail (partial: nothing of it
    // is pruned); SHARED: the list is forbidden; LATER: new, and healthy.
    let mut broken = fleet();
    broken[0]["clusters"] = json!([
        {"name": "api", "resource_group": "rg-api", "credential_error": 500},
    ]);
    broken[1]["error"] = json!(403);
    broken
        .as_array_mut()
        .unwrap()
        .push(json!({"id": LATER, "name": "later", "clusters": [{"name": "new", "resource_group": "rg"}]}));
    azure_fleet(&azure.fakes, broken);
    let ran = sync(&azure, &[]);
    assert_ne!(
        ran.status, 0,
        "a failed source is a failure: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains(SHARED), "{}", ran.stderr);
    assert!(
        ran.stderr
            .contains("the credentials of api could not be read"),
        "{}",
        ran.stderr
    );
    let mut expected = before.clone();
    expected.push(name(LATER, "rg", "new"));
    expected.sort();
    assert_eq!(azure.contexts(), expected, "{}", ran.stderr);

    // Healed: what is gone goes.
    let mut healed = fleet();
    healed[0]["clusters"] = json!([{"name": "api", "resource_group": "rg-api"}]);
    azure_fleet(&azure.fakes, healed);
    let ran = sync(&azure, &[]).ok();
    let contexts = azure.contexts();
    assert!(
        !contexts.contains(&name(PROD, "Team.Web(1)", "web")),
        "{}",
        ran.stderr
    );
    assert!(
        !contexts.contains(&name(LATER, "rg", "new")),
        "{}",
        ran.stderr
    );
    assert!(
        contexts.contains(&name(SHARED, "rg", "a")),
        "{}",
        ran.stderr
    );
}

#[test]
fn rejected_credentials_fail_the_sync_and_leave_the_kubeconfig_alone() {
    let Some(azure) = start() else {
        return;
    };
    sync(&azure, &[]).ok();
    let before = std::fs::read(&azure.kubeconfig).unwrap();
    http_json(
        "POST",
        &azure.fakes.url("google"),
        "/_azure/entra",
        Some(json!({"revoke_app": azure.fakes.field("azure_client_id")})),
    );
    // The ARM token is cached: the revocation shows on the next mint.
    run(&mut azure
        .world
        .fleetctx(&["cache", "clear", "--provider", "aks"]))
    .ok();
    let ran = sync(&azure, &[]);
    assert_ne!(ran.status, 0, "{}", ran.stderr);
    let client = azure.fakes.field("azure_client_id");
    assert!(
        ran.stderr.contains(&client),
        "names the identity: {}",
        ran.stderr
    );
    assert!(ran.stderr.contains("AADSTS"), "says why: {}", ran.stderr);
    let secret = azure.fakes.field("azure_client_secret");
    assert!(!ran.stderr.contains(&secret), "{}", ran.stderr);
    // Entra's words, not a JSON parser's complaint about them.
    assert!(!ran.stderr.contains("borrowed string"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("Trace ID"), "{}", ran.stderr);
    assert_eq!(std::fs::read(&azure.kubeconfig).unwrap(), before);
}

#[test]
fn named_subscriptions_and_the_private_endpoint() {
    needs!("kubectl");
    let Some(azure) = start() else {
        return;
    };
    let ran = sync(
        &azure,
        &["--aks-subscription", SHARED, "--aks-endpoint", "private"],
    )
    .ok();
    // Only the private cluster has a private FQDN.
    assert_eq!(
        azure.contexts(),
        vec![name(SHARED, "rg", "hidden")],
        "{}",
        ran.stderr
    );
    let stats = azure.fakes.stats();
    assert_eq!(
        stats["arm_credential_server_fqdn"]["none"].as_u64(),
        Some(1),
        "{stats}"
    );
    // Only the named subscription's clusters are listed.
    assert_eq!(stats["arm_cluster_pages"][PROD].as_u64().unwrap_or(0), 0);
    azure
        .kubectl(&["--context", &name(SHARED, "rg", "hidden"), "get", "ns"])
        .ok();
}

#[test]
fn a_throttled_subscription_is_retried_and_counts_as_complete() {
    needs!("kubectl");
    let Some(azure) = start() else {
        return;
    };
    sync(&azure, &[]).ok();
    // Throttled twice (429, Retry-After: 1) while `web` is gone: once it
    // answers, the subscription is complete, so `web` is pruned.
    let mut throttled = fleet();
    throttled[0]["error"] = json!(429);
    throttled[0]["error_count"] = json!(2);
    throttled[0]["retry_after"] = json!(1);
    throttled[0]["clusters"] =
        json!([{"name": "api", "resource_group": "rg-api", "location": "eastus"}]);
    azure_fleet(&azure.fakes, throttled);
    let ran = sync(&azure, &[]).ok();
    let contexts = azure.contexts();
    assert!(
        !contexts.contains(&name(PROD, "Team.Web(1)", "web")),
        "{}",
        ran.stderr
    );
    assert!(
        contexts.contains(&name(PROD, "rg-api", "api")),
        "{}",
        ran.stderr
    );
    let pages = azure.fakes.stats()["arm_cluster_pages"][PROD]
        .as_u64()
        .unwrap_or(0);
    assert!(pages >= 3, "two throttled answers, then the list: {pages}");

    // Every synced context answers `fleetctx status`, through `token aks`.
    let kubeconfig = azure.kubeconfig.display().to_string();
    let status =
        run(&mut azure
            .world
            .fleetctx(&["status", "--kubeconfig", &kubeconfig, "-o", "json"]));
    assert_eq!(status.status, 0, "{}\n{}", status.stdout, status.stderr);
    for context in azure.contexts() {
        assert!(
            status.stdout.contains(&context),
            "{context}: {}",
            status.stdout
        );
    }
}

#[test]
fn a_subscription_named_by_anything_but_its_id_is_refused_before_any_call() {
    let Some(azure) = start() else {
        return;
    };
    let ran = sync(&azure, &["--aks-subscription", "prod"]).failed();
    assert!(
        ran.stderr
            .contains("\"prod\" is not an Azure subscription id"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("az account list"), "{}", ran.stderr);
    assert_eq!(azure.fakes.count("arm_requests"), 0);
    // An id in capitals is the same subscription as the listing's.
    let upper = PROD.to_uppercase();
    sync(&azure, &["--aks-subscription", &upper]).ok();
    assert!(azure.contexts().contains(&name(PROD, "rg-api", "api")));
}

#[test]
fn an_azure_cli_that_was_logged_out_is_no_azure_login() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let world = azure_world(&fakes);
    // What `az logout` leaves: the profile, with no account (and its BOM).
    let config = world.path("azure");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("azureProfile.json"),
        "\u{feff}{\"subscriptions\": [], \"installationId\": \"x\"}",
    )
    .unwrap();
    let kubeconfig = world.path("kubeconfig").display().to_string();
    let ran =
        run(&mut world.fleetctx(&["sync", "--no-gke", "--no-eks", "--kubeconfig", &kubeconfig]));
    assert_eq!(ran.status, 0, "skipped, not failed: {}", ran.stderr);
    assert!(
        ran.stderr.contains("AKS skipped: no Azure login found"),
        "{}",
        ran.stderr
    );
}

#[test]
fn every_tenant_is_listed_with_its_own_token_and_switching_tenants_prunes_nothing() {
    needs!("kubectl");
    let Some(mut azure) = start() else {
        return;
    };
    const OTHER_TENANT: &str = "5e7d0c2a-1b3f-4c5d-8e9f-0a1b2c3d4e5f";
    const GUEST_SUB: &str = "55555555-5555-4555-8555-555555555555";
    let answer = http_json(
        "POST",
        &azure.fakes.url("google"),
        "/_azure/entra",
        Some(json!({
            "tenants": [{"id": OTHER_TENANT}],
            "guest": [{"client_id": azure.fakes.field("azure_client_id"), "tenant": OTHER_TENANT}],
        })),
    );
    assert!(answer.get("error").is_none(), "{answer}");
    let mut subscriptions = fleet();
    subscriptions.as_array_mut().unwrap().push(json!({
        "id": GUEST_SUB, "tenant": OTHER_TENANT, "name": "guest",
        "clusters": [{"name": "partner", "resource_group": "rg"}],
    }));
    azure_fleet(&azure.fakes, subscriptions);
    let ran = sync(&azure, &[]).ok();
    let contexts = azure.contexts();
    let partner = name(GUEST_SUB, "rg", "partner");
    assert!(contexts.contains(&partner), "{}", ran.stderr);
    assert!(
        contexts.contains(&name(PROD, "rg-api", "api")),
        "{}",
        ran.stderr
    );
    // The other tenant's clusters get its own user and tokens.
    azure
        .kubectl(&["--context", &partner, "get", "namespaces"])
        .ok();
    let view = azure.kubectl(&["config", "view", "-o", "json"]).ok().json();
    let users: Vec<&str> = view["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert!(
        users.contains(&format!("fleetctx_aks_{OTHER_TENANT}").as_str()),
        "{users:?}"
    );

    // The login's own tenant is now the other one (`az account set` into it):
    // the home tenant's clusters are still listed, so nothing is pruned.
    azure.world.set("AZURE_TENANT_ID", OTHER_TENANT);
    let ran = sync(&azure, &[]).ok();
    assert_eq!(azure.contexts(), contexts, "{}", ran.stderr);
}

#[test]
fn a_legacy_entra_cluster_gets_its_own_server_application_and_kubectl_reaches_it() {
    needs!("kubectl");
    let Some(azure) = start() else {
        return;
    };
    const SERVER_APP: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
    let mut legacy = fleet();
    legacy[0]["clusters"] = json!([
        {"name": "old-aad", "resource_group": "rg", "server_app": SERVER_APP},
        {"name": "api", "resource_group": "rg-api"},
    ]);
    azure_fleet(&azure.fakes, legacy);
    let ran = sync(&azure, &[]).ok();
    let old = name(PROD, "rg", "old-aad");
    let tenant = azure.fakes.field("azure_tenant");
    let view = azure.kubectl(&["config", "view", "-o", "json"]).ok().json();
    let user = |name: String| {
        view["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no user {name}: {}", ran.stderr))
            .clone()
    };
    assert_eq!(
        user(format!("fleetctx_aks_{tenant}_{SERVER_APP}"))["user"]["exec"]["args"],
        json!([
            "token",
            "aks",
            "--tenant",
            tenant,
            "--server-id",
            SERVER_APP
        ])
    );
    // Its API server takes only tokens for its own application; the others
    // only the AKS one.
    azure
        .kubectl(&["--context", &old, "get", "namespaces"])
        .ok();
    azure
        .kubectl(&[
            "--context",
            &name(PROD, "rg-api", "api"),
            "get",
            "namespaces",
        ])
        .ok();
}
