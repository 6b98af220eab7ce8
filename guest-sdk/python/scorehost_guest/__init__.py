"""scorehost's Python guest SDK: write a scorer or an extractor as a class,
build it with componentize-py, and the host runs it in the same sandbox as a
Rust plugin (docs/plugins-python.md).

    from scorehost_guest import Scorer, Score, Field, export_scorer

    class Hello(Scorer):
        name, version = "hello-py", "0.1.0"
        inputs = [Field.float("amount", required=True)]

        def score(self, f):
            return Score(min(f.float("amount") / 1000, 1.0)).reason("amount", 1.0)

    Scorer, FrameScorer = export_scorer(Hello)   # what componentize-py exports

What the Rust SDK (`guest-sdk/`) gives Rust authors, this gives Python ones:
inputs and outputs declared once, features read by name with typed accessors
whose errors name the field, scores with reasons, typed plugin errors
(invalid input: the caller's fault; internal: the plugin's), `log`, `[config]`
and the model directory in `init`, and batches for free (`score_batch` and the
columnar `score_frame` call `score` per row). The logic runs natively under
plain pytest through `scorehost_guest.testing`, no wasm involved.

This module never imports the generated bindings (`wit_world`), so it loads
natively; `scorehost_guest._export` does, inside the component only.
"""

from __future__ import annotations

import json
import math
from typing import Any, Iterable, Optional, Sequence

__all__ = [
    "Config",
    "Extractor",
    "Features",
    "Field",
    "Kind",
    "Layout",
    "PluginError",
    "Row",
    "Score",
    "Scorer",
    "export_extractor",
    "export_scorer",
    "log",
    "read_model_file",
]

MODEL_DIR = "/model"
"""Where the manifest's model directory is visible to the plugin, during `init` only."""


class Kind:
    """The kind of a declared field; it decides which slot of a row carries it
    (the WIT's `value-kind`, in the same order)."""

    BOOLEAN = 0
    INT = 1
    FLOAT = 2
    TEXT = 3
    FLOATS = 4
    NAMES = ("boolean", "int", "float", "text", "floats")


class Field:
    """One declared input or output: a name, a kind, whether it is required,
    a line of documentation. Build them with the class methods."""

    __slots__ = ("name", "kind", "required", "doc")

    def __init__(self, name: str, kind: int, required: bool = False, doc: str = ""):
        self.name, self.kind, self.required, self.doc = name, kind, required, doc

    @classmethod
    def float(cls, name: str, required: bool = False, doc: str = "") -> "Field":
        """A float field (a bool or an int is accepted as a number)."""
        return cls(name, Kind.FLOAT, required, doc)

    @classmethod
    def int(cls, name: str, required: bool = False, doc: str = "") -> "Field":
        """An integer field."""
        return cls(name, Kind.INT, required, doc)

    @classmethod
    def bool(cls, name: str, required: bool = False, doc: str = "") -> "Field":
        """A boolean field."""
        return cls(name, Kind.BOOLEAN, required, doc)

    @classmethod
    def text(cls, name: str, required: bool = False, doc: str = "") -> "Field":
        """A text field."""
        return cls(name, Kind.TEXT, required, doc)

    @classmethod
    def floats(cls, name: str, required: bool = False, doc: str = "") -> "Field":
        """A list-of-floats field (an embedding, say)."""
        return cls(name, Kind.FLOATS, required, doc)

    def __repr__(self) -> str:
        req = ", required" if self.required else ""
        return f"Field.{Kind.NAMES[self.kind]}({self.name!r}{req})"


