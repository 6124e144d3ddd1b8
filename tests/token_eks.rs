//! `fleetctx token eks` against the golden vectors, the real aws CLI, and moto.

mod support;

use support::*;

const GOLDEN_ID: &str = "ASIAR2TG44V6AS3ZZE7C";
const GOLDEN_SECRET: &str = "4KD5cntGcVmLWRdF5wvNRuzNL5Qxmp6OKVY6Fz/Q";
const GOLDEN_URL: &str = "https://sts.us-west-2.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAR2TG44V6AS3ZZE7C%2F20230428%2Fus-west-2%2Fsts%2Faws4_request&X-Amz-Date=20230428T000000Z&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&X-Amz-Signature=e211dba77aba9dc44b0b6be38b8eaad092599c5157f6314444c5b9d85747f5ce";

/// fleetctx at a pinned wall clock (libfaketime; monotonic time keeps running).
fn at(world: &World, when: &str, args: &[&str]) -> Ran {
    let faketime = tool("faketime").expect("faketime");
    let mut cmd = world.command(faketime);
    cmd.args(["--exclude-monotonic", "-f", when, BIN])
        .args(args);
    run(&mut cmd)
}

#[test]
fn golden_vector_through_the_binary() {
    needs!("faketime");
    let mut world = World::new();
    world.aws_keys(GOLDEN_ID, GOLDEN_SECRET, None);
    let ran = at(
        &world,
        "2023-04-28 00:00:00",
        &[
            "token",
            "eks",
            "--cluster",
            "test-cluster",
            "--region",
            "us-west-2",
            "--no-cache",
        ],
    )
    .ok();
    assert_eq!(url_parts(&eks_url(&ran.token())), url_parts(GOLDEN_URL));
    assert_eq!(
        ran.json()["status"]["expirationTimestamp"],
        "2023-04-28T00:14:00Z"
    );

    world.aws_keys(GOLDEN_ID, GOLDEN_SECRET, Some("SESSIONTOKEN/+="));
    let ran = at(
        &world,
        "2023-04-28 00:00:00",
        &[
            "token",
            "eks",
            "--cluster",
            "test-cluster",
            "--region",
            "us-west-2",
            "--no-cache",
        ],
    )
    .ok();
    let (_, _, params) = url_parts(&eks_url(&ran.token()));
    assert_eq!(
        param(&params, "X-Amz-Signature"),
        Some("b4b5f7e7f688de16238ef6cbfc463a4f4040eb27826d49292eeb219bd6d49d3e")
    );
    assert_eq!(
        param(&params, "X-Amz-Security-Token"),
        Some("SESSIONTOKEN%2F%2B%3D")
    );
}

/// The same token as `aws eks get-token` at the same instant with the same keys.
#[test]
fn matches_the_aws_cli_in_commercial_and_china_regions() {
    needs!("faketime", "aws");
    let mut world = World::new();
    world.aws_keys(
        "AKIAFLEETCTXEXAMPLE1",
        "fleetctx/example/secret+key",
        Some("FQoGZXIvYXdzEXAMPLE//token=="),
    );
    for region in ["eu-west-1", "cn-north-1"] {
        let ours = at(
            &world,
            "2024-01-15 12:00:00",
            &[
                "token",
                "eks",
                "--cluster",
                "prod-1",
                "--region",
                region,
                "--no-cache",
            ],
        )
        .ok();
        let aws = tool("aws").unwrap();
        let faketime = tool("faketime").unwrap();
        let mut cmd = world.command(faketime);
        cmd.args(["--exclude-monotonic", "-f", "2024-01-15 12:00:00"])
            .arg(aws)
            .args([
                "eks",
                "get-token",
                "--cluster-name",
                "prod-1",
                "--region",
                region,
                "--output",
                "json",
            ]);
        let theirs = run(&mut cmd).ok();
        let ours_url = eks_url(&ours.token());
        let theirs_url = eks_url(&theirs.token());
        assert_eq!(
            url_parts(&ours_url),
            url_parts(&theirs_url),
            "region {region}"
        );
        let (host, path, params) = url_parts(&ours_url);
        let domain = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        assert_eq!(host, format!("sts.{region}.{domain}"));
        assert_eq!(path, "/");
        assert!(param(&params, "X-Amz-Signature").is_some());
        assert_eq!(
            ours.json()["status"]["expirationTimestamp"],
            theirs.json()["status"]["expirationTimestamp"]
        );
    }
}

