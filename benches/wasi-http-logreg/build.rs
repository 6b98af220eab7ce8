//! Compiles logreg's model file (plugins/logreg/model/weights.json) into
//! constants, so the component does no start-up work per instance: `wasmtime
//! serve` instantiates one per request, and parsing the model each time would
//! measure the file format, not the runtime.

use std::fmt::Write;

fn main() {
    let path = "../../plugins/logreg/model/weights.json";
    println!("cargo::rerun-if-changed={path}");
    let text = std::fs::read_to_string(path).expect("logreg weights.json");
    let model: serde_json::Value = serde_json::from_str(&text).expect("weights.json is JSON");
    let intercept = model["intercept"].as_f64().expect("intercept");
    // Sorted by name, as the plugin orders them (a BTreeMap).
    let mut weights: Vec<(String, f64)> = model["weights"]
        .as_object()
        .expect("weights")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().expect("weight")))
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = format!("/// The model's intercept.\npub const INTERCEPT: f64 = {intercept:?};\n");
    out.push_str("/// Feature names, in weight order.\npub const NAMES: &[&str] = &[");
    for (name, _) in &weights {
        write!(out, "{name:?}, ").unwrap();
    }
    out.push_str("];\n/// The weights.\npub const WEIGHTS: &[f64] = &[");
    for (_, w) in &weights {
        write!(out, "{w:?}, ").unwrap();
    }
    out.push_str("];\n");
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").unwrap()).join("weights.rs");
    std::fs::write(dest, out).unwrap();
}