class PluginError(Exception):
    """A typed failure. `invalid_input` is the caller's fault (HTTP 422), `internal`
    the plugin's (HTTP 500). Raise it from `init`, `score` or `extract`; any other
    exception is reported as an internal error naming its type and message,
    except MemoryError, which ends the call as `memory_limit`."""

    INVALID_INPUT = 0
    INTERNAL = 1

    def __init__(self, kind: int, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message

    @classmethod
    def invalid_input(cls, message: str) -> "PluginError":
        """The input is wrong: a missing or malformed field."""
        return cls(cls.INVALID_INPUT, message)

    @classmethod
    def internal(cls, message: str) -> "PluginError":
        """The plugin is wrong: a bad model, a bad config, a bug."""
        return cls(cls.INTERNAL, message)

    def __repr__(self) -> str:
        kind = "invalid_input" if self.kind == self.INVALID_INPUT else "internal"
        return f"PluginError.{kind}({self.message!r})"


class Score:
    """The result of scoring one row: a value and its reasons, largest first."""

    __slots__ = ("value", "reasons")

    def __init__(self, value: float):
        self.value = value
        self.reasons: list[tuple[str, float]] = []

    def reason(self, code: str, weight: float) -> "Score":
        """Adds a reason (a code and its signed contribution); returns self, to chain."""
        self.reasons.append((code, weight))
        return self

    def __repr__(self) -> str:
        return f"Score({self.value!r}, reasons={self.reasons!r})"


class Row:
    """A row in positional form, as the host sends it: numeric slots (NaN and
    listed in `missing` when absent), text slots and vector slots (None when
    absent). The same shape as the WIT's `row`; the testing helpers build one."""

    __slots__ = ("numbers", "missing", "texts", "vectors", "extra")

    def __init__(self, numbers, missing, texts, vectors, extra=()):
        self.numbers, self.missing, self.texts, self.vectors, self.extra = numbers, missing, texts, vectors, extra


class Layout:
    """The name → slot map of a list of declared fields, built once per plugin
    version: numeric kinds share `numbers`, texts `texts`, floats `vectors`,
    each in declaration order (the host fills rows the same way)."""

    def __init__(self, fields: Sequence[Field]):
        self.fields = list(fields)
        self.slots: dict[str, tuple[int, int]] = {}
        self.widths = [0, 0, 0]  # numbers, texts, vectors
        for f in self.fields:
            group = 0 if f.kind in (Kind.BOOLEAN, Kind.INT, Kind.FLOAT) else 1 if f.kind == Kind.TEXT else 2
            self.slots[f.name] = (f.kind, self.widths[group])
            self.widths[group] += 1

    def slot(self, name: str) -> tuple[int, int]:
        """(kind, index) of declared field `name`, or an internal error naming it."""
        try:
            return self.slots[name]
        except KeyError:
            raise PluginError.internal(f"`{name}` is not a declared field of this plugin") from None

    def empty_row(self) -> Row:
        """A row with every slot absent, sized for this layout (an extractor's output)."""
        n, t, v = self.widths
        return Row([math.nan] * n, list(range(n)), [None] * t, [None] * v, [])


def _missing(name: str) -> PluginError:
    return PluginError.invalid_input(f"field `{name}` is required but missing")


def _wrong_kind(name: str, asked: str, declared: int) -> PluginError:
    return PluginError.internal(
        f"field `{name}` is declared {Kind.NAMES[declared]}, but the plugin read it as {asked}"
    )


_NUMERIC = (Kind.BOOLEAN, Kind.INT, Kind.FLOAT)


class Features:
    """A read-only, named view of one input row: what `score` and `extract` get.

    Accessors come in pairs: `float(name)` raises an invalid-input error naming
    the field when it is missing; `float_opt(name)` returns None instead. Reading
    a field as another kind than declared is the plugin's bug (internal error).

    Inside the component one Features is re-pointed at each row in turn (no
    allocation per call): read what you need during the call, do not keep it."""

    __slots__ = ("_row", "_layout")

    def __init__(self, row: Row, layout: Layout):
        self._row, self._layout = row, layout

    def _number(self, name: str, asked: str, accept: tuple) -> Optional[float]:
        kind, i = self._layout.slot(name)
        if kind not in accept:
            raise _wrong_kind(name, asked, kind)
        missing = self._row.missing
        x = self._row.numbers[i]
        if (i in missing) if missing is not None else math.isnan(x):
            return None
        return x

    def float_opt(self, name: str) -> Optional[float]:
        """A numeric field as a float (bool and int fields too), or None when absent."""
        return self._number(name, "float", _NUMERIC)

    def float(self, name: str) -> float:
        """A numeric field as a float; invalid input naming it when absent."""
        x = self._number(name, "float", _NUMERIC)
        if x is None:
            raise _missing(name)
        return x

    def int_opt(self, name: str) -> Optional[int]:
        """An int field, or None when absent."""
        x = self._number(name, "int", (Kind.INT,))
        return None if x is None else int(x)

    def int(self, name: str) -> int:
        """An int field; invalid input naming it when absent."""
        x = self.int_opt(name)
        if x is None:
            raise _missing(name)
        return x

    def bool_opt(self, name: str) -> Optional[bool]:
        """A bool field, or None when absent."""
        x = self._number(name, "bool", (Kind.BOOLEAN,))
        return None if x is None else x != 0.0

    def bool(self, name: str) -> bool:
        """A bool field; invalid input naming it when absent."""
        x = self.bool_opt(name)
        if x is None:
            raise _missing(name)
        return x

    def text_opt(self, name: str) -> Optional[str]:
        """A text field, or None when absent."""
        kind, i = self._layout.slot(name)
        if kind != Kind.TEXT:
            raise _wrong_kind(name, "text", kind)
        return self._row.texts[i]

    def text(self, name: str) -> str:
        """A text field; invalid input naming it when absent."""
        x = self.text_opt(name)
        if x is None:
            raise _missing(name)
        return x

    def floats_opt(self, name: str) -> Optional[list]:
        """A floats field, or None when absent."""
        kind, i = self._layout.slot(name)
        if kind != Kind.FLOATS:
            raise _wrong_kind(name, "floats", kind)
        return self._row.vectors[i]

    def floats(self, name: str) -> list:
        """A floats field; invalid input naming it when absent."""
        x = self.floats_opt(name)
        if x is None:
            raise _missing(name)
        return x

    def numbers(self) -> list:
        """Every numeric slot in declaration order (NaN where absent): the fast
        path for a dense feature vector, no name looked up."""
        return self._row.numbers


class Config:
    """The manifest's `[config]` table, handed to `init` once. Strings arrive as
    they are; numbers, booleans, arrays and tables as JSON text. Every accessor's
    error names the key and is internal: config is the plugin owner's job."""

    def __init__(self, entries: Iterable[tuple[str, str]] = ()):
        self.entries = dict(entries)

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]:
        """The raw text of `key`, or `default`."""
        return self.entries.get(key, default)

    def require(self, key: str) -> str:
        """The raw text of `key`, or an internal error naming it."""
        if key not in self.entries:
            raise PluginError.internal(f"config key `{key}` is required ([config] in plugin.toml)")
        return self.entries[key]

    def json(self, key: str, default: Any = None) -> Any:
        """`key` parsed as JSON (a number, a bool, a table, an array), or `default`."""
        if key not in self.entries:
            return default
        try:
            return json.loads(self.entries[key])
        except ValueError as e:
            raise PluginError.internal(f"config key `{key}` is not valid JSON: {e}") from None

    def float(self, key: str, default: Optional[float] = None) -> Optional[float]:
        """`key` as a number, or `default`."""
        x = self.json(key, default)
        if x is not None and (isinstance(x, bool) or not isinstance(x, (int, float))):
            raise PluginError.internal(f"config key `{key}` must be a number, got {self.entries[key]!r}")
        return x

    def int(self, key: str, default: Optional[int] = None) -> Optional[int]:
        """`key` as an integer, or `default`."""
        x = self.json(key, default)
        if x is not None and (isinstance(x, bool) or not isinstance(x, int)):
            raise PluginError.internal(f"config key `{key}` must be an integer, got {self.entries[key]!r}")
        return x

    def bool(self, key: str, default: Optional[bool] = None) -> Optional[bool]:
        """`key` as a boolean, or `default`."""
        x = self.json(key, default)
        if x is not None and not isinstance(x, bool):
            raise PluginError.internal(f"config key `{key}` must be true or false, got {self.entries[key]!r}")
        return x


