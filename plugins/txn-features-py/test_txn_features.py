"""Native tests of txn-features-py's logic (no wasm): python3 -m pytest plugins/txn-features-py"""

import pathlib
import tomllib

import pytest

from app import TxnFeatures
from scorehost_guest import PluginError
from scorehost_guest.testing import check_vectors, extract, load

HERE = pathlib.Path(__file__).parent


def plugin():
    return load(TxnFeatures, tomllib.loads((HERE / "plugin.toml").read_text())["config"])


def test_the_golden_vectors_hold_natively():
    assert check_vectors(plugin(), HERE / "tests.jsonl") == []


def test_private_addresses_are_the_ones_rust_calls_private():
    p = plugin()
    base = {"amount": 1.0, "currency": "USD", "timestamp": 0}
    for ip, private in [("10.1.2.3", True), ("172.31.0.1", True), ("169.254.1.1", True), ("127.0.0.1", True),
                        ("100.64.0.1", False), ("8.8.8.8", False), ("::1", True), ("fd00::1", True), ("2001:db8::1", False)]:
        assert extract(p, {**base, "ip": ip})["ip_private"] is private, ip


def test_bad_fields_are_the_callers_errors_naming_them():
    p = plugin()
    for event, field in [({"amount": -1.0, "currency": "USD", "timestamp": 0}, "amount"),
                         ({"amount": 1.0, "currency": "USD", "timestamp": 0, "email": "nobody"}, "email"),
                         ({"amount": 1.0, "currency": "USD", "timestamp": 0, "ip": "300.1.1.1"}, "ip")]:
        with pytest.raises(PluginError) as e:
            extract(p, event)
        assert e.value.kind == PluginError.INVALID_INPUT and f"`{field}`" in e.value.message
