"""Native tests of logreg-py's logic (no wasm): python3 -m pytest plugins/logreg-py"""

import pathlib

import pytest

from app import LogReg
from scorehost_guest import PluginError
from scorehost_guest.testing import check_vectors, load, score

HERE = pathlib.Path(__file__).parent


def plugin(**config):
    return load(LogReg, {"model_file": "weights.json", "impute_missing": True, **config}, model_dir=HERE / "model")


def test_the_golden_vectors_hold_natively():
    assert check_vectors(plugin(), HERE / "tests.jsonl") == []


def test_a_required_feature_that_is_missing_is_the_callers_error():
    p = plugin(impute_missing=False)
    with pytest.raises(PluginError) as e:
        score(p, {"amount_usd_log": 2.0})
    assert e.value.kind == PluginError.INVALID_INPUT and "cross_border" in e.value.message


def test_a_bad_model_is_the_plugins_error(tmp_path):
    (tmp_path / "weights.json").write_text('{"intercept": 0, "weights": {"x": "NaN"}}')
    with pytest.raises(PluginError) as e:
        load(LogReg, {"model_file": "weights.json"}, model_dir=tmp_path)
    assert e.value.kind == PluginError.INTERNAL and "`x` is not finite" in e.value.message
