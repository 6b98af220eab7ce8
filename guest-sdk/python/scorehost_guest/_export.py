"""The glue between a plugin class and the WIT exports, inside the component
only (it imports the bindings componentize-py generates, `wit_world`).

The plugin instance, its input layout and the metadata are made in `init`,
which the host runs once per plugin version before it snapshots the memory:
every call starts from that state, nothing is rebuilt per call. Per call the
glue makes only what the WIT result needs: rows are read through one reused
`Features` view, and a failure is raised as the export's `Err` directly
(measured with `call-loop warm --python`: the glue's fuel per row cut by 41%,
docs/performance.md, "Making it faster"). The try/except around each plugin
call is written out at each export rather than in a helper: a helper is one
more Python call per row.
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


def _as_results(fn, items) -> list:
    """`fn` over `items` as a list of `Ok(value)` / `Err(typed error)`: the
    batch exports, where one row's failure is that row's result."""
    out = []
    for item in items:
        try:
            out.append(Ok(fn(item)))
        except Err as e:
            out.append(e)
    return out


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


class _State:
    """What `init` leaves for every call: the plugin, its layouts, its metadata,
    and the one `Features` view every row is read through."""

    plugin = None
    layout: Layout = None
    out_layout: Layout = None
    metadata = None
    # Input name -> its index in declaration order: a frame reason's code.
    input_index: dict = None
    # Re-pointed at each row in turn: no Features is made per call.
    view: Features = None

    @classmethod
    def init(cls, plugin_cls, config) -> None:
        plugin = plugin_cls()
        try:
            plugin.init(Config(config))
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - every failure is reported, typed
            raise Err(_wit_error(e)) from None
        cls.plugin = plugin
        cls.layout = Layout(plugin.inputs)
        cls.out_layout = Layout(plugin.outputs)
        cls.metadata = _metadata(plugin)
        cls.input_index = {f.name: i for i, f in enumerate(cls.layout.fields)}
        cls.view = Features(None, cls.layout)


def _score(features: Features) -> Score:
    """The plugin's score of `features`, checked to be a Score."""
    s = _State.plugin.score(features)
    if not isinstance(s, Score):
        raise PluginError.internal(f"score returned {type(s).__name__}, not a Score")
    return s


def _score_row(row) -> types.ScoreResult:
    """One row scored, as the WIT's result; a failure is raised as the export's
    `Err` (typed). A MemoryError is let through: it traps the call, and the
    host reports `memory_limit` (the cap was hit) and drops the instance, as
    for a Rust plugin."""
    view = _State.view
    view._row = row
    try:
        s = _score(view)
        return types.ScoreResult(float(s.value), [types.Reason(c, float(w)) for c, w in s.reasons])
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is reported, typed
        raise Err(_wit_error(e)) from None


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

    class Scorer(exports.Scorer):
        def init(self, config):
            _State.init(plugin_cls, config)

        def describe(self):
            return _State.metadata

        def score(self, row):
            return _score_row(row)

        def score_batch(self, rows):
            return _as_results(_score_row, rows)

    class FrameScorer(exports.FrameScorer):
        def score_frame(self, frame):
            layout = _State.layout
            n, t, v = layout.widths
            rows = frame.rows
            values, reasons, errors = [], [], []
            codes: dict[str, int] = {}
            names, inputs = _State.input_index, len(layout.fields)
            view = _FrameRow()
            features = Features(view, layout)
            for r in range(rows):
                view.numbers = frame.numbers[r * n : (r + 1) * n]
                view.texts = frame.texts[r * t : (r + 1) * t]
                view.vectors = frame.vectors[r * v : (r + 1) * v]
                mark = len(reasons)
                try:
                    s = _score(features)
                    value = float(s.value)
                    for code, weight in s.reasons:
                        i = names.get(code)
                        if i is None:
                            i = inputs + codes.setdefault(code, len(codes))
                        reasons.append(frames.FrameReason(r, i, float(weight)))
                except MemoryError:
                    raise
                except Exception as e:  # noqa: BLE001 - every failure is reported, typed
                    del reasons[mark:]  # a row that failed has no reasons
                    values.append(math.nan)
                    errors.append(frames.FrameError(r, _wit_error(e)))
                    continue
                values.append(value)
            return frames.FrameScores(values, reasons, list(codes), errors)

    return Scorer, FrameScorer


def _extract_row(event) -> types.Row:
    """One event's features, as the WIT's row; a failure is raised as the
    export's `Err` (typed), a MemoryError let through (see `_score_row`)."""
    view = _State.view
    view._row = event
    try:
        values = _State.plugin.extract(view)
        if not isinstance(values, dict):
            raise PluginError.internal(f"extract returned {type(values).__name__}, not a dict")
        r = write_outputs(values, _State.out_layout)
        return types.Row(r.numbers, r.missing, r.texts, r.vectors, [])
    except MemoryError:
        raise
    except Exception as e:  # noqa: BLE001 - every failure is reported, typed
        raise Err(_wit_error(e)) from None


def extractor_exports(plugin_cls):
    """The `Extractor` export class for extractor class `plugin_cls`."""

    class Extractor(exports.Extractor):
        def init(self, config):
            _State.init(plugin_cls, config)

        def describe(self):
            return _State.metadata

        def extract(self, event):
            return _extract_row(event)

        def extract_batch(self, events):
            return _as_results(_extract_row, events)

    return Extractor
