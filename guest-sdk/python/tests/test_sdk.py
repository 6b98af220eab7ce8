"""The Python SDK's own tests, natively: python3 -m pytest guest-sdk/python"""

import math

import pytest

import scorehost_guest as sh
import scorehost_guest.testing
from scorehost_guest import Config, Features, Field, Layout, PluginError, Row, write_outputs
from scorehost_guest.testing import features, load, row

FIELDS = [
    Field.float("amount", required=True),
    Field.int("digits"),
    Field.bool("night"),
    Field.text("email"),
    Field.floats("embedding"),
    Field.float("ratio"),
]


class Probe(sh.Scorer):
    name, version = "probe", "0.1.0"
    inputs = FIELDS

    def score(self, f):
        return sh.Score(f.float("amount")).reason("amount", 1.0)


def test_slots_follow_declaration_order_within_each_kind():
    layout = Layout(FIELDS)
    assert layout.widths == [4, 1, 1]
    assert layout.slots["ratio"] == (sh.Kind.FLOAT, 3)
    assert layout.slots["email"] == (sh.Kind.TEXT, 0)
    r = row(layout, {"amount": 2.5, "ratio": 0.5, "email": "a@b.c", "embedding": [1, 2]})
    assert r.numbers[0] == 2.5 and math.isnan(r.numbers[1]) and r.missing == [1, 2]
    assert (r.texts, r.vectors) == (["a@b.c"], [[1.0, 2.0]])


def test_accessors_read_by_name_and_name_the_field_in_errors():
    f = features(load(Probe), {"amount": 3.0, "digits": 4, "night": True})
    assert (f.float("amount"), f.int("digits"), f.bool("night")) == (3.0, 4, True)
    assert f.float("digits") == 4.0, "an int reads as a float"
    assert (f.text_opt("email"), f.floats_opt("embedding"), f.float_opt("ratio")) == (None, None, None)
    with pytest.raises(PluginError) as e:
        f.text("email")
    assert (e.value.kind, e.value.message) == (PluginError.INVALID_INPUT, "field `email` is required but missing")
    with pytest.raises(PluginError) as e:
        f.int("amount")
    assert e.value.kind == PluginError.INTERNAL and "declared float, but the plugin read it as int" in e.value.message
    with pytest.raises(PluginError) as e:
        f.float("nope")
    assert e.value.kind == PluginError.INTERNAL and "`nope` is not a declared field" in e.value.message


def test_a_frame_row_marks_missing_by_nan_alone():
    f = Features(Row([1.0, math.nan, 0.0, 2.0], None, [None], [None]), Layout(FIELDS))
    assert (f.float("amount"), f.int_opt("digits"), f.bool("night")) == (1.0, None, False)


def test_the_testing_row_checks_kinds_as_the_host_does():
    with pytest.raises(PluginError) as e:
        row(Layout(FIELDS), {"amount": "lots"})
    assert e.value.kind == PluginError.INVALID_INPUT and "`amount`" in e.value.message
    with pytest.raises(PluginError) as e:
        row(Layout(FIELDS), {"digits": 1})
    assert "`amount` is required" in e.value.message


def test_config_reads_typed_values_and_names_the_key():
    c = Config([("top", "3"), ("on", "true"), ("file", "w.json"), ("weights", '{"a": 1.5}'), ("bad", "{")])
    assert (c.int("top"), c.bool("on"), c.get("file"), c.json("weights")) == (3, True, "w.json", {"a": 1.5})
    assert c.float("top") == 3 and c.int("absent", 7) == 7
    for call in (lambda: c.int("on"), lambda: c.json("bad"), lambda: c.require("absent")):
        with pytest.raises(PluginError) as e:
            call()
        assert e.value.kind == PluginError.INTERNAL


def test_outputs_fill_a_positional_row_and_refuse_undeclared_or_mistyped_values():
    layout = Layout([Field.float("x"), Field.text("t"), Field.int("n")])
    r = write_outputs({"x": 1.5, "t": "hi", "n": None}, layout)
    assert (r.numbers[0], r.texts, r.missing) == (1.5, ["hi"], [1])
    with pytest.raises(PluginError, match="not a declared field"):
        write_outputs({"y": 1}, layout)
    with pytest.raises(PluginError, match="declared int"):
        write_outputs({"n": 1.5}, layout)


def test_model_files_are_read_from_the_model_dir_during_init(tmp_path):
    (tmp_path / "m.txt").write_text("42")

    class Model(sh.Scorer):
        def init(self, config):
            self.answer = int(sh.read_model_file("m.txt", "r"))

    assert load(Model, model_dir=tmp_path).answer == 42
    with pytest.raises(PluginError, match="cannot read model file `m.txt`"):
        load(Model)


def test_outside_a_component_there_is_nothing_to_export_and_log_lines_are_kept():
    assert sh.export_scorer(Probe) == (None, None)
    assert sh.export_extractor(Probe) is None
    sh.log.info("hello")
    assert sh.log.lines[-1] == (2, "hello")


def test_check_vectors_names_every_vector_that_does_not_hold(tmp_path):
    vectors = tmp_path / "tests.jsonl"
    vectors.write_text(
        '{"name": "right", "input": {"amount": 2.0}, "score": 2.0, "reasons": ["amount"]}\n'
        '{"name": "wrong score", "input": {"amount": 2.0}, "score": 3.0}\n'
        '{"name": "missing amount", "input": {}, "error": "invalid_input"}\n'
        '{"name": "expects an error", "input": {"amount": 1.0}, "error": "invalid_input"}\n'
    )
    failures = sh.testing.check_vectors(load(Probe), vectors)
    assert [f.split(":")[0] for f in failures] == ["wrong score", "expects an error"], failures
