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


__all__ = ["load", "row", "features", "score", "extract"]
