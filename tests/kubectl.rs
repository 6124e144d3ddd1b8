//! A real kubectl, a kubeconfig whose users exec the built fleetctx, and a
//! loopback API server that checks the bearer tokens.

mod support;

use support::*;

const KEY_ID: &str = "AKIAFLEETCTXKUBECTL1";
const SECRET: &str = "kubectl/test/secret+key";

fn kubectl(world: &World, kubeconfig: &std::path::Path, context: &str) -> Ran {
    let kubectl = tool("kubectl").unwrap();
    run(world
        .command(kubectl)
        .args(["--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "--context",
            context,
            "get",
            "ns",
            "--request-timeout",
            "20s",
        ]))
}

#[test]
fn kubectl_gets_namespaces_with_gke_and_eks_tokens() {
    needs!("kubectl");
    let key_arg = format!("{KEY_ID}:{SECRET}");
    let Some(fakes) = Fakes::start(&["--aws-key", &key_arg]) else {
        return;
    };
    let mut world = World::new();
    world
        .set("GOOGLE_APPLICATION_CREDENTIALS", fakes.field("sa_key"))
        .aws_keys(KEY_ID, SECRET, None)
        .set("AWS_ENDPOINT_URL", fakes.url("moto"));
    let kube = fakes.url("kube");
    let config = world.path("kubeconfig");
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    exec_kubeconfig(
        &config,
        &fakes.field("ca_b64"),
        &[
            ("gke", &format!("{kube}/gke/c1"), strings(&["token", "gke"])),
            (
                "eks",
                &format!("{kube}/eks/prod"),
                strings(&["token", "eks", "--cluster", "prod", "--region", "us-west-2"]),
            ),
            (
                "eks-role",
                &format!("{kube}/eks/prod"),
                strings(&[
                    "token",
                    "eks",
                    "--cluster",
                    "prod",
                    "--region",
                    "us-west-2",
                    "--role-arn",
                    "arn:aws:iam::123456789012:role/admin",
                ]),
            ),
            // The token names cluster `prod`; this server is cluster `other`.
            (
                "eks-wrong-cluster",
                &format!("{kube}/eks/other"),
                strings(&["token", "eks", "--cluster", "prod", "--region", "us-west-2"]),
            ),
            // An EKS token is no GKE token.
            (
                "gke-wrong-token",
                &format!("{kube}/gke/c1"),
                strings(&["token", "eks", "--cluster", "prod", "--region", "us-west-2"]),
            ),
        ],
    );
    for context in ["gke", "eks", "eks-role"] {
        let ran = kubectl(&world, &config, context).ok();
        assert!(
            ran.stdout.contains("kube-system"),
            "{context}: {}",
            ran.stdout
        );
    }
    for context in ["eks-wrong-cluster", "gke-wrong-token"] {
        let ran = kubectl(&world, &config, context).failed();
        assert!(
            ran.stderr.contains("You must be logged in"),
            "{context}: {}",
            ran.stderr
        );
    }
    // A signature made with the wrong secret is rejected too.
    world.aws_keys(KEY_ID, "not-the-secret", None);
    let ran = kubectl(&world, &config, "eks").failed();
    assert!(
        ran.stderr.contains("You must be logged in"),
        "{}",
        ran.stderr
    );
    assert!(fakes.count("kube_unauthorized") >= 3);
}
