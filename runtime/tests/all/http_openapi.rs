//! docs/openapi.json describes exactly the routes the router serves.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use scorehost::http::{ROUTES, ServerConfig};
use serde_json::Value;

use crate::http::{app, send};

#[test]
fn openapi_lists_exactly_the_routes() {
    let doc: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/openapi.json")).unwrap(),
    )
    .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(documented, served);
}

#[tokio::test]
async fn every_route_in_the_table_is_served() {
    let app = app(&["logreg"], ServerConfig::default());
    for (method, path) in ROUTES {
        let path = path.replace("{name}", "logreg");
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(&path)
            .body(Body::empty())
            .unwrap();
        let r = send(&app, req).await;
        assert!(
            r.status != StatusCode::METHOD_NOT_ALLOWED && r.json["error"]["kind"] != "no_route",
            "{method} {path}: {}",
            r.text
        );
    }
}
