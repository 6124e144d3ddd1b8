//! The cache under stress and abuse: parallel cold calls, corrupt and exposed
//! entries, an unwritable directory, missing credentials.

mod support;

use std::os::unix::fs::PermissionsExt;

use serde_json::json;
use support::*;

fn entries(world: &World) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(world.cache_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect()
}

/// Fifty kubectl processes on a cold cache: one upstream request, fifty credentials.
#[test]
fn fifty_parallel_cold_calls_make_one_request() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    fakes.config(json!({"delay_ms": 300}));
    let world = gke_world(&fakes);
    let children: Vec<_> = (0..50)
        .map(|_| {
            world
                .fleetctx(&["token", "gke"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut tokens = std::collections::BTreeSet::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let ran = Ran {
            status: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
        .ok();
        tokens.insert(ran.token());
    }
    assert_eq!(tokens.len(), 1, "every caller gets the one refreshed token");
    assert_eq!(fakes.count("token_requests"), 1);
}

#[test]
fn fifty_parallel_role_calls_assume_the_role_once() {
    let Some(fakes) = Fakes::start(&[]) else {
        return;
    };
    let mut world = World::new();
    world
        .aws_keys("AKIAFLEETCTXBASE0001", "base-secret", None)
        .set("AWS_ENDPOINT_URL", fakes.url("moto"));
    let children: Vec<_> = (0..50)
        .map(|i| {
            let cluster = format!("c{}", i % 5);
            world
                .fleetctx(&[
                    "token",
                    "eks",
                    "--region",
                    "eu-central-1",
                    "--role-arn",
                    "arn:aws:iam::123456789012:role/r",
                    "--cluster",
                    &cluster,
                ])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            json["status"]["token"]
                .as_str()
                .unwrap()
                .starts_with("k8s-aws-v1.")
        );
    }
    assert_eq!(fakes.sts_count("AssumeRole"), 1);
}

#[test]
fn a_corrupt_entry_is_a_miss_and_is_rewritten_private() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let world = gke_world(&fakes);
    run(&mut world.fleetctx(&["token", "gke"])).ok();
    let [entry] = entries(&world).try_into().unwrap();
    for garbage in [
        &b"{\"format\":1,\"kind\":\"gke\",\"secr"[..],
        b"",
        b"\xff\xfe not json",
    ] {
        std::fs::write(&entry, garbage).unwrap();
        let ran = run(&mut world.fleetctx(&["token", "gke"])).ok();
        assert!(ran.token().starts_with("ya29.fake-"));
        let rewritten: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&entry).unwrap()).unwrap();
        assert_eq!(rewritten["kind"], "gke");
    }
    assert_eq!(fakes.count("token_requests"), 4);
}

#[test]
fn an_entry_readable_by_others_is_never_served() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let world = gke_world(&fakes);
    let first = run(&mut world.fleetctx(&["token", "gke"])).ok();
    let [entry] = entries(&world).try_into().unwrap();
    std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o644)).unwrap();
    let second = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert_ne!(second.token(), first.token());
    assert_eq!(
        std::fs::metadata(&entry).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // A directory opened to others is taken back.
    std::fs::set_permissions(world.cache_dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    run(&mut world.fleetctx(&["token", "gke", "--min-ttl", "100000"])).ok();
    assert_eq!(
        std::fs::metadata(world.cache_dir())
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn an_unwritable_cache_still_yields_a_token() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let mut world = gke_world(&fakes);
    let blocker = world.path("not-a-directory");
    std::fs::write(&blocker, b"").unwrap();
    world.set("XDG_CACHE_HOME", blocker.display().to_string());
    let ran = run(&mut world.fleetctx(&["token", "gke"])).ok();
    assert!(ran.token().starts_with("ya29.fake-"));
    assert!(ran.stderr.contains("warning:"), "{}", ran.stderr);
    assert!(!ran.stderr.contains("ya29."), "{}", ran.stderr);
}

#[test]
fn no_cache_always_mints_and_stores_nothing() {
    let Some(fakes) = Fakes::start(&["--no-moto"]) else {
        return;
    };
    let world = gke_world(&fakes);
    run(&mut world.fleetctx(&["token", "gke", "--no-cache"])).ok();
    run(&mut world.fleetctx(&["token", "gke", "--no-cache"])).ok();
    assert_eq!(fakes.count("token_requests"), 2);
    assert!(!world.cache_dir().exists());
}

#[test]
fn missing_credentials_are_explained_with_the_next_step() {
    let world = World::new();
    let ran = run(&mut world.fleetctx(&[
        "token",
        "eks",
        "--cluster",
        "c",
        "--region",
        "us-east-1",
        "--profile",
        "work",
    ]))
    .failed();
    assert_eq!(ran.status, 1);
    assert!(ran.stdout.is_empty());
    assert!(
        ran.stderr.contains("aws sso login --profile work"),
        "{}",
        ran.stderr
    );
    assert!(ran.stderr.contains("cluster c"), "{}", ran.stderr);

    let ran = run(&mut world.fleetctx(&["token", "gke"])).failed();
    assert_eq!(ran.status, 1);
    assert!(ran.stdout.is_empty());
    assert!(
        ran.stderr.contains("gcloud auth application-default login"),
        "{}",
        ran.stderr
    );
}
