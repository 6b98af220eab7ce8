"""txn-features-py — the payment-event feature extractor of
plugins/txn-features, in Python.

Shows: a Python extractor on the Python SDK (guest-sdk/python): lookup tables
built once in `init` from `[config]` (USD rates, high-risk MCCs, e-mail
domain lists), inputs and outputs declared once, typed reads whose errors name
the field, and outputs returned as a dict (None leaves one missing). It
passes txn-features' golden vectors (tests.jsonl): the same features.

Build (what plugins/artifacts does):
    componentize-py -d wit -w extractor-plugin componentize app \
        -p plugins/txn-features-py -p guest-sdk/python -o txn-features-py.wasm
Test the logic natively: python3 -m pytest plugins/txn-features-py
Run it: scorehost call txn-features-py --input '{"event": {"amount": 12.5, "currency": "EUR", "timestamp": 1764165600}}'
"""

import ipaddress
import math

import scorehost_guest as sh
from scorehost_guest import Field, PluginError

# The ranges Rust's std calls private, loopback or link-local (txn-features).
PRIVATE_V4 = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "169.254.0.0/16")]
PRIVATE_V6 = [ipaddress.ip_network(n) for n in ("::1/128", "fc00::/7")]


class TxnFeatures(sh.Extractor):
    name, version = "txn-features-py", "0.1.0"
    description = "Turns a raw payment event into fraud features."
    inputs = [
        Field.float("amount", required=True, doc="amount in `currency` units, >= 0"),
        Field.text("currency", required=True, doc="ISO 4217 code, e.g. EUR"),
        Field.text("merchant_country", doc="ISO 3166-1 alpha-2"),
        Field.text("card_country", doc="ISO 3166-1 alpha-2 of the issuing bank"),
        Field.text("email", doc="payer e-mail"),
        Field.text("ip", doc="client IP, v4 or v6"),
        Field.int("timestamp", required=True, doc="event time, Unix seconds UTC"),
        Field.int("mcc", doc="merchant category code"),
    ]
    outputs = [
        Field.float("amount_usd", doc="amount in USD"),
        Field.float("amount_usd_log", doc="ln(1 + amount_usd)"),
        Field.bool("cross_border", doc="card country differs from merchant country"),
        Field.bool("email_domain_free", doc="free webmail domain"),
        Field.bool("email_domain_disposable", doc="disposable-address domain"),
        Field.int("email_local_digits", doc="digits in the local part"),
        Field.int("hour_of_day", doc="UTC hour, 0-23"),
        Field.bool("is_night", doc="UTC hour in 0-5"),
        Field.bool("mcc_high_risk", doc="MCC in the high-risk list"),
        Field.bool("ip_private", doc="private, loopback or link-local address"),
        Field.int("ip_version", doc="4 or 6"),
    ]

    def init(self, config):
        rates = config.json("usd_rates")
        if not isinstance(rates, dict):
            raise PluginError.internal("config `usd_rates` is required (a table of currency = rate)")
        for currency, rate in rates.items():
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (math.isfinite(rate) and rate > 0):
                raise PluginError.internal(f"usd_rates.{currency} = {rate} must be a positive number")
        self.usd_rates = {c: float(r) for c, r in rates.items()}
        self.high_risk_mcc = set(config.json("high_risk_mcc", []))
        self.free = {d.lower() for d in config.json("free_email_domains", [])}
        self.disposable = {d.lower() for d in config.json("disposable_email_domains", [])}

    def extract(self, e):
        out = {}
        amount = e.float("amount")
        if not (amount >= 0 and math.isfinite(amount)):
            raise PluginError.invalid_input(f"`amount` must be a finite number >= 0, got {amount}")
        currency = e.text("currency").upper()
        rate = self.usd_rates.get(currency)
        if rate is None:
            raise PluginError.invalid_input(f"`currency` {currency!r} has no USD rate")
        usd = amount * rate
        out["amount_usd"] = usd
        out["amount_usd_log"] = math.log1p(usd)

        card, merchant = e.text_opt("card_country"), e.text_opt("merchant_country")
        if card is not None and merchant is not None:
            out["cross_border"] = card.lower() != merchant.lower()

        email = e.text_opt("email")
        if email is not None:
            local, at, domain = email.rpartition("@")
            if not at:
                raise PluginError.invalid_input(f"`email` {email!r} has no @")
            domain = domain.lower()
            out["email_domain_free"] = domain in self.free
            out["email_domain_disposable"] = domain in self.disposable
            out["email_local_digits"] = sum(c in "0123456789" for c in local)

        hour = e.int("timestamp") % 86_400 // 3_600
        out["hour_of_day"] = hour
        out["is_night"] = hour < 6

        mcc = e.int_opt("mcc")
        if mcc is not None:
            out["mcc_high_risk"] = mcc in self.high_risk_mcc

        ip = e.text_opt("ip")
        if ip is not None:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                raise PluginError.invalid_input(f"`ip` {ip!r} is not an IP address") from None
            nets = PRIVATE_V4 if addr.version == 4 else PRIVATE_V6
            out["ip_private"] = any(addr in n for n in nets)
            out["ip_version"] = addr.version
        return out


Extractor = sh.export_extractor(TxnFeatures)
