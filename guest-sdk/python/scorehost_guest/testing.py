"""Native tests of a plugin's logic, with plain pytest and no wasm: the same
layout, accessors and errors the component uses, fed from a dict of named
features the way the host would fill a row.

    from scorehost_guest.testing import load, score

    def test_big_amounts_score_high():
        plugin = load(Hello)
        assert score(plugin, {"amount": 5000}).value == 1.0

Values are checked against the declared kinds as the host checks them (a
string where a number belongs is invalid input); undeclared names are ignored
unless the plugin declares `open_inputs`.
"""

from __future__ import annotations

import math
import os
from typing import Optional

from . import Config, Features, Kind, Layout, PluginError, Row, Score


def load(plugin_cls, config: Optional[dict] = None, model_dir: Optional[str] = None):
    """A plugin instance after `init(config)`: `config` maps keys to values as
    plugin.toml would (non-strings are passed as JSON text, as the host does);
    `model_dir` is read where the component would see `/model`."""
    import json

    plugin = plugin_cls()
    entries = [(k, v if isinstance(v, str) else json.dumps(v)) for k, v in (config or {}).items()]
    if model_dir is None:
        plugin.init(Config(entries))
    else:
        import scorehost_guest

        saved = scorehost_guest.MODEL_DIR
        scorehost_guest.MODEL_DIR = os.fspath(model_dir)
        try:
            plugin.init(Config(entries))
        finally:
            scorehost_guest.MODEL_DIR = saved
    plugin._scorehost_layout = Layout(plugin.inputs)
    return plugin


def row(layout: Layout, features: dict) -> Row:
    """The positional row the host would build from named `features`."""
    r = layout.empty_row()
    missing = set(r.missing)
    for name, value in features.items():
        if name not in layout.slots or value is None:
            continue
        kind, i = layout.slots[name]
        if kind in (Kind.BOOLEAN, Kind.INT, Kind.FLOAT):
            ok = isinstance(value, bool) if kind == Kind.BOOLEAN else (
                isinstance(value, int) and not isinstance(value, bool)
                if kind == Kind.INT
                else isinstance(value, (bool, int, float))
            )
            if not ok or (isinstance(value, float) and not math.isfinite(value)):
                raise PluginError.invalid_input(f"field `{name}` must be {Kind.NAMES[kind]}, got {value!r}")
            r.numbers[i] = float(value)
            missing.discard(i)
        elif kind == Kind.TEXT:
            if not isinstance(value, str):
                raise PluginError.invalid_input(f"field `{name}` must be text, got {value!r}")
            r.texts[i] = value
        else:
            r.vectors[i] = [float(x) for x in value]
    for f in layout.fields:
        if f.required and f.name not in features:
            raise PluginError.invalid_input(f"field `{f.name}` is required but missing")
    r.missing = sorted(missing)
    return r


def features(plugin, named: dict) -> Features:
    """`named` as the plugin's `score` or `extract` would see it."""
    return Features(row(plugin._scorehost_layout, named), plugin._scorehost_layout)


def score(plugin, named: dict) -> Score:
    """Scores `named` features with a loaded scorer."""
    return plugin.score(features(plugin, named))


def extract(plugin, named: dict) -> dict:
    """Extracts the features of event `named` with a loaded extractor."""
    return plugin.extract(features(plugin, named))


def check_vectors(plugin, path) -> list:
    """Runs the golden vectors in `path` (a tests.jsonl, as `scorehost test`
    and the validation gate read it) against a loaded plugin; returns one
    message per failing vector, empty when all hold. A vector expects a
    `score` (within `tolerance`, default 1e-9) and optionally its first
    `reasons`, or `features`, or an `error` kind."""
    import json
    import pathlib

    failures = []
    for line in pathlib.Path(path).read_text().splitlines():
        if not line.strip():
            continue
        case = json.loads(line)
        name, tol = case.get("name", line[:40]), case.get("tolerance", 1e-9)
        try:
            got = (extract if hasattr(plugin, "extract") else score)(plugin, case["input"])
        except PluginError as e:
            kind = "invalid_input" if e.kind == PluginError.INVALID_INPUT else "plugin_error"
            if case.get("error") != kind:
                failures.append(f"{name}: raised {e!r}, expected {case.get('error') or 'an answer'}")
            continue
        if "error" in case:
            failures.append(f"{name}: answered, expected error {case['error']}")
        elif "features" in case:
            for field, want in case["features"].items():
                have = got.get(field)
                same = (
                    math.isclose(have, want, abs_tol=tol)
                    if isinstance(want, float) and isinstance(have, (int, float))
                    else have == want
                )
                if not same:
                    failures.append(f"{name}: `{field}` = {have!r}, expected {want!r}")
        else:
            if not math.isclose(got.value, case["score"], abs_tol=tol):
                failures.append(f"{name}: score {got.value!r}, expected {case['score']!r}")
            codes = [code for code, _ in got.reasons][: len(case.get("reasons", []))]
            if "reasons" in case and codes != case["reasons"]:
                failures.append(f"{name}: reasons {codes}, expected {case['reasons']}")
    return failures


__all__ = ["load", "row", "features", "score", "extract", "check_vectors"]
