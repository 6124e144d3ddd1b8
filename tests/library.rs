//! Issue 11: the library's token source, in process: it refreshes by itself
//! before expiry, and concurrent requests share one refresh.

mod support;

use std::time::Duration;

use serde_json::json;
use support::*;

#[test]
fn a_short_lived_token_is_refreshed_by_itself_and_concurrent_requests_share_one_refresh() {
    let Some(fleet) = Fleet::start() else { return };
    // The library reads the process environment, as a service's would be set.
    for (key, value) in &fleet.world.env {
        // SAFETY: this test binary has this one test, and no other thread yet.
        unsafe { std::env::set_var(key, value) };
    }
    fleet.fakes.config(json!({"expires_in": 20}));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let sources = fleetctx::Sources::from_args(["--gke-project", "p-beta", "--no-eks"]);
        let found = fleetctx::discover(&sources).await.unwrap();
        assert_eq!(found.clusters.len(), 1, "{:?}", found.sources);
        let cluster = &found.clusters[0];
        let client = fleetctx::client(cluster).unwrap();
        let minted = fleet.fakes.count("token_requests");

        let versions = futures::future::join_all((0..100).map(|_| {
            let client = client.clone();
            async move { client.apiserver_version().await }
        }))
        .await;
        assert!(versions.iter().all(Result::is_ok), "{:?}", versions[0]);
        assert_eq!(cluster.tokens.refreshes(), 1, "100 requests, one refresh");
        assert_eq!(fleet.fakes.count("token_requests"), minted + 1);
        let first = cluster.tokens.expires_at().await.unwrap();

        // A refresh that fails is one error for everyone who asks within 2 s (one
        // request to the token endpoint), then the next caller tries again.
        let fresh =
            fleetctx::TokenSource::from_exec_args(&["token".into(), "gke".into()], false).unwrap();
        fleet
            .fakes
            .config(json!({"fail": {"route": "token", "status": 400, "count": 100}}));
        let before = fleet.fakes.count("token_requests");
        fresh.token().await.unwrap_err();
        let tried = fleet.fakes.count("token_requests");
        assert!(tried > before);
        assert!(fresh.token().await.is_err());
        assert_eq!(
            fleet.fakes.count("token_requests"),
            tried,
            "the memo answered"
        );
        fleet
            .fakes
            .config(json!({"fail": {"route": "token", "status": 400, "count": 0}}));
        tokio::time::sleep(Duration::from_millis(2100)).await;
        fresh.token().await.unwrap();
        assert_eq!(fleet.fakes.count("token_requests"), tried + 1);

        // A fifth of its 20 s life (at least 10 s) before expiry, the next request
        // refreshes it; the caller does nothing but keep asking.
        let minted = fleet.fakes.count("token_requests");
        tokio::time::sleep(Duration::from_secs(15)).await;
        client.apiserver_version().await.unwrap();
        assert_eq!(cluster.tokens.refreshes(), 2);
        assert_eq!(fleet.fakes.count("token_requests"), minted + 1);
        assert!(cluster.tokens.expires_at().await.unwrap() > first);
    });
}