def read_model_file(name: str, mode: str = "rb"):
    """The contents of file `name` of the model directory (bytes; `mode="r"` for
    text). Call it from `init`: calls have no file access at all. The error names
    the file and is internal."""
    try:
        with open(f"{MODEL_DIR}/{name}", mode) as f:
            return f.read()
    except OSError as e:
        raise PluginError.internal(
            f"cannot read model file `{name}` ({e.strerror or e}); is `model_dir` set in plugin.toml, "
            "and is this init?"
        ) from None


class Scorer:
    """Base class of a scoring plugin. Set `name`, `version`, `description`,
    `inputs` (and `open_inputs` only for the names-based path); override
    `init(config)` to read config and the model (the instance is what every
    call starts from) and `score(features) -> Score`."""

    name = "unnamed"
    version = "0.0.0"
    description = ""
    inputs: Sequence[Field] = ()
    outputs: Sequence[Field] = (Field.float("score"),)
    open_inputs = False

    def init(self, config: Config) -> None:
        """Called once per plugin version, before anything else."""

    def score(self, features: Features) -> Score:  # pragma: no cover - overridden
        """Scores one row."""
        raise PluginError.internal("score is not implemented")


class Extractor:
    """Base class of a feature-extraction plugin. Set `name`, `version`,
    `description`, `inputs`, `outputs`; override `init(config)` and
    `extract(features) -> dict` (output name → value; absent outputs stay missing)."""

    name = "unnamed"
    version = "0.0.0"
    description = ""
    inputs: Sequence[Field] = ()
    outputs: Sequence[Field] = ()
    open_inputs = False

    def init(self, config: Config) -> None:
        """Called once per plugin version, before anything else."""

    def extract(self, features: Features) -> dict:  # pragma: no cover - overridden
        """The features of one event, by output name."""
        raise PluginError.internal("extract is not implemented")


