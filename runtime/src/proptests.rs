//! Property tests of the parsers that see untrusted input: request bodies
//! (bytes → strict JSON → a plugin's positional row) and `plugin.toml`.
//!
//! Run: `cargo test -p scorehost --lib proptests`; for a longer search,
//! `PROPTEST_CASES=100000 cargo test -p scorehost --lib proptests`.
//! Each property states what must hold for *every* input: no panic, a typed
//! error, and a result consistent with the input.

use proptest::prelude::*;
use serde_json::{Map, Value as Json};

use crate::http::codec::parse_object;
use crate::sandbox::bindings::types::{FieldSpec, ValueKind};
use crate::sandbox::error::ErrorKind;
use crate::version::layout::{Layout, MAX_EXACT_INT};
use crate::version::manifest::Manifest;

/// Arbitrary JSON, nested a few levels, with the numbers that matter at the
/// edges (huge, tiny, negative, 2^53 ± 1).
fn json() -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::from),
        any::<u64>().prop_map(Json::from),
        prop_oneof![Just(MAX_EXACT_INT), Just(MAX_EXACT_INT + 1), Just(-MAX_EXACT_INT - 1)]
            .prop_map(Json::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Json::Number)),
        ".{0,12}".prop_map(Json::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
            prop::collection::btree_map(key(), inner, 0..6)
                .prop_map(|m| Json::Object(m.into_iter().collect())),
        ]
    })
}

/// Keys: mostly the declared names, sometimes anything.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![prop::sample::select(vec!["f", "i", "b", "t", "v", "req"]).prop_map(str::to_owned), ".{0,8}",]
}

fn layout(open: bool) -> Layout {
    let spec =
        |name: &str, kind, required| FieldSpec { name: name.into(), kind, required, doc: String::new() };
    Layout::new(
        &[
            spec("f", ValueKind::Float, false),
            spec("i", ValueKind::Int, false),
            spec("b", ValueKind::Boolean, false),
            spec("t", ValueKind::Text, false),
            spec("v", ValueKind::Floats, false),
            spec("req", ValueKind::Float, true),
        ],
        open,
    )
    .unwrap()
}

proptest! {
    /// Any bytes: parsed into an object or refused as malformed, never a panic.
    #[test]
    fn request_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_object(&bytes);
    }

    /// Any JSON text serde_json writes (no duplicate keys) parses to the same value.
    #[test]
    fn strict_parsing_agrees_with_serde_json(obj in prop::collection::btree_map(key(), json(), 0..8)) {
        let value = Json::Object(obj.into_iter().collect());
        let text = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(Json::Object(parse_object(&text).unwrap()), value);
    }

    /// Any object → a row of the declared shape, or an `invalid_input` error;
    /// the values in the row are the values sent.
    #[test]
    fn json_to_row_is_total_and_faithful(
        obj in prop::collection::btree_map(key(), json(), 0..8),
        open in any::<bool>(),
    ) {
        let obj: Map<String, Json> = obj.into_iter().collect();
        let layout = layout(open);
        match layout.row(&obj) {
            Err(e) => prop_assert_eq!(e.kind(), ErrorKind::InvalidInput),
            Ok(row) => {
                prop_assert_eq!(row.numbers.len(), 4);
                prop_assert_eq!(row.texts.len(), 1);
                prop_assert_eq!(row.vectors.len(), 1);
                prop_assert!(obj.get("req").is_some_and(|v| !v.is_null()), "a required input was missing");
                for (slot, name) in ["f", "i", "b", "req"].iter().enumerate() {
                    let missing = row.missing.contains(&(slot as u32));
                    match obj.get(*name) {
                        None | Some(Json::Null) => prop_assert!(missing && row.numbers[slot].is_nan()),
                        Some(Json::Bool(b)) => prop_assert_eq!(row.numbers[slot], f64::from(u8::from(*b))),
                        Some(Json::Number(n)) => {
                            prop_assert!(!missing);
                            prop_assert_eq!(row.numbers[slot], n.as_f64().unwrap());
                        }
                        Some(other) => prop_assert!(false, "{} accepted {}", name, other),
                    }
                }
                if let Some(Json::Number(n)) = obj.get("i") {
                    prop_assert!(n.as_f64().unwrap().abs() <= MAX_EXACT_INT as f64);
                }
                prop_assert_eq!(row.texts[0].as_deref(), obj.get("t").and_then(Json::as_str));
                let declared = ["f", "i", "b", "t", "v", "req"];
                let undeclared = obj.keys().filter(|k| !declared.contains(&k.as_str())).count();
                prop_assert_eq!(row.extra.len(), if open { undeclared } else { 0 });
                prop_assert!(open || undeclared == 0, "closed inputs accepted an undeclared field");
            }
        }
    }

    /// Any text: a manifest or an error message, never a panic.
    #[test]
    fn manifest_text_never_panics(text in ".{0,200}") {
        let _ = Manifest::parse(&text);
    }

    /// Manifests assembled from real fields with arbitrary values: accepted
    /// ones satisfy every documented bound; refused ones name a field.
    #[test]
    fn manifests_are_accepted_only_within_bounds(
        name in prop_oneof![Just("logreg".to_owned()), ".{0,70}"],
        fuel in prop_oneof![Just(0i64), Just(1), any::<i64>(), Just(10_000_000_001)],
        deadline in prop_oneof![Just(0i64), Just(60_000), Just(60_001), any::<i64>()],
        max_in_flight in prop_oneof![Just(0i64), Just(32), Just(4097), any::<i64>()],
        fault_rate in prop_oneof![Just(0.0f64), Just(0.5), Just(1.5), any::<f64>()],
        fallback in prop_oneof![Just(""), Just("mode = \"default\"\nscore = 0.1"), Just("mode = \"default\""), Just("score = 0.1")],
        world in prop_oneof![Just("scorer"), Just("extractor"), Just("ranker")],
    ) {
        let fault_rate = if fault_rate.is_finite() { format!("{fault_rate:?}") } else { "nan".to_owned() };
        let text = format!(
            "name = {name:?}\nversion = \"1.0.0\"\nworld = \"{world}\"\ncomponent = \"p.wasm\"\n\
             [limits]\nfuel = {fuel}\ndeadline_ms = {deadline}\nmax_in_flight = {max_in_flight}\n\
             [breaker]\nfault_rate = {fault_rate}\n[fallback]\n{fallback}\n"
        );
        match Manifest::parse(&text) {
            Ok(m) => {
                prop_assert!(!m.name.is_empty() && m.name.len() <= 64);
                prop_assert!((1..=10_000_000_000).contains(&m.limits.fuel));
                prop_assert!((1..=60_000).contains(&m.limits.deadline_ms));
                prop_assert!((1..=4096).contains(&m.limits.max_in_flight));
                prop_assert!(m.breaker.fault_rate > 0.0 && m.breaker.fault_rate <= 1.0);
                prop_assert!(m.fallback.score.is_none_or(f64::is_finite));
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
