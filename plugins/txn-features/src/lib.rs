//! # txn-features — raw payment event → fraud features
//!
//! Shows: an extractor. It declares a raw payment event as inputs and a fixed set
//! of features as outputs; its rate table and risk lists come from `[config]`,
//! parsed once in `init`. Run it: `cargo run -- call txn-features --input
//! '{"amount": 120.5, "currency": "EUR", "timestamp": 1764165600, …}'`; test its
//! logic natively: `cargo test -p txn-features`.
//!
//! Features:
//! - `amount_usd`, `amount_usd_log` — amount through the `usd_rates` table, ln(1 + usd);
//! - `cross_border` — card and merchant countries differ (missing if either is unknown);
//! - `email_domain_free`, `email_domain_disposable`, `email_local_digits` — from the e-mail;
//! - `hour_of_day`, `is_night` — UTC hour of the event, night = 00:00–05:59;
//! - `mcc_high_risk` — the merchant category code is in `high_risk_mcc`;
//! - `ip_private`, `ip_version` — from the client IP.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use scorehost_guest::prelude::*;

/// The initialised extractor: lookup tables built once from config.
pub struct TxnFeatures {
    usd_rates: HashMap<String, f64>,
    high_risk_mcc: HashSet<i64>,
    free_domains: HashSet<String>,
    disposable_domains: HashSet<String>,
}

impl Extractor for TxnFeatures {
    fn init(config: &Config) -> Result<Self> {
        let usd_rates: HashMap<String, f64> = config
            .json("usd_rates")?
            .ok_or_else(|| PluginError::internal("config `usd_rates` is required"))?;
        if let Some((c, r)) = usd_rates.iter().find(|(_, r)| !(r.is_finite() && **r > 0.0)) {
            return Err(PluginError::internal(format!("usd_rates.{c} = {r} must be a positive number")));
        }
        let lower = |v: Vec<String>| v.into_iter().map(|d| d.to_ascii_lowercase()).collect();
        Ok(TxnFeatures {
            usd_rates,
            high_risk_mcc: config
                .json::<Vec<i64>>("high_risk_mcc")?
                .unwrap_or_default()
                .into_iter()
                .collect(),
            free_domains: lower(config.json("free_email_domains")?.unwrap_or_default()),
            disposable_domains: lower(config.json("disposable_email_domains")?.unwrap_or_default()),
        })
    }

    fn metadata(&self) -> Metadata {
        Metadata::new("txn-features", env!("CARGO_PKG_VERSION"))
            .description("Turns a raw payment event into fraud features.")
            .input(float("amount").required().doc("amount in `currency` units, >= 0"))
            .input(text("currency").required().doc("ISO 4217 code, e.g. EUR"))
            .input(text("merchant_country").doc("ISO 3166-1 alpha-2"))
            .input(text("card_country").doc("ISO 3166-1 alpha-2 of the issuing bank"))
            .input(text("email").doc("payer e-mail"))
            .input(text("ip").doc("client IP, v4 or v6"))
            .input(int("timestamp").required().doc("event time, Unix seconds UTC"))
            .input(int("mcc").doc("merchant category code"))
            .output(float("amount_usd").doc("amount in USD"))
            .output(float("amount_usd_log").doc("ln(1 + amount_usd)"))
            .output(boolean("cross_border").doc("card country differs from merchant country"))
            .output(boolean("email_domain_free").doc("free webmail domain"))
            .output(boolean("email_domain_disposable").doc("disposable-address domain"))
            .output(int("email_local_digits").doc("digits in the local part"))
            .output(int("hour_of_day").doc("UTC hour, 0-23"))
            .output(boolean("is_night").doc("UTC hour in 0-5"))
            .output(boolean("mcc_high_risk").doc("MCC in the high-risk list"))
            .output(boolean("ip_private").doc("private, loopback or link-local address"))
            .output(int("ip_version").doc("4 or 6"))
    }