def write_outputs(values: dict, layout: Layout) -> Row:
    """Fills a positional row from `values` (output name → value) through the
    outputs' layout: an undeclared name or a value of the wrong kind is the
    plugin's bug (internal error naming it); None leaves the output missing."""
    row = layout.empty_row()
    missing = set(row.missing)
    for name, value in values.items():
        if value is None:
            continue
        kind, i = layout.slot(name)
        if kind in _NUMERIC:
            if isinstance(value, str) or not isinstance(value, (bool, int, float)):
                raise _wrong_kind(name, type(value).__name__, kind)
            if kind == Kind.INT and not isinstance(value, int):
                raise _wrong_kind(name, type(value).__name__, kind)
            row.numbers[i] = float(value)
            missing.discard(i)
        elif kind == Kind.TEXT:
            if not isinstance(value, str):
                raise _wrong_kind(name, type(value).__name__, kind)
            row.texts[i] = value
        else:
            row.vectors[i] = [float(x) for x in value]
    row.missing = sorted(missing)
    return row


def _glue():
    """The export glue, or None outside a component (natively, under pytest,
    the generated bindings do not exist and there is nothing to export)."""
    try:
        from . import _export
    except ImportError as e:
        if e.name not in ("wit_world", "componentize_py_types"):
            raise
        return None
    return _export


def export_scorer(cls):
    """The `Scorer` and `FrameScorer` classes componentize-py exports for the
    scorer class `cls`: `Scorer, FrameScorer = export_scorer(MyScorer)` in the
    plugin's app module. Natively (no bindings): `(None, None)`."""
    glue = _glue()
    return (None, None) if glue is None else glue.scorer_exports(cls)


def export_extractor(cls):
    """The `Extractor` class componentize-py exports for `cls`:
    `Extractor = export_extractor(MyExtractor)` in the plugin's app module.
    Natively (no bindings): None."""
    glue = _glue()
    return None if glue is None else glue.extractor_exports(cls)


try:  # imported once, at build time (pre-initialised), not per log line
    from wit_world.imports import log as _wit_log
except ImportError:  # natively: no bindings
    _wit_log = None


class _Log:
    """Structured logging into the host's log, tagged with the plugin and
    version (rate-limited by the host). Natively, lines go to `lines`."""

    lines: list = []

    def _write(self, level: int, message: str) -> None:
        if _wit_log is None:
            self.lines.append((level, message))
            return
        _wit_log.log(_wit_log.Level(level), message)

    def trace(self, message: str) -> None:
        self._write(0, message)

    def debug(self, message: str) -> None:
        self._write(1, message)

    def info(self, message: str) -> None:
        self._write(2, message)

    def warn(self, message: str) -> None:
        self._write(3, message)

    def error(self, message: str) -> None:
        self._write(4, message)


log = _Log()
"""`log.info("…")` and friends."""
