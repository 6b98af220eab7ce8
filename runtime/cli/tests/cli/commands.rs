//! The `scorehost` binary as a user runs it: `call`, `inspect` and `test`.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn scorehost(args: &[&str], stdin: Option<&str>) -> (Output, Value) {
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_scorehost"))
        .arg("--cache-dir")
        .arg(cache.path())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out, json)
}

#[test]
fn call_prints_the_score_with_fuel_and_time() {
    let input = r#"{"features": {"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true,
        "email_domain_disposable": false, "email_local_digits": 3, "is_night": true,
        "mcc_high_risk": false, "ip_private": false}}"#;
    let (out, json) = scorehost(&["call", "logreg", "--input", input], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json["plugin"], "logreg");
    assert!(json["score"].as_f64().unwrap() > 0.5);
    assert_eq!(json["reasons"][0]["code"], "amount_usd_log");
    assert!(json["fuel_used"].as_u64().unwrap() > 0);
    assert!(json["elapsed_us"].as_u64().is_some());
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let slow = crate::support::staged("slow");
    let input = r#"{"features": {"log_lines": 2}}"#;
    let (out, json) =
        scorehost(&["--log-format", "json", "call", slow.to_str().unwrap(), "--input", input], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json["score"], 2.0);
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<Value> = stderr.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    let plugin: Vec<&Value> = lines.iter().filter(|l| l["target"] == "plugin").collect();
    assert_eq!(plugin.len(), 2, "{stderr}");
    assert_eq!(plugin[1]["fields"]["message"], "line 2 of 2");
    assert_eq!(
        (plugin[1]["fields"]["plugin"].as_str(), plugin[1]["level"].as_str()),
        (Some("slow"), Some("INFO"))
    );
}

#[test]
fn call_reads_stdin_and_runs_batches() {
    let input = r#"{"instances": [{"amount": 10, "currency": "USD", "timestamp": 0},
                                  {"amount": 10, "currency": "???", "timestamp": 0}]}"#;
    let (out, json) = scorehost(&["call", "txn-features", "--input", "-"], Some(input));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json["results"][0]["features"]["amount_usd"], 10.0);
    assert_eq!(json["results"][1]["error"]["kind"], "invalid_input");
}

#[test]
fn a_failed_call_exits_1_with_a_typed_error() {
    let (out, json) = scorehost(&["call", "hostile-loop", "--input", "{}"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["error"]["kind"], "out_of_fuel");
}

#[test]
fn a_load_failure_exits_2_and_names_the_cause() {
    let dir = crate::support::copy_with("logreg", |m| m);
    std::fs::write(dir.path().join("logreg.wasm"), "not wasm").unwrap();
    let (out, _) = scorehost(&["call", dir.path().to_str().unwrap(), "--input", "{}"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid WebAssembly component"));
}

#[test]
fn a_plugin_that_dials_out_is_denied_not_connected() {
    let (out, json) = scorehost(&["call", "net-import", "--input", "{}"], None);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["error"]["kind"], "plugin_error");
    assert!(json["error"]["message"].as_str().unwrap().contains("Permission denied"), "{json}");
}

#[test]
fn inspect_prints_world_metadata_and_limits() {
    let (out, json) = scorehost(&["inspect", "txn-features"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json["world"], "extractor");
    assert_eq!(json["inputs"][0]["name"], "amount");
    assert_eq!(json["inputs"][0]["required"], true);
    assert!(json["outputs"].as_array().unwrap().iter().any(|o| o["name"] == "cross_border"));
    assert_eq!(json["limits"]["deadline_ms"], 50);
}

#[test]
fn inspect_of_a_bare_component_lists_imports_and_grants() {
    let (out, json) = scorehost(&["inspect", scorehost_plugin_artifacts::NET_IMPORT_WASM], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(json["worlds"][0], "scorer");
    let imports = json["imports"].as_array().unwrap();
    let named = |prefix: &'static str| {
        imports.iter().filter(move |i| i["name"].as_str().unwrap().starts_with(prefix))
    };
    // Sockets load (linked deny-all) and say so; clocks are granted for real.
    assert!(named("wasi:sockets/").count() > 0, "{json}");
    assert!(named("wasi:sockets/").all(|i| i["granted"] == true && i["every_use_denied"] == true), "{json}");
    assert!(named("wasi:clocks/").all(|i| i["granted"] == true && i["every_use_denied"] == false), "{json}");
}

#[test]
fn test_runs_the_golden_vectors_of_every_bundled_example() {
    for plugin in ["logreg", "gbdt", "txn-features"] {
        let (out, _) = scorehost(&["test", plugin], None);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{plugin}: {text}{}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(", 0 failed; max fuel"), "{text}");
    }
}

#[test]
fn test_fails_with_the_vector_that_differs() {
    let dir = crate::support::copy_with("logreg", |m| m);
    let vectors = std::fs::read_to_string(dir.path().join("tests.jsonl")).unwrap();
    std::fs::write(dir.path().join("tests.jsonl"), vectors.replace("0.03557118927263617", "0.5")).unwrap();
    let (out, _) = scorehost(&["test", dir.path().to_str().unwrap()], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("FAIL small domestic payment") && text.contains("is not 0.5"), "{text}");
    assert!(text.contains("1 failed"), "{text}");
}