    fn extract(&self, e: &Features, out: &mut Output) -> Result<()> {
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
        let usd = amount * rate;
        out.set("amount_usd", usd)?;
        out.set("amount_usd_log", usd.ln_1p())?;

        let cross = match (e.text_opt("card_country")?, e.text_opt("merchant_country")?) {
            (Some(card), Some(merchant)) => Some(!card.eq_ignore_ascii_case(merchant)),
            _ => None,
        };
        out.set("cross_border", cross)?;

        if let Some(email) = e.text_opt("email")? {
            let (local, domain) = email
                .rsplit_once('@')
                .ok_or_else(|| PluginError::invalid_input(format!("`email` {email:?} has no @")))?;
            let domain = domain.to_ascii_lowercase();
            out.set("email_domain_free", self.free_domains.contains(&domain))?;
            out.set("email_domain_disposable", self.disposable_domains.contains(&domain))?;
            out.set("email_local_digits", local.bytes().filter(u8::is_ascii_digit).count() as i64)?;
        }

        let ts = e.int("timestamp")?;
        let hour = ts.rem_euclid(86_400) / 3_600;
        out.set("hour_of_day", hour)?;
        out.set("is_night", hour < 6)?;

        out.set("mcc_high_risk", e.int_opt("mcc")?.map(|m| self.high_risk_mcc.contains(&m)))?;

        if let Some(ip) = e.text_opt("ip")? {
            let ip: IpAddr = ip
                .parse()
                .map_err(|_| PluginError::invalid_input(format!("`ip` {ip:?} is not an IP address")))?;
            let private = match ip {
                IpAddr::V4(v4) => v4.is_private() || v4.is_loopback() || v4.is_link_local(),
                IpAddr::V6(v6) => v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
            };
            out.set("ip_private", private)?;
            out.set("ip_version", if ip.is_ipv4() { 4i64 } else { 6 })?;
        }
        Ok(())
    }
}

export_extractor!(TxnFeatures);

#[cfg(test)]
mod tests {
    use super::*;
    use scorehost_guest::testing::Harness;
    use serde_json::json;

    fn harness() -> Harness<TxnFeatures> {
        Harness::extractor(Config::new([
            ("usd_rates", r#"{"USD": 1.0, "EUR": 1.1}"#),
            ("high_risk_mcc", "[7995]"),
            ("free_email_domains", r#"["gmail.com"]"#),
            ("disposable_email_domains", r#"["mailinator.com"]"#),
        ]))
        .unwrap()
    }

    #[test]
    fn full_event() {
        let f = harness()
            .extract(&json!({
                "amount": 100, "currency": "eur", "merchant_country": "DE", "card_country": "US",
                "email": "jo42@GMAIL.com", "ip": "10.1.2.3", "timestamp": 1_764_115_200 + 3 * 3600, "mcc": 7995
            }))
            .unwrap();
        assert!((f["amount_usd"].as_f64().unwrap() - 110.0).abs() < 1e-9);
        assert_eq!(f["cross_border"], json!(true));
        assert_eq!(f["email_domain_free"], json!(true));
        assert_eq!(f["email_local_digits"], json!(2));
        assert_eq!(f["hour_of_day"], json!(3));
        assert_eq!(f["is_night"], json!(true));
        assert_eq!(f["mcc_high_risk"], json!(true));
        assert_eq!(f["ip_private"], json!(true));
        assert_eq!(f["ip_version"], json!(4));
    }

    #[test]
    fn optional_inputs_leave_features_missing() {
        let f = harness().extract(&json!({"amount": 5.5, "currency": "USD", "timestamp": 0})).unwrap();
        assert_eq!(f["cross_border"], json!(null));
        assert_eq!(f["email_domain_free"], json!(null));
    }

    #[test]
    fn unknown_currency_is_invalid_input() {
        let e = harness().extract(&json!({"amount": 1, "currency": "XXX", "timestamp": 0})).unwrap_err();
        assert_eq!(e.kind, scorehost_guest::ErrorKind::InvalidInput);
        assert!(e.message.contains("XXX"));
    }
}
