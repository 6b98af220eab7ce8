//! Shared helpers for the benches in `benches/benches/`: inputs and private,
//! edited copies of the bundled plugins.

use std::path::Path;

use serde_json::{Map, Value, json};

pub use scorehost_plugin_artifacts::staged;

/// A temporary copy of bundled plugin `name` with its manifest rewritten by `edit`.
pub fn copy_with(name: &str, edit: impl FnOnce(String) -> String) -> tempfile::TempDir {
    scorehost_plugin_artifacts::copy_with(name, edit).expect("copy a staged plugin")
}

/// Copies the directory tree `from` to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    scorehost_plugin_artifacts::copy_dir(from, to).expect("copy a directory tree")
}

/// A realistic feature row for the bundled logreg model.
pub fn logreg_features() -> Map<String, Value> {
    object(json!({"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true,
        "email_domain_disposable": false, "email_local_digits": 3, "is_night": true,
        "mcc_high_risk": false, "ip_private": false}))
}

/// A raw payment event for txn-features.
pub fn payment_event() -> Map<String, Value> {
    object(json!({"amount": 120.5, "currency": "EUR", "merchant_country": "DE", "card_country": "US",
        "email": "jo42@gmail.com", "ip": "81.2.69.160", "timestamp": 1764165600, "mcc": 5411}))
}

/// The first row of the breast-cancer fixture, with its missing values, for gbdt.
pub fn gbdt_features() -> Map<String, Value> {
    gbdt_rows().maps.swap_remove(0)
}

/// Every row of the gbdt plugin's breast-cancer fixture (40 rows, 30
/// features, some missing), in the two shapes the benches need.
pub struct GbdtRows {
    /// Model-order vectors, NaN where missing: what the evaluator reads.
    pub vectors: Vec<Vec<f64>>,
    /// Named JSON features, null where missing: what a client sends.
    pub maps: Vec<Map<String, Value>>,
}

/// Reads [`GbdtRows`] from the newest XGBoost fixture.
pub fn gbdt_rows() -> GbdtRows {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/gbdt/fixtures");
    let version = std::fs::read_dir(&dir)
        .expect("fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .max()
        .expect("a fixture version");
    let cases: Value =
        serde_json::from_slice(&std::fs::read(version.join("binary/cases.json")).expect("cases"))
            .expect("json");
    let names: Vec<&str> =
        cases["feature_names"].as_array().expect("names").iter().map(|n| n.as_str().expect("name")).collect();
    let rows = cases["rows"].as_array().expect("rows");
    let vectors = rows
        .iter()
        .map(|r| r.as_array().expect("row").iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
        .collect();
    let maps = rows
        .iter()
        .map(|r| {
            names.iter().map(|n| n.to_string()).zip(r.as_array().expect("row").iter().cloned()).collect()
        })
        .collect();
    GbdtRows { vectors, maps }
}

/// A copy of the gbdt plugin whose model holds every tree of the bundled one
/// `times` times over (25 × `times` trees): a model the size of a production
/// fraud model, where the tree walk and not the call dominates a row's cost.
/// Returns the plugin directory and the model's bytes.
pub fn gbdt_scaled(times: usize) -> (tempfile::TempDir, Vec<u8>) {
    let dir = copy_with("gbdt", |m| m);
    let path = dir.path().join("model/model.json");
    let mut model: Value = serde_json::from_slice(&std::fs::read(&path).expect("model")).expect("json");
    let trees = &mut model["learner"]["gradient_booster"]["model"]["trees"];
    let one = trees.as_array().expect("trees").clone();
    *trees = Value::Array((0..times).flat_map(|_| one.iter().cloned()).collect());
    let bytes = serde_json::to_vec(&model).expect("json");
    std::fs::write(&path, &bytes).expect("write model");
    (dir, bytes)
}

/// A logreg config with `n` features `f0..f{n-1}`, positional or by name.
pub fn wide_logreg_manifest(manifest: String, n: usize, open_inputs: bool) -> String {
    let weights: Vec<String> =
        (0..n).map(|i| format!("f{i} = {:.3}", (i as f64 - n as f64 / 2.0) / 10.0)).collect();
    manifest.replace(
        "model_file = \"weights.json\"",
        &format!("intercept = -1.0\nweights = {{ {} }}\nopen_inputs = {open_inputs}", weights.join(", ")),
    )
}

/// The input row for [`wide_logreg_manifest`].
pub fn wide_features(n: usize) -> Map<String, Value> {
    (0..n).map(|i| (format!("f{i}"), json!(i as f64 * 0.37))).collect()
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => unreachable!("literal objects only"),
    }
}
