//! `fleetctx token gke` against a loopback OAuth token endpoint and IAM Credentials.

mod support;

use serde_json::json;
use support::*;

#[test]
fn issues_once_then_serves_from_the_cache() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let world = gke_world(&fakes);
    let first = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert!(first.token().starts_with("ya29.fake-"), "{}", first.stdout);
    assert_eq!(fakes.count("token_requests"), 1);
    let second = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert_eq!(second.token(), first.token());
    assert_eq!(
        fakes.count("token_requests"),
        1,
        "the second call must be a cache hit"
    );

    // The cache file is private, and its directory too.
    use std::os::unix::fs::PermissionsExt;
    let dir = world.cache_dir();
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in std::fs::read_dir(&dir).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_short_lived_token_is_refreshed() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    fakes.config(json!({"expires_in": 30}));
    let world = gke_world(&fakes);
    let first = run(&mut world.fleetctx(&["token", "gke"])).ok();
    let second = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert_ne!(second.token(), first.token());
    assert_eq!(
        fakes.count("token_requests"),
        2,
        "a token inside the 5-minute margin must not be served"
    );
}

#[test]
fn switching_identity_never_serves_the_previous_token() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let mut world = gke_world(&fakes);
    let first = run(&mut world.fleetctx(&["token", "gke"])).ok();
    world.set("GOOGLE_APPLICATION_CREDENTIALS", fakes.field("sa_key_2"));
    let second = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert_ne!(second.token(), first.token());
    let explicit =
        run(&mut world.fleetctx(&["token", "gke", "--credentials", &fakes.field("sa_key")])).ok();
    assert_ne!(
        explicit.token(),
        first.token(),
        "a key given by flag is its own identity"
    );
    assert_eq!(fakes.count("token_requests"), 3);
}

#[test]
fn impersonation_goes_through_generate_access_token() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let mut world = gke_world(&fakes);
    world.set(
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_IAMCREDENTIALS",
        format!("{}/", fakes.url("google")),
    );
    let target = "deployer@test-project.iam.gserviceaccount.com";
    let args = ["token", "gke", "--impersonate-service-account", target];
    let ran = run(&mut world.fleetctx(&args)).ok();
    assert!(ran.token().starts_with("ya29.imp-"), "{}", ran.stdout);
    let again = run(&mut world.fleetctx(&args)).ok();
    assert_eq!(again.token(), ran.token());
    assert_eq!(fakes.count("token_requests"), 1);
    assert_eq!(fakes.count("generate_access_token_requests"), 1);

    // A transient failure is retried; a refusal is explained and leaks nothing.
    fakes.config(json!({"fail": {"route": "generateAccessToken", "status": 503, "count": 1}}));
    let retried = run(&mut world.fleetctx(&[
        "token",
        "gke",
        "--no-cache",
        "--impersonate-service-account",
        target,
    ]))
    .ok();
    assert!(retried.token().starts_with("ya29.imp-"));
    fakes.config(json!({"fail": {"route": "generateAccessToken", "status": 403, "count": 5}}));
    let refused = run(&mut world.fleetctx(&[
        "token",
        "gke",
        "--no-cache",
        "--impersonate-service-account",
        target,
    ]))
    .failed();
    assert!(refused.stdout.is_empty());
    assert!(refused.stderr.contains(target), "{}", refused.stderr);
    assert!(refused.stderr.contains("hint:"), "{}", refused.stderr);
    assert!(
        !refused.stderr.contains("ya29."),
        "a token reached stderr: {}",
        refused.stderr
    );
}

#[test]
fn a_refused_key_is_an_error_naming_the_source() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    fakes.config(json!({"fail": {"route": "token", "status": 400, "count": 100}}));
    let world = gke_world(&fakes);
    let ran = run(&mut world.fleetctx(&["token", "gke"])).failed();
    assert_eq!(ran.status, 1);
    assert!(
        ran.stdout.is_empty(),
        "stdout must stay empty: {}",
        ran.stdout
    );
    assert!(
        ran.stderr.contains(&fakes.field("sa_key")),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("hint:"), "{}", ran.stderr);
}

#[test]
fn a_transient_token_endpoint_failure_is_retried() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    fakes.config(json!({"fail": {"route": "token", "status": 503, "count": 2}}));
    let world = gke_world(&fakes);
    let ran = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert!(ran.token().starts_with("ya29.fake-"));
    assert_eq!(fakes.count("token_requests"), 3);
}

#[test]
fn a_hanging_endpoint_times_out() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    fakes.config(json!({"delay_ms": 5000}));
    let mut world = gke_world(&fakes);
    world.set("FLEETCTX_TIMEOUT", "1");
    let started = std::time::Instant::now();
    let ran = run(&mut world.fleetctx(&["token", "gke"])).failed();
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    assert!(ran.stderr.contains("timed out"), "{}", ran.stderr);
    assert!(ran.stdout.is_empty());
}
