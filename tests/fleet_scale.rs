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
