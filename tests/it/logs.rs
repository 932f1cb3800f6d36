//! Issue 28's JSON logs: `tessera serve --log-format json` through the flows, every line a
//! JSON object, each request's line with its id, route, status and latency, and no secret
//! anywhere in the output.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, fresh_database};
use crate::metrics::{Serve, run_flows, setup};

both_backends!(issue_28_json_logs_carry_the_request_and_no_secret);

async fn issue_28_json_logs_carry_the_request_and_no_secret(backend: Backend) {
    let Some(url) = fresh_database(backend).await else {
        return;
    };
    let setup = setup(&url).await;
    // The request lines are DEBUG; the flows' own lines (sign-ins, issuance) too.
    let log = "info,tessera=debug,tessera_server=debug,tessera_flow=debug,tessera_store=debug";
    let serve = Serve::start(&url, &["--log-format", "json"], log).await;
    let secrets = run_flows(&serve, &setup, false).await;
    let output = serve.stop().await;

    let mut requests = Vec::new();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        let line: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
        if line["message"] == "request" || line["message"] == "request failed" {
            requests.push(line);
        }
    }
    for line in &requests {
        assert!(
            line["request_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{line}"
        );
        assert!(line["route"].is_string(), "{line}");
        assert!(line["status"].is_u64(), "{line}");
        assert!(line["latency_us"].is_u64(), "{line}");
    }
    let routes: Vec<&str> = requests
        .iter()
        .filter_map(|l| l["route"].as_str())
        .collect();
    for route in ["/authorize", "/login", "/token", "/introspect", "/revoke"] {
        assert!(
            routes.contains(&route),
            "no request line for {route}: {routes:?}"
        );
    }
    assert!(
        requests
            .iter()
            .any(|l| l["route"] == "/login" && l["status"] == 401),
        "the failed sign-in has no line"
    );
    let ids: std::collections::HashSet<&str> = requests
        .iter()
        .filter_map(|l| l["request_id"].as_str())
        .collect();
    assert_eq!(ids.len(), requests.len(), "request ids repeat");

    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a secret ({} characters) is in the log:\n{output}",
            secret.len()
        );
    }
}
