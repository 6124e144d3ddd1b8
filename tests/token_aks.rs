//! `fleetctx token aks` for every kind of Azure identity against a loopback Entra
//! ID, the tokens checked by the fake API server through the real kubectl. The
//! Azure CLI is the real `az`, logged in to the loopback Entra ID.

mod support;

use std::path::Path;

use serde_json::json;
use support::*;

const AKS_SERVER_APP: &str = "6dae42f8-4368-4678-94ff-3960e28e3630";

/// Entra ID token requests of every kind, managed identity included.
fn minted(fakes: &Fakes) -> u64 {
    fakes.count("entra_token_requests") + fakes.count("msi_token_requests")
}

/// kubectl through `fleetctx token aks ARGS` against the fake API server.
fn kubectl_with(world: &World, fakes: &Fakes, args: &[&str]) -> Ran {
    let kubeconfig = world.path("exec-kubeconfig");
    let mut exec = vec!["token".to_string(), "aks".to_string()];
    exec.extend(args.iter().map(|a| a.to_string()));
    let server = format!("{}/aks/c1", fakes.url("kube"));
    exec_kubeconfig(
        &kubeconfig,
        &fakes.field("ca_b64"),
        &[("c1", &server, exec)],
    );
    let kubectl = tool("kubectl").expect("kubectl");
    run(world
        .command(kubectl)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["get", "namespaces", "-o", "name"]))
}

#[test]
fn every_kind_of_identity_gets_a_verified_token_once_then_from_the_cache() {
    needs!("kubectl");
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let tenant = fakes.field("azure_tenant");
    // What the identity is called, its environment, its client id.
    type Identity<'a> = (&'a str, Vec<(&'a str, String)>, String);
    let identities: Vec<Identity> = vec![
        (
            "service principal, secret",
            vec![
                ("AZURE_CLIENT_ID", fakes.field("azure_client_id")),
                ("AZURE_CLIENT_SECRET", fakes.field("azure_client_secret")),
            ],
            fakes.field("azure_client_id"),
        ),
        (
            "service principal, certificate",
            vec![
                ("AZURE_CLIENT_ID", fakes.field("azure_cert_client_id")),
                (
                    "AZURE_CLIENT_CERTIFICATE_PATH",
                    fakes.field("azure_cert_file"),
                ),
            ],
            fakes.field("azure_cert_client_id"),
        ),
        (
            "workload identity",
            vec![
                ("AZURE_CLIENT_ID", fakes.field("azure_wi_client_id")),
                (
                    "AZURE_FEDERATED_TOKEN_FILE",
                    fakes.field("azure_federated_token_file"),
                ),
            ],
            fakes.field("azure_wi_client_id"),
        ),
        (
            "managed identity",
            vec![
                (
                    "IDENTITY_ENDPOINT",
                    format!("{}/msi/token", fakes.url("entra")),
                ),
                ("IDENTITY_HEADER", fakes.field("azure_msi_header")),
            ],
            fakes.field("azure_msi_client_id"),
        ),
    ];
    for (label, env, appid) in identities {
        let mut world = azure_world(&fakes);
        world.set("AZURE_TENANT_ID", &tenant);
        for (key, value) in &env {
            world.set(key, value);
        }
        let before = minted(&fakes);
        let first = run(&mut world.fleetctx(&["token", "aks", "-v"])).ok();
        let token = first.token();
        assert!(!first.stderr.contains(&token), "{label}: token in stderr");
        let claims = jwt_claims(&token);
        assert_eq!(claims["aud"], AKS_SERVER_APP, "{label}: {claims}");
        assert_eq!(claims["appid"], appid.as_str(), "{label}: {claims}");
        assert_eq!(claims["tid"], tenant.as_str(), "{label}: {claims}");
        assert_eq!(minted(&fakes), before + 1, "{label}");

        // kubectl, through the entry: a cache hit, accepted by the API server.
        let listed = kubectl_with(&world, &fakes, &[]).ok();
        assert!(listed.stdout.contains("namespace/default"), "{label}");
        let second = run(&mut world.fleetctx(&["token", "aks"])).ok();
        assert_eq!(second.token(), token, "{label}");
        assert_eq!(minted(&fakes), before + 1, "{label}: served from the cache");
    }
}

/// A stand-in first on PATH that counts the runs of the real `az` it calls.
fn counted_az(world: &mut World) -> std::path::PathBuf {
    let az = tool("az").expect("az");
    let bin = world.path("az-counter");
    std::fs::create_dir_all(&bin).unwrap();
    let log = world.path("az-runs");
    let script = bin.join("az");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            az.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = world
        .env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    world.set("PATH", format!("{}:{path}", bin.display()));
    log
}

fn token_runs(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("get-access-token"))
        .count()
}

