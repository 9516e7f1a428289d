"""The declaration language: features are declared once, as data, and run by three executors.

Three kinds of feature cover a typical tabular task. ``t`` below is the feature time: the
request's time minus the feature set's ``lead_seconds``.

* ``RowFeature``: a function of the request's own fields, written over numpy arrays so the same
  code runs vectorised offline and on one-row arrays online (no second implementation to drift).
* ``AsOfFeature``: the latest value of an event source for the request's key at or before ``t``,
  or missing (NaN) when that value is older than ``ttl_seconds``.
* ``WindowFeature``: ``count`` or ``mean`` of an event source's value for the request's key over
  events with time in ``[t - window, t)``. Strictly before ``t`` is not enough on its own to keep
  the predicted event out: a flight can leave before its scheduled time, so the example asks for
  its features an hour ahead (``lead_seconds``), earlier than any flight leaves.

Late and out-of-order events (policy, the same for every executor): events are kept in event-time
order per key whatever order they arrive in. An event whose time is older than the source's
watermark (the largest event time seen) minus ``allowed_lateness_seconds`` is rejected and counted;
state older than the watermark minus (lead + longest window + allowed lateness) is evicted. A
request therefore sees exactly the events the offline executor sees, provided every event before
its feature time ``t`` has arrived and ``t`` is within the lead + allowed lateness of the watermark.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import numpy as np

__all__ = [
    "AsOfFeature",
    "Columns",
    "EventSource",
    "Feature",
    "FeatureSet",
    "RowFeature",
    "WindowFeature",
    "category_codes",
]


def category_codes(values: np.ndarray, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Codes of ``values`` (their position in ``vocabulary``); -1 for a value it does not hold.

    One dictionary lookup per value: offline and one-row online calls run the very same code, and
    a one-row call costs a few microseconds (numpy's searchsorted on strings costs ~60).
    """
    index = _vocabulary_index(vocabulary)
    return np.fromiter((index.get(str(v), -1.0) for v in values), np.float64, count=len(values))


@functools.lru_cache(maxsize=64)
def _vocabulary_index(vocabulary: tuple[str, ...]) -> dict[str, float]:
    return {v: float(i) for i, v in enumerate(vocabulary)}


#: What a ``RowFeature``'s function receives: the request columns by name, one array each.
Columns = Mapping[str, np.ndarray]
Dtype = Literal["int64", "float64", "category"]


@dataclass(frozen=True)
class EventSource:
    """A stream of timestamped events (epoch seconds) with key and value columns."""

    name: str
    time_column: str
    key_columns: tuple[str, ...]
    value_columns: tuple[str, ...]
    id_column: str = "event_id"
    allowed_lateness_seconds: int = 3600


@dataclass(frozen=True)
class RowFeature:
    """A function of the request's fields, vectorised over numpy arrays."""

    name: str
    dtype: Dtype
    inputs: tuple[str, ...]
    fn: Callable[[Columns], np.ndarray]
    vocabulary: tuple[str, ...] | None = None
    doc: str = ""

    def spec(self) -> dict[str, object]:
        # The function's source is part of the fingerprint: editing it is a new feature definition.
        # So is what it reads from its own module (constants, helpers): changing a scale factor
        # there changes the values as surely as editing the function.
        return {
            "kind": "row",
            "inputs": list(self.inputs),
            "code": _source(self.fn, self.name),
            "reads": _module_reads(self.fn, self.name),
            "vocabulary": list(self.vocabulary or ()),
        }


def _source(fn: Callable[..., object], feature: str) -> str:
    try:
        return inspect.getsource(fn).strip()
    except (TypeError, OSError) as exc:  # a functools.partial, a builtin, code typed at a prompt
        raise ValueError(
            f"row feature {feature}: its function {fn!r} has no source to fingerprint ({exc}); "
            "write it as a def (or lambda) in a module"
        ) from None


_CONSTANT = (bool, int, float, str, bytes, tuple, frozenset, type(None))


def _module_reads(fn: Callable[..., object], feature: str) -> dict[str, str]:
    """What ``fn`` reads besides its arguments, transitively, as text: module-level constants,
    functions of its own module, captured (closure) values and default arguments.

    Imported library code (numpy, this package) is left out: it is versioned with its package.
    Mutable values (a dict, a list) are left out too: their value at import is no contract.
    """
    reads: dict[str, str] = {}
    pending = [fn]
    while pending:
        current = pending.pop()
        code = getattr(current, "__code__", None)
        if code is None:
            continue
        scope: dict[str, object] = {
            name: current.__globals__[name] for name in _names(code) if name in current.__globals__
        }
        cells = zip(code.co_freevars, getattr(current, "__closure__", None) or (), strict=False)
        scope |= {f"{name} (captured)": cell.cell_contents for name, cell in cells}
        if defaults := getattr(current, "__defaults__", None):
            scope[f"{current.__name__} (defaults)"] = defaults
        for name, value in sorted(scope.items()):
            if name in reads:
                continue
            if inspect.isfunction(value) and value.__module__ == fn.__module__:
                reads[name] = _source(value, feature)
                pending.append(value)
            elif isinstance(value, _CONSTANT):
                reads[name] = repr(value)
    return reads


def _names(code: types.CodeType) -> set[str]:
    """Global names read by ``code`` and by the lambdas and comprehensions nested in it."""
    found = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found |= _names(const)
    return found


