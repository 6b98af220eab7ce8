//! # velocity — a payment's recent history as features
//!
//! Shows: an extractor with **state** (contract 0.1.2). For each payment it
//! makes one exchange with the host's state store: it records the payment
//! for its card (count and amount), its e-mail (distinct cards) and its IP
//! (count), reads their sliding windows back in the same round trip, and
//! looks up the card's offline features. `plugin.toml`'s `[state]` declares
//! the aggregates, windows and the one table it may read; docs/state.md has
//! the semantics. If the store is down, slow or over quota the features are
//! missing (a scorer imputes them) and `state_ok` is false: the payment is
//! still scored.
//!
//! Run it in the bundled `fraud` pipeline: `cargo run -p scorehost-cli --
//! serve`, then `curl -s localhost:8080/v1/pipelines/fraud -d '{"event_id":
//! "e1", "card": "c1", "amount": 120.5, "currency": "EUR", "timestamp":
//! 1764165600, …}'`. Test its logic natively: `cargo test -p velocity`.
//!
//! Features:
//! - `card_count_{10m,1h,24h}`, `card_amount_usd_{10m,1h,24h}` — payments of
//!   the card and their USD total, this one included;
//! - `email_distinct_cards_24h` — distinct cards the e-mail paid with;
//! - `ip_count_1h` — payments from the IP;
//! - `card_chargeback_rate` — from the offline table `card_stats`;
//! - `state_status` — `recorded`, `duplicate` (a retry), `late`, `future`, or
//!   the error kind; `state_ok` — the history features are present.

use std::collections::HashMap;

use scorehost_guest::prelude::*;
use scorehost_guest::state::{self, Observe, Request, Response, StateError, Status};

/// The initialised extractor: the USD rates, from config.
pub struct Velocity {
    usd_rates: HashMap<String, f64>,
}

const WINDOWS: [&str; 3] = ["10m", "1h", "24h"];

impl Extractor for Velocity {
    fn init(config: &Config) -> Result<Self> {
        let usd_rates: HashMap<String, f64> = config
            .json("usd_rates")?
            .ok_or_else(|| PluginError::internal("config `usd_rates` is required"))?;
        if let Some((c, r)) = usd_rates.iter().find(|(_, r)| !(r.is_finite() && **r > 0.0)) {
            return Err(PluginError::internal(format!("usd_rates.{c} = {r} must be a positive number")));
        }
        Ok(Velocity { usd_rates })
    }

    fn metadata(&self) -> Metadata {
        let mut m = Metadata::new("velocity", env!("CARGO_PKG_VERSION"))
            .description(
                "A payment's recent history: card, e-mail and IP velocity, and offline card features.",
            )
            .input(text("card").required().doc("the card's token or hash"))
            .input(float("amount").required().doc("amount in `currency` units, >= 0"))
            .input(text("currency").required().doc("ISO 4217 code, e.g. EUR"))
            .input(text("event_id").doc("the payment's id: a retry with the same id is counted once"))
            .input(text("email").doc("payer e-mail"))
            .input(text("ip").doc("client IP"))
            .input(int("timestamp").doc("event time, Unix seconds UTC [default: now]"))
            .input(int("timestamp_ms").doc("event time, Unix ms (wins over `timestamp`)"));
        for w in WINDOWS {
            m = m.output(int(format!("card_count_{w}")).doc("payments of the card in the window"));
        }
        for w in WINDOWS {
            m = m.output(float(format!("card_amount_usd_{w}")).doc("their total, USD"));
        }
        m.output(int("email_distinct_cards_24h").doc("distinct cards of the e-mail"))
            .output(int("ip_count_1h").doc("payments from the IP"))
            .output(float("card_chargeback_rate").doc("offline table card_stats"))
            .output(text("state_status").doc("recorded, duplicate, late, future, or the state error's kind"))
            .output(boolean("state_ok").doc("the history features are present"))
    }

    fn extract(&self, e: &Features, out: &mut Output) -> Result<()> {
        let card = e.text("card")?;
        let amount = e.float("amount")?;
        if !(amount >= 0.0 && amount.is_finite()) {
            return Err(PluginError::invalid_input(format!(
                "`amount` must be a finite number >= 0, got {amount}"
            )));
        }
        let currency = e.text("currency")?.to_ascii_uppercase();
        let rate = self
            .usd_rates
            .get(&currency)
            .ok_or_else(|| PluginError::invalid_input(format!("`currency` {currency:?} has no USD rate")))?;
        let cents = (amount * rate * 100.0).round() as i64;
        let time_ms = match (e.int_opt("timestamp_ms")?, e.int_opt("timestamp")?) {
            (Some(ms), _) => ms,
            (None, Some(s)) => s.saturating_mul(1000),
            (None, None) => state::now_ms(),
        };
        let (request, email, ip) =
            request(card, cents, time_ms, e.text_opt("event_id")?, e.text_opt("email")?, e.text_opt("ip")?);
        match state::exchange(&request) {
            Ok(r) => write(&r, email, ip, out),
            Err(err) => {
                // Debug, not warn: with the store down this would be every call; the
                // host counts failed exchanges per plugin and kind (/metrics).
                scorehost_guest::log::debug(&format!("state: {err}; history features missing"));
                out.set("state_status", kind(&err))?;
                out.set("state_ok", false)
            }
        }
    }
}

