//! The example plugins end to end in wasm: config delivered to init, the
//! extractor, the scorers, batches and invalid input.

use scorehost::ErrorKind;
use serde_json::{Value, json};

use crate::support::{copy_with, load, obj, runtime};

pub(crate) fn logreg_features() -> Value {
    json!({"amount_usd_log": 6.0, "cross_border": true, "email_domain_free": true,
        "email_domain_disposable": false, "email_local_digits": 3, "is_night": true,
        "mcc_high_risk": false, "ip_private": false})
}

/// What logreg/model/weights.json says, computed here independently.
fn logreg_expected(f: &Value) -> f64 {
    let w: Value = serde_json::from_str(
        &std::fs::read_to_string(crate::support::staged("logreg").join("model/weights.json")).unwrap(),
    )
    .unwrap();
    let mut z = w["intercept"].as_f64().unwrap();
    for (name, weight) in w["weights"].as_object().unwrap() {
        let x = match &f[name] {
            Value::Bool(b) => f64::from(u8::from(*b)),
            v => v.as_f64().unwrap(),
        };
        z += weight.as_f64().unwrap() * x;
    }
    1.0 / (1.0 + (-z).exp())
}

#[test]
fn logreg_scores_with_its_model_file_and_reasons() {
    let v = load("logreg");
    let f = logreg_features();
    let out = v.score(&obj(f.clone()), None).unwrap();
    assert!((out.value.score - logreg_expected(&f)).abs() < 1e-12);
    assert_eq!(out.value.reasons.len(), 3, "top_reasons = 3 from [config]");
    // amount_usd_log contributes 0.45 * 6.0 = 2.7, the largest.
    assert_eq!(out.value.reasons[0].0, "amount_usd_log");
    assert!((out.value.reasons[0].1 - 2.7).abs() < 1e-12);
}

#[test]
fn config_reaches_init() {
    let dir = copy_with("logreg", |m| m.replace("top_reasons = 3", "top_reasons = 1"));
    let v = runtime().load(dir.path()).unwrap();
    assert_eq!(v.score(&obj(logreg_features()), None).unwrap().value.reasons.len(), 1);
    // Inline weights instead of a model file: the config table arrives as JSON.
    let dir = copy_with("logreg", |m| {
        m.replace("model_file = \"weights.json\"", "intercept = 0.5\nweights = { x = 2.0 }")
    });
    let v = runtime().load(dir.path()).unwrap();
    let out = v.score(&obj(json!({"x": 1})), None).unwrap();
    assert!((out.value.score - 1.0 / (1.0 + (-2.5f64).exp())).abs() < 1e-12);
}

#[test]
fn imputed_features_may_be_missing() {
    let v = load("logreg");
    let mut f = logreg_features();
    f.as_object_mut().unwrap().remove("is_night");
    f["cross_border"] = serde_json::Value::Null;
    let mut expected = logreg_features();
    expected["is_night"] = json!(0.0);
    expected["cross_border"] = json!(0.0);
    let out = v.score(&obj(f), None).unwrap();
    assert!((out.value.score - logreg_expected(&expected)).abs() < 1e-12);
}

#[test]
fn state_does_not_survive_between_calls() {
    // Same input, same answer, same fuel: each call starts from the snapshot.
    let v = load("logreg");
    let a = v.score(&obj(logreg_features()), None).unwrap();
    let b = v.score(&obj(logreg_features()), None).unwrap();
    assert_eq!(a.value, b.value);
    assert_eq!(a.fuel_used, b.fuel_used);
}

#[test]
fn missing_and_mistyped_inputs_are_invalid_input_naming_the_field() {
    let strict = copy_with("logreg", |m| m.replace("impute_missing = true", "impute_missing = false"));
    let v = runtime().load(strict.path()).unwrap();
    let mut f = logreg_features();
    f.as_object_mut().unwrap().remove("is_night");
    let e = v.score(&obj(f), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("is_night"), "{e}");
    let mut f = logreg_features();
    f["cross_border"] = json!("yes");
    let e = v.score(&obj(f), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("cross_border"), "{e}");
}

#[test]
fn txn_features_extracts_an_event() {
    let v = load("txn-features");
    let out = v
        .extract(
            &obj(json!({"amount": 200, "currency": "GBP", "merchant_country": "GB", "card_country": "BR",
                "email": "x1@mailinator.com", "ip": "2001:db8::1", "timestamp": 1764133200, "mcc": 6051})),
            None,
        )
        .unwrap();
    let f = &out.value;
    assert!((f["amount_usd"].as_f64().unwrap() - 254.0).abs() < 1e-9, "GBP rate from [config]");
    assert_eq!(f["cross_border"], json!(true));
    assert_eq!(f["email_domain_disposable"], json!(true));
    assert_eq!(f["mcc_high_risk"], json!(true));
    assert_eq!(f["ip_version"], json!(6));
    assert_eq!(f["hour_of_day"], json!(5));
    // The plugin's own invalid-input error keeps its kind across the boundary.
    let e = v.extract(&obj(json!({"amount": 1, "currency": "ZZZ", "timestamp": 0})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("ZZZ"));
}

#[test]
fn extractor_output_feeds_the_scorer() {
    let features = load("txn-features")
        .extract(
            &obj(json!({"amount": 50, "currency": "EUR", "merchant_country": "FR", "card_country": "FR",
                "email": "a@b.com", "ip": "8.8.8.8", "timestamp": 0, "mcc": 5411})),
            None,
        )
        .unwrap()
        .value;
    let logreg = load("logreg");
    // Extra features (amount_usd, hour_of_day, ip_version) are refused as
    // undeclared; passed only what it declares, as a pipeline does, it scores.
    let e = logreg.score(&features, None).unwrap_err();
    assert!(e.to_string().contains("`amount_usd`"), "{e}");
    let declared = features.into_iter().filter(|(k, _)| logreg.inputs().declares(k)).collect();
    let out = logreg.score(&declared, None).unwrap();
    assert!(out.value.score > 0.0 && out.value.score < 1.0);
}

#[test]
fn batch_keeps_order_and_isolates_bad_rows() {
    let v = load("logreg");
    let mut rows = Vec::new();
    for i in 0..5 {
        let mut f = logreg_features();
        f["amount_usd_log"] = json!(i as f64);
        rows.push(obj(f));
    }
    rows[2].insert("ip_private".into(), json!("not a number"));
    let out = v.score_batch(&rows, None).unwrap();
    assert_eq!(out.value.len(), 5);
    for (i, r) in out.value.iter().enumerate() {
        if i == 2 {
            assert_eq!(r.as_ref().unwrap_err().kind(), ErrorKind::InvalidInput);
        } else {
            let mut f = logreg_features();
            f["amount_usd_log"] = json!(i as f64);
            assert!((r.as_ref().unwrap().score - logreg_expected(&f)).abs() < 1e-12, "row {i}");
        }
    }
}

#[test]
fn scoring_an_extractor_is_unsupported() {
    let e = load("txn-features").score(&obj(json!({})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
}