#[test]
fn answers_in_the_api_version_kubectl_asked_for() {
    let mut world = World::new();
    world.aws_keys("AKIAFLEETCTXEXAMPLE1", "secret", None);
    let args = ["token", "eks", "--cluster", "c", "--region", "us-east-1"];
    for version in [
        "client.authentication.k8s.io/v1",
        "client.authentication.k8s.io/v1beta1",
    ] {
        let info = format!(
            r#"{{"kind":"ExecCredential","apiVersion":"{version}","spec":{{"interactive":false}}}}"#
        ) + "\n";
        let ran = run(world.fleetctx(&args).env("KUBERNETES_EXEC_INFO", info)).ok();
        assert_eq!(ran.json()["apiVersion"], version);
        assert_eq!(ran.json()["kind"], "ExecCredential");
        assert!(ran.stderr.is_empty(), "{}", ran.stderr);
    }
    let ran = run(&mut world.fleetctx(&args)).ok();
    assert_eq!(
        ran.json()["apiVersion"],
        "client.authentication.k8s.io/v1beta1"
    );
    assert!(ran.stderr.is_empty(), "{}", ran.stderr);

    let ran = run(world
        .fleetctx(&args)
        .env("KUBERNETES_EXEC_INFO", "{garbage"))
    .ok();
    assert_eq!(
        ran.json()["apiVersion"],
        "client.authentication.k8s.io/v1beta1"
    );
    assert!(
        ran.stderr.contains("KUBERNETES_EXEC_INFO"),
        "{}",
        ran.stderr
    );
}

#[test]
fn endpoint_overrides_never_reach_the_token_host() {
    let mut world = World::new();
    world
        .aws_keys("AKIAFLEETCTXEXAMPLE1", "secret", None)
        .set("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .set("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9");
    let ran = run(&mut world.fleetctx(&[
        "token",
        "eks",
        "--cluster",
        "c",
        "--region",
        "ap-southeast-7",
    ]))
    .ok();
    let (host, _, _) = url_parts(&eks_url(&ran.token()));
    assert_eq!(host, "sts.ap-southeast-7.amazonaws.com");
}

/// Credentials that expire before the token would: the token says so.
#[test]
fn expiry_is_capped_by_the_signing_credentials() {
    let world = World::new();
    let expires = time::OffsetDateTime::now_utc() + time::Duration::minutes(9);
    let expires = expires
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let process = world.path("creds.sh");
    std::fs::write(
        &process,
        format!(
            "#!/bin/sh\necho '{{\"Version\":1,\"AccessKeyId\":\"ASIAPROCESSEXAMPLE01\",\"SecretAccessKey\":\"s\",\"SessionToken\":\"t\",\"Expiration\":\"{expires}\"}}'\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&process, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        world.path("aws-config"),
        format!(
            "[profile short]\ncredential_process = {}\n",
            process.display()
        ),
    )
    .unwrap();
    let ran = run(&mut world.fleetctx(&[
        "token",
        "eks",
        "--cluster",
        "c",
        "--region",
        "us-east-1",
        "--profile",
        "short",
    ]))
    .ok();
    assert_eq!(
        ran.json()["status"]["expirationTimestamp"],
        expires.as_str()
    );
}

/// `--role-arn` against moto's STS: the token is signed by the role's session, and
/// the session is cached, so warm calls (even for another cluster) make no STS call.
#[test]
fn role_arn_assumes_once_and_caches_the_session() {
    let Some(fakes) = Fakes::start(&[]) else {
        return;
    };
    let mut world = World::new();
    world
        .aws_keys("AKIAFLEETCTXBASE0001", "base-secret", None)
        .set("AWS_ENDPOINT_URL", fakes.url("moto"));
    let args = |cluster: &'static str| -> Vec<&'static str> {
        vec![
            "token",
            "eks",
            "--cluster",
            cluster,
            "--region",
            "us-west-2",
            "--role-arn",
            "arn:aws:iam::123456789012:role/fleet-admin",
        ]
    };
    let first = run(&mut world.fleetctx(&args("c1"))).ok();
    assert_eq!(fakes.sts_count("AssumeRole"), 1);
    let (host, _, params) = url_parts(&eks_url(&first.token()));
    assert_eq!(
        host, "sts.us-west-2.amazonaws.com",
        "the moto endpoint must not leak into the token"
    );
    let credential = param(&params, "X-Amz-Credential").unwrap();
    assert!(
        !credential.starts_with("AKIAFLEETCTXBASE0001"),
        "signed with the base keys: {credential}"
    );
    assert!(
        param(&params, "X-Amz-Security-Token").is_some(),
        "no session token in {params:?}"
    );

    let second = run(&mut world.fleetctx(&args("c1"))).ok();
    assert_eq!(second.token(), first.token());
    let other = run(&mut world.fleetctx(&args("c2"))).ok();
    assert_ne!(other.token(), first.token());
    let (_, _, other_params) = url_parts(&eks_url(&other.token()));
    assert_eq!(
        param(&other_params, "X-Amz-Security-Token"),
        param(&params, "X-Amz-Security-Token")
    );
    assert_eq!(
        fakes.sts_count("AssumeRole"),
        1,
        "warm calls must not call STS"
    );
}
