//! Lists the namespaces of every cluster a set of sources reaches, all clusters
//! at once, in memory: no kubeconfig, no gcloud, no aws CLI.
//!
//! cargo run --example namespaces -- --gke-all-projects --eks-profile prod
//!
//! The arguments are `fleetctx sync`'s source flags; with none, config.yaml's
//! sources, else the defaults.

use std::process::ExitCode;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

#[tokio::main]
async fn main() -> ExitCode {
    let sources = fleetctx::Sources::from_args(std::env::args().skip(1));
    let fleet = match fleetctx::discover(&sources).await {
        Ok(fleet) => fleet,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    for source in &fleet.sources {
        if let fleetctx::Outcome::Failed(why) = &source.outcome {
            eprintln!("{why}");
        }
    }
    let listed = futures::future::join_all(fleet.clusters.iter().map(|cluster| async move {
        let client = fleetctx::client(cluster).map_err(|e| e.to_string())?;
        let namespaces = Api::<Namespace>::all(client)
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(
            namespaces
                .items
                .into_iter()
                .filter_map(|n| n.metadata.name)
                .collect::<Vec<_>>(),
        )
    }))
    .await;
    let mut failed = false;
    for (cluster, names) in fleet.clusters.iter().zip(listed) {
        match names {
            Ok(names) => println!("{}: {}", cluster.name, names.join(" ")),
            Err(why) => {
                failed = true;
                eprintln!("{}: {why}", cluster.name);
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
