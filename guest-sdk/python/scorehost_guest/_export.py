"""The glue between a plugin class and the WIT exports, inside the component
only (it imports the bindings componentize-py generates, `wit_world`).

The plugin instance, its input layout and the metadata are made in `init`,
which the host runs once per plugin version before it snapshots the memory:
every call starts from that state, nothing is rebuilt per call. Per call the
glue makes only what the result needs.
"""

from __future__ import annotations

import math

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import types

from . import Config, Features, Layout, PluginError, Score, write_outputs


def _wit_error(e: BaseException) -> types.PluginError:
    """Any exception as the WIT's typed error: a PluginError keeps its kind;
    anything else is the plugin's bug, named by its type."""
    if isinstance(e, PluginError):
        return types.PluginError(types.ErrorKind(e.kind), e.message)
    return types.PluginError(types.ErrorKind.INTERNAL, f"{type(e).__name__}: {e}")


def _result(fn, arg):
    """`fn(arg)` as `Ok(value)` or `Err(typed error)`. A MemoryError is let
    through: it traps the call, and the host reports `memory_limit` (the cap
    was hit) and drops the instance, as for a Rust plugin."""
    try:
        return Ok(fn(arg))
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is reported, typed
        return Err(_wit_error(e))


def _value(result):
    """The value of `result`, or its error raised as the export's `Err`."""
    if isinstance(result, Err):
        raise result
    return result.value


def _metadata(plugin) -> types.Metadata:
    spec = lambda f: types.FieldSpec(f.name, types.ValueKind(f.kind), f.required, f.doc)  # noqa: E731
    return types.Metadata(
        plugin.name,
        plugin.version,
        plugin.description,
        [spec(f) for f in ([] if plugin.open_inputs else plugin.inputs)],
        [spec(f) for f in plugin.outputs],
        plugin.open_inputs,
    )


def _check_score(s) -> Score:
    if not isinstance(s, Score):
        raise PluginError.internal(f"score returned {type(s).__name__}, not a Score")
    return s


def _wit_score(s: Score) -> types.ScoreResult:
    return types.ScoreResult(float(s.value), [types.Reason(c, float(w)) for c, w in s.reasons])


class _State:
    """What `init` leaves for every call: the plugin, its layouts, its metadata."""

    plugin = None
    layout: Layout = None
    out_layout: Layout = None
    metadata = None
    # Input name -> its index in declaration order: a frame reason's code.
    input_index: dict = None

    @classmethod
    def init(cls, plugin_cls, config) -> None:
        plugin = plugin_cls()
        _value(_result(plugin.init, Config(config)))
        cls.plugin = plugin
        cls.layout = Layout(plugin.inputs)
        cls.out_layout = Layout(plugin.outputs)
        cls.metadata = _metadata(plugin)
        cls.input_index = {f.name: i for i, f in enumerate(cls.layout.fields)}


class _FrameRow:
    """One row of a frame, shaped as a `Row` for `Features` (no missing list:
    NaN alone marks a missing number in a frame)."""

    __slots__ = ("numbers", "missing", "texts", "vectors", "extra")

    def __init__(self):
        self.missing = None
        self.extra = ()


def scorer_exports(plugin_cls):
    """The `Scorer` and `FrameScorer` export classes for scorer class `plugin_cls`."""
    from wit_world.imports import frames  # the scorer world's only


    def score_one(row):
        return _wit_score(_check_score(_State.plugin.score(Features(row, _State.layout))))

    class Scorer(exports.Scorer):
        def init(self, config):
            _State.init(plugin_cls, config)

        def describe(self):
            return _State.metadata

        def score(self, row):
            return _value(_result(score_one, row))

        def score_batch(self, rows):
            return [_result(score_one, row) for row in rows]

    class FrameScorer(exports.FrameScorer):
        def score_frame(self, frame):
            plugin, layout = _State.plugin, _State.layout
            n, t, v = layout.widths
            rows = frame.rows
            values, reasons, errors = [], [], []
            codes: dict[str, int] = {}
            names, inputs = _State.input_index, len(layout.fields)
            checked = lambda f: _check_score(plugin.score(f))  # noqa: E731
            view = _FrameRow()
            features = Features(view, layout)
            for r in range(rows):
                view.numbers = frame.numbers[r * n : (r + 1) * n]
                view.texts = frame.texts[r * t : (r + 1) * t]
                view.vectors = frame.vectors[r * v : (r + 1) * v]
                result = _result(checked, features)
                if isinstance(result, Err):
                    values.append(math.nan)
                    errors.append(frames.FrameError(r, result.value))
                    continue
                s = result.value
                values.append(float(s.value))
                for code, weight in s.reasons:
                    i = names.get(code)
                    if i is None:
                        i = inputs + codes.setdefault(code, len(codes))
                    reasons.append(frames.FrameReason(r, i, float(weight)))
            return frames.FrameScores(values, reasons, list(codes), errors)

    return Scorer, FrameScorer


def extractor_exports(plugin_cls):
    """The `Extractor` export class for extractor class `plugin_cls`."""

    def extract_one(row):
        values = _State.plugin.extract(Features(row, _State.layout))
        if not isinstance(values, dict):
            raise PluginError.internal(f"extract returned {type(values).__name__}, not a dict")
        r = write_outputs(values, _State.out_layout)
        return types.Row(r.numbers, r.missing, r.texts, r.vectors, [])

    class Extractor(exports.Extractor):
        def init(self, config):
            _State.init(plugin_cls, config)

        def describe(self):
            return _State.metadata

        def extract(self, event):
            return _value(_result(extract_one, event))

        def extract_batch(self, events):
            return [_result(extract_one, event) for event in events]

    return Extractor
