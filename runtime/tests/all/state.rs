//! Real-time state through real plugins (`plugins/velocity`, `hostile-host`),
//! in process on the in-memory store: what a call records and reads, who may
//! write (live and canary record, a shadow peeks, gates and tests use a
//! scratch store), the grants of `[state]`, and the per-event exchange
//! limit. The Redis backend's faults are in `runtime/cli/tests/cli/state_redis.rs`.

use std::sync::Arc;

use scorehost::control::golden;
use scorehost::state::backend::{self, Access, Backend};
use scorehost::state::memory::MemStore;
use scorehost::{ErrorKind, PluginVersion, World};
use serde_json::{Map, Value, json};

use crate::support::{copy_with, load, obj, runtime};

fn event(id: &str, card: &str, email: &str) -> Map<String, Value> {
    obj(
        json!({"event_id": id, "card": card, "amount": 20, "currency": "USD", "email": email, "ip": "81.2.69.160"}),
    )
}

/// Extracts `e` on `v`, recording into `store` as live traffic does.
fn live(v: &PluginVersion, store: &Arc<MemStore>, e: &Map<String, Value>) -> Map<String, Value> {
    let access = Access::Live(Backend::Memory(store.clone()));
    backend::sync_scope(access, || v.extract(e, None)).unwrap().value
}

#[test]
fn velocity_counts_a_cards_payments_once_each_and_reads_its_lookup() {
    let v = load("velocity");
    let store = Arc::new(MemStore::new());
    store.put_lookup("card_stats", "c1", [("chargeback_rate".into(), "0.125".into())]);
    let first = live(&v, &store, &event("e1", "c1", "pat@example.com"));
    assert_eq!(first["card_count_10m"], json!(1));
    assert_eq!(first["card_chargeback_rate"], json!(0.125));
    let retry = live(&v, &store, &event("e1", "c1", "pat@example.com"));
    assert_eq!(
        (retry["state_status"].clone(), retry["card_count_24h"].clone()),
        (json!("duplicate"), json!(1))
    );
    let second = live(&v, &store, &event("e2", "c2", "PAT@example.com"));
    assert_eq!(second["email_distinct_cards_24h"], json!(2), "the e-mail is lower-cased");
    assert_eq!(second["ip_count_1h"], json!(2));
    let third = live(&v, &store, &event("e3", "c1", "pat@example.com"));
    assert_eq!(
        (third["card_count_1h"].clone(), third["card_amount_usd_24h"].clone()),
        (json!(2), json!(40.0))
    );
    assert_eq!(store.usage("velocity").entities, 4, "cards c1 and c2, one e-mail, one IP");
}

#[test]
fn a_batch_makes_one_exchange_per_event() {
    let v = load("velocity");
    let store = Arc::new(MemStore::new());
    let events: Vec<_> = (0..4).map(|i| event(&format!("b{i}"), "c9", "x@example.com")).collect();
    let access = Access::Live(Backend::Memory(store.clone()));
    let out = backend::sync_scope(access, || v.extract_batch(&events, None)).unwrap().value;
    let counts: Vec<Value> = out.iter().map(|r| r.as_ref().unwrap()["card_count_10m"].clone()).collect();
    assert_eq!(counts, [json!(1), json!(2), json!(3), json!(4)]);
}