fn az(world: &World, args: &[&str]) -> Ran {
    run(world.command("az").args(args))
}

/// `az login --service-principal` with a secret (`-p`) or a certificate.
fn az_login(world: &World, app: &str, credential: &[&str], tenant: &str) {
    let mut args = vec![
        "login",
        "--service-principal",
        "-u",
        app,
        "--tenant",
        tenant,
    ];
    args.extend_from_slice(credential);
    az(world, &args).ok();
}

#[test]
fn the_azure_cli_login_is_served_from_the_cache_and_login_logout_or_account_set_never_serve_the_previous_identity()
 {
    needs!("kubectl", "az");
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let tenant = fakes.field("azure_tenant");
    azure_fleet(
        &fakes,
        json!([
            {"id": "11111111-1111-4111-8111-111111111111", "name": "one", "clusters": []},
            {"id": "22222222-2222-4222-8222-222222222222", "name": "two", "clusters": []},
        ]),
    );
    let mut world = azure_world(&fakes);
    // Cloud Shell sets MSI_ENDPOINT, a managed identity azure_identity refuses;
    // its `az` is logged in, and that is the login to use.
    world.set("MSI_ENDPOINT", "http://127.0.0.1:9/");
    let runs = counted_az(&mut world);
    let entra = fakes.url("entra");
    let arm = format!("{}/", fakes.url("arm"));
    az(
        &world,
        &[
            "cloud",
            "register",
            "--name",
            "FleetFake",
            "--skip-endpoint-discovery",
            "--endpoint-active-directory",
            &entra,
            "--endpoint-resource-manager",
            &arm,
            "--endpoint-active-directory-resource-id",
            "https://management.azure.com/",
        ],
    )
    .ok();
    az(&world, &["cloud", "set", "--name", "FleetFake"]).ok();
    let secret_app = fakes.field("azure_client_id");
    let secret = fakes.field("azure_client_secret");
    az_login(&world, &secret_app, &["-p", &secret], &tenant);

    // The Azure CLI's login, found by itself; `az` rewrites its token cache
    // as it fetches the token, and the next call is still a hit.
    let first = run(&mut world.fleetctx(&["token", "aks"])).ok();
    assert_eq!(jwt_claims(&first.token())["appid"], secret_app.as_str());
    assert_eq!(token_runs(&runs), 1);
    let again = run(&mut world.fleetctx(&["token", "aks"])).ok();
    assert_eq!(again.token(), first.token());
    assert_eq!(token_runs(&runs), 1, "a hit runs no az");
    kubectl_with(&world, &fakes, &["--tenant", &tenant]).ok();
    let runs_before = token_runs(&runs);

    // Another subscription of the same login: asked again (the token may be
    // the same: the identity is).
    az(
        &world,
        &[
            "account",
            "set",
            "-s",
            "22222222-2222-4222-8222-222222222222",
        ],
    )
    .ok();
    run(&mut world.fleetctx(&["token", "aks"])).ok();
    assert_eq!(
        token_runs(&runs),
        runs_before + 1,
        "account set is a new key"
    );

    // Another identity: its own token.
    let cert_app = fakes.field("azure_cert_client_id");
    let cert = fakes.field("azure_cert_file");
    az_login(&world, &cert_app, &["--certificate", &cert], &tenant);
    let other = run(&mut world.fleetctx(&["token", "aks"])).ok();
    assert_eq!(jwt_claims(&other.token())["appid"], cert_app.as_str());

    // Logged out: a failure naming the next step, never the previous token.
    az(&world, &["logout", "--username", &cert_app]).ok();
    az(&world, &["logout", "--username", &secret_app]).ok();
    let out = run(&mut world.fleetctx(&["token", "aks", "--login", "azurecli"])).failed();
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    assert!(out.stderr.contains("az login"), "{}", out.stderr);
}
