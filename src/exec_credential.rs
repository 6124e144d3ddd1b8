//! The kubectl exec credential contract: read `KUBERNETES_EXEC_INFO`, answer one
//! `ExecCredential` JSON object in the same apiVersion.

use serde_json::json;

pub const V1: &str = "client.authentication.k8s.io/v1";
pub const V1BETA1: &str = "client.authentication.k8s.io/v1beta1";

/// The apiVersion kubectl asked for, and a warning to print when the request
/// could not be understood.
pub fn requested_api_version(exec_info: Option<&str>) -> (&'static str, Option<String>) {
    let Some(raw) = exec_info else {
        // A person ran the command: answer v1beta1, as `aws eks get-token` does.
        return (V1BETA1, None);
    };
    let parsed: Result<serde_json::Value, _> = serde_json::from_str(raw);
    let version = parsed
        .as_ref()
        .ok()
        .and_then(|v| v.get("apiVersion"))
        .and_then(|v| v.as_str());
    match version {
        Some(V1) => (V1, None),
        Some(V1BETA1) => (V1BETA1, None),
        Some(other) => (
            V1BETA1,
            Some(format!(
                "KUBERNETES_EXEC_INFO asks for apiVersion {other:?}, which fleetctx does not speak; answering {V1BETA1}"
            )),
        ),
        None => (
            V1BETA1,
            Some(format!(
                "KUBERNETES_EXEC_INFO could not be parsed as an ExecCredential; answering {V1BETA1}"
            )),
        ),
    }
}

/// The one JSON object printed on stdout.
pub fn render(api_version: &str, token: &str, expiration_timestamp: &str) -> String {
    json!({
        "kind": "ExecCredential",
        "apiVersion": api_version,
        "spec": {},
        "status": {
            "expirationTimestamp": expiration_timestamp,
            "token": token,
        }
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_v1_and_v1beta1() {
        let info = r#"{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","spec":{"interactive":false}}"#;
        assert_eq!(requested_api_version(Some(info)), (V1, None));
        let info = info.replace("/v1\"", "/v1beta1\"");
        assert_eq!(requested_api_version(Some(&info)), (V1BETA1, None));
    }

    #[test]
    fn absent_is_v1beta1_without_warning_and_garbage_warns() {
        assert_eq!(requested_api_version(None), (V1BETA1, None));
        let (v, warning) = requested_api_version(Some("{not json"));
        assert_eq!(v, V1BETA1);
        assert!(warning.unwrap().contains("could not be parsed"));
    }
}