#[test]
fn a_shadow_peeks_gates_and_tests_use_scratch_and_a_call_outside_any_scope_writes_nothing() {
    let v = load("velocity");
    let store = Arc::new(MemStore::new());
    live(&v, &store, &event("e1", "c1", "pat@example.com"));
    let before = store.usage("velocity");
    // A shadow copy (after the live call) reads the state as live left it, and writes nothing.
    let peek = Access::Peek(Backend::Memory(store.clone()));
    let shadow = backend::sync_scope(peek.clone(), || v.extract(&event("e1", "c1", "pat@example.com"), None));
    let shadow = shadow.unwrap().value;
    assert_eq!((shadow["card_count_10m"].clone(), shadow["state_status"].clone()), (json!(1), json!("read")));
    let new =
        backend::sync_scope(peek, || v.extract(&event("e2", "c1", "pat@example.com"), None)).unwrap().value;
    assert_eq!(new["card_count_10m"], json!(1), "a peek counts nothing");
    assert_eq!(store.usage("velocity"), before, "the shadow wrote");
    // `for_shadow` is what the traffic mirror uses on a live request's access.
    assert!(matches!(Access::Live(Backend::Memory(store.clone())).for_shadow(), Access::Peek(_)));
    // The golden gate, run while serving live traffic, uses scratch stores.
    let vectors =
        golden::read(std::path::Path::new(scorehost_plugin_artifacts::VELOCITY), World::Extractor).unwrap();
    let report =
        backend::sync_scope(Access::Live(Backend::Memory(store.clone())), || golden::check(&v, &vectors));
    assert!(report.vectors.iter().all(|r| r.failure.is_none()), "{:?}", report.vectors);
    assert_eq!(store.usage("velocity"), before, "the gate wrote to the live store");
    // No scope: a scratch store of its own, every time.
    let alone = v.extract(&event("e3", "c1", "pat@example.com"), None).unwrap().value;
    assert_eq!(alone["card_count_10m"], json!(1));
    assert_eq!(store.usage("velocity"), before);
}

#[test]
fn state_needs_a_state_table_and_reaches_only_what_it_grants() {
    // The component imports `state`; the manifest without [state] grants
    // nothing: it loads (a componentize-py plugin imports every interface of
    // its world), and every exchange is denied, naming the missing table.
    let bare = copy_with("velocity", |m| m[..m.find("[state]").unwrap()].to_owned());
    let v = runtime().load(bare.path()).unwrap();
    let out = v.extract(&event("e1", "c1", "pat@example.com"), None).unwrap().value;
    assert_eq!((out["state_status"].clone(), out["state_ok"].clone()), (json!("denied"), json!(false)));
    let bare = copy_with("hostile-host", |m| m[..m.find("[state]").unwrap()].to_owned());
    let e =
        runtime().load(bare.path()).unwrap().score(&obj(json!({"mode": "state-twice"})), None).unwrap_err();
    assert!(e.to_string().contains("first exchange: denied: plugin.toml has no [state] table"), "{e}");
    // A table it did not list: the exchange is denied, the plugin uses its defaults.
    let no_table = copy_with("velocity", |m| m.replace("lookups = [\"card_stats\"]", "lookups = []"));
    let v = runtime().load(no_table.path()).unwrap();
    let out = v.extract(&event("e1", "c1", "pat@example.com"), None).unwrap().value;
    assert_eq!((out["state_status"].clone(), out["state_ok"].clone()), (json!("denied"), json!(false)));
    // A window no tile level fits is refused at load, naming the field.
    let bad = copy_with("velocity", |m| m.replace("windows = [\"1h\"]", "windows = [\"61m\"]"));
    let e = runtime().load(bad.path()).unwrap_err().to_string();
    assert!(e.contains("state.aggregates.ip.windows") && e.contains("61m"), "{e}");
}

#[test]
fn one_exchange_per_event_and_a_loop_of_exchanges_stops_at_the_deadline() {
    let v = load("hostile-host");
    let e = v.score(&obj(json!({"mode": "state-twice"})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PluginError, "{e}");
    assert!(e.to_string().contains("second exchange: over quota: one state exchange per event"), "{e}");
    let started = std::time::Instant::now();
    let e = v.score(&obj(json!({"mode": "state-loop"})), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::DeadlineExceeded, "{e}");
    assert!(started.elapsed() < std::time::Duration::from_millis(200), "{:?}", started.elapsed());
    assert_eq!(v.score(&obj(json!({})), None).unwrap().value.score, 0.5, "the plugin answers again");
}