@dataclass(frozen=True)
class AsOfFeature:
    """Latest ``value`` of ``source`` for the request's ``key`` at or before ``t``; NaN past the TTL."""

    name: str
    source: str
    key: str
    value: str
    ttl_seconds: int
    dtype: Dtype = "float64"
    doc: str = ""

    def spec(self) -> dict[str, object]:
        return {
            "kind": "asof",
            "source": self.source,
            "key": self.key,
            "value": self.value,
            "ttl_seconds": self.ttl_seconds,
        }


@dataclass(frozen=True)
class WindowFeature:
    """``count`` or ``mean`` of ``value`` over ``source`` events for ``key`` in ``[t - window, t)``."""

    name: str
    source: str
    key: str
    value: str
    agg: Literal["count", "mean"]
    window_seconds: int
    dtype: Dtype = "float64"
    doc: str = ""

    def spec(self) -> dict[str, object]:
        return {
            "kind": "window",
            "source": self.source,
            "key": self.key,
            "value": self.value,
            "agg": self.agg,
            "window_seconds": self.window_seconds,
        }


Feature = RowFeature | AsOfFeature | WindowFeature
_DTYPES = ("int64", "float64", "category")
_AGGS = ("count", "mean")


def _check_feature(f: Feature, sources: Mapping[str, EventSource]) -> None:
    """Refuse a definition the executors would compute differently, or not at all."""
    if f.dtype not in _DTYPES:
        raise ValueError(f"feature {f.name}: dtype must be one of {', '.join(_DTYPES)}, got {f.dtype!r}")
    if isinstance(f, RowFeature):
        f.spec()  # a function without source cannot be fingerprinted: say so now, not at registration
        return
    source = sources.get(f.source)
    if source is None:
        raise ValueError(f"feature {f.name} reads unknown source {f.source!r}")
    # The stores keep an event under each of its source's key columns and only its value columns:
    # any other column is one the offline executor could read and the online ones could not.
    if f.key not in source.key_columns:
        raise ValueError(
            f"feature {f.name}: key {f.key!r} is not a key column of source {source.name} "
            f"({', '.join(source.key_columns)})"
        )
    if f.value not in source.value_columns:
        raise ValueError(
            f"feature {f.name}: value {f.value!r} is not a value column of source {source.name} "
            f"({', '.join(source.value_columns)})"
        )
    if isinstance(f, WindowFeature):
        if f.agg not in _AGGS:
            raise ValueError(f"feature {f.name}: agg must be one of {', '.join(_AGGS)}, got {f.agg!r}")
        if f.window_seconds <= 0:
            raise ValueError(f"feature {f.name}: window_seconds must be > 0, got {f.window_seconds}")
    elif f.ttl_seconds < 0:
        raise ValueError(f"feature {f.name}: ttl_seconds must be >= 0, got {f.ttl_seconds}")


_Time = TypeVar("_Time", int, np.ndarray)


@dataclass(frozen=True)
class FeatureSet:
    """An ordered list of features over the request columns and event sources.

    The order is the column order of the model's input matrix; ``fingerprint`` hashes every
    definition, so a model trained on one feature set is refused by serving code running another.

    Features are computed *as of* ``request_time − lead_seconds``: windows end and as-of lookups
    look back from there. A lead longer than the earliest an event about the request itself can
    happen (a flight leaving ahead of schedule) keeps that event out of its own features.
    """

    name: str
    request_time: str
    sources: tuple[EventSource, ...]
    features: tuple[Feature, ...]
    request_fields: tuple[str, ...] = field(default=())
    lead_seconds: int = 0

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names in {self.name}: {names}")
        if self.lead_seconds < 0:
            raise ValueError(f"lead_seconds must be >= 0, got {self.lead_seconds}")
        sources = {s.name: s for s in self.sources}
        for f in self.features:
            _check_feature(f, sources)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def source(self, name: str) -> EventSource:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources)
        raise KeyError(f"feature set {self.name} has no source {name!r} (it has: {known})")

    def schema(self) -> list[dict[str, object]]:
        """One entry per feature: name, dtype, kind and its parameters (what ``features show`` prints)."""
        return [{"name": f.name, "dtype": f.dtype, **f.spec(), "doc": f.doc} for f in self.features]

    def max_window_seconds(self, source: str) -> int:
        windows = [
            f.window_seconds for f in self.features if isinstance(f, WindowFeature) and f.source == source
        ]
        ttls = [f.ttl_seconds for f in self.features if isinstance(f, AsOfFeature) and f.source == source]
        return max(windows + ttls + [0])

    def retention_seconds(self, source: str) -> int:
        """How far behind the watermark state must be kept for exact answers."""
        lateness = self.source(source).allowed_lateness_seconds
        return self.lead_seconds + self.max_window_seconds(source) + lateness

    def as_of(self, request_time: _Time) -> _Time:
        """The time features are computed at, ``request_time − lead_seconds`` (epoch seconds or an
        int64 array of them): the one place every executor takes it from."""
        return request_time - self.lead_seconds

    def fingerprint(self) -> str:
        payload = {
            "name": self.name,
            "request_time": self.request_time,
            "lead_seconds": self.lead_seconds,
            "sources": [
                vars(s) | {"key_columns": list(s.key_columns), "value_columns": list(s.value_columns)}
                for s in self.sources
            ],
            "features": self.schema(),
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
        return f"{self.name}:{digest[:16]}"