/// One exchange for the payment: the card, then the e-mail and the IP if
/// present, all under the event id, and the card's offline features.
fn request(
    card: &str,
    cents: i64,
    time_ms: i64,
    event_id: Option<&str>,
    email: Option<&str>,
    ip: Option<&str>,
) -> (Request, Option<usize>, Option<usize>) {
    let tag = |o: Observe| match event_id {
        Some(id) => o.event_id(id),
        None => o,
    };
    let mut r = Request::new().observe(tag(Observe::new("card", card).at_ms(time_ms).value(cents)));
    let mut next = 1;
    let email = email.map(|email| {
        r.observe
            .push(tag(Observe::new("email_cards", &email.to_ascii_lowercase()).at_ms(time_ms).item(card)));
        next += 1;
        next - 1
    });
    let ip = ip.map(|ip| {
        r.observe.push(tag(Observe::new("ip", ip).at_ms(time_ms)));
        next += 1;
        next - 1
    });
    (r.lookup("card_stats", card, &["chargeback_rate"]), email, ip)
}

fn write(r: &Response, email: Option<usize>, ip: Option<usize>, out: &mut Output) -> Result<()> {
    let card = r.observed(0);
    out.set("state_status", status(card.status))?;
    let counted = !matches!(card.status, Status::Late | Status::Future);
    if counted {
        for (i, w) in WINDOWS.iter().enumerate() {
            out.set(&format!("card_count_{w}"), card.window(i).count as i64)?;
            out.set(&format!("card_amount_usd_{w}"), card.window(i).sum as f64 / 100.0)?;
        }
        if let Some(i) = email {
            out.set("email_distinct_cards_24h", r.observed(i).window(0).distinct.map(|d| d as i64))?;
        }
        if let Some(i) = ip {
            out.set("ip_count_1h", r.observed(i).window(0).count as i64)?;
        }
    }
    let rate = r.lookup(0, 0).and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite());
    out.set("card_chargeback_rate", rate)?;
    out.set("state_ok", counted)
}

fn status(s: Status) -> &'static str {
    match s {
        Status::Recorded => "recorded",
        Status::Duplicate => "duplicate",
        Status::Late => "late",
        Status::Future => "future",
        Status::Read => "read",
    }
}

fn kind(e: &StateError) -> &'static str {
    match e {
        StateError::Unavailable(_) => "unavailable",
        StateError::Timeout(_) => "timeout",
        StateError::OverQuota(_) => "over_quota",
        StateError::Denied(_) => "denied",
        StateError::Invalid(_) => "invalid",
    }
}

export_extractor!(Velocity);

#[cfg(test)]
mod tests {
    use super::*;
    use scorehost_guest::state::{Answer, Window, set_native_handler};
    use scorehost_guest::testing::Harness;
    use serde_json::json;

    fn harness() -> Harness<Velocity> {
        Harness::extractor(Config::new([("usd_rates", r#"{"USD": 1.0, "EUR": 1.1}"#)])).unwrap()
    }

    fn window(count: u64, sum: i64, distinct: Option<u64>) -> Window {
        Window { length_ms: 0, count, sum, max: None, distinct }
    }

    #[test]
    fn one_exchange_becomes_the_features() {
        set_native_handler(|req| {
            assert_eq!(req.observe.len(), 3);
            assert_eq!(req.observe[0].value, 1100, "10 EUR in US cents");
            assert_eq!(req.observe[1].item.as_deref(), Some("c1"));
            assert!(req.observe.iter().all(|o| o.event_id.as_deref() == Some("e1") && o.time_ms == 5_000));
            let card = Answer {
                status: Status::Recorded,
                windows: vec![window(1, 1100, None), window(2, 2100, None), window(3, 5100, None)],
            };
            let email = Answer { status: Status::Recorded, windows: vec![window(4, 0, Some(2))] };
            let ip = Answer { status: Status::Recorded, windows: vec![window(7, 0, None)] };
            Ok(Response {
                observed: vec![card, email, ip],
                queried: vec![],
                lookups: vec![vec![Some("0.25".into())]],
            })
        });
        let f = harness()
            .extract(&json!({"card": "c1", "amount": 10, "currency": "EUR", "event_id": "e1", "email": "A@x.io", "ip": "1.2.3.4", "timestamp_ms": 5000}))
            .unwrap();
        assert_eq!(f["card_count_1h"], json!(2));
        assert_eq!(f["card_amount_usd_24h"], json!(51.0));
        assert_eq!(f["email_distinct_cards_24h"], json!(2));
        assert_eq!(f["ip_count_1h"], json!(7));
        assert_eq!(f["card_chargeback_rate"], json!(0.25));
        assert_eq!((f["state_ok"].clone(), f["state_status"].clone()), (json!(true), json!("recorded")));
    }

    #[test]
    fn a_store_failure_leaves_the_history_missing() {
        set_native_handler(|_| Err(StateError::Timeout("slow".into())));
        let f = harness().extract(&json!({"card": "c1", "amount": 10, "currency": "USD"})).unwrap();
        assert_eq!((f["state_ok"].clone(), f["state_status"].clone()), (json!(false), json!("timeout")));
        assert!(f.get("card_count_10m").is_none_or(|v| v.is_null()));
    }
}
