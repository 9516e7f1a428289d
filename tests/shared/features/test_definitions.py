"""The feature set's fingerprint: any change to a definition is a new fingerprint."""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable

import numpy as np
import pytest

from shared.example.flights import FLIGHT_FEATURES
from shared.features import AsOfFeature, Columns, EventSource, FeatureSet, RowFeature, WindowFeature
from shared.features.stores import Event


def _with(index: int, **changes: object) -> FeatureSet:
    features = list(FLIGHT_FEATURES.features)
    features[index] = dataclasses.replace(features[index], **changes)  # type: ignore[type-var]
    return dataclasses.replace(FLIGHT_FEATURES, features=tuple(features))


def test_a_changed_definition_changes_the_fingerprint() -> None:
    i = next(i for i, f in enumerate(FLIGHT_FEATURES.features) if isinstance(f, WindowFeature))
    window = FLIGHT_FEATURES.features[i]
    assert isinstance(window, WindowFeature)
    original = FLIGHT_FEATURES.fingerprint()
    assert FLIGHT_FEATURES.fingerprint() == original  # stable: a hash of the definitions only
    assert _with(i, window_seconds=window.window_seconds + 60).fingerprint() != original
    assert _with(i, agg="count" if window.agg == "mean" else "mean").fingerprint() != original
    # The docs are hashed too (a conservative choice: rewording one asks for a retrain).
    assert _with(i, doc="reworded").fingerprint() != original


def test_the_lead_is_part_of_the_definition() -> None:
    """A model trained on features an hour ahead is refused by code computing them at another lead,
    and the lead widens the state every executor keeps."""
    original = FLIGHT_FEATURES.fingerprint()
    at_schedule = dataclasses.replace(FLIGHT_FEATURES, lead_seconds=0)
    assert at_schedule.fingerprint() != original
    assert (
        FLIGHT_FEATURES.retention_seconds("departures")
        == at_schedule.retention_seconds("departures") + FLIGHT_FEATURES.lead_seconds
    )
    with pytest.raises(ValueError, match="lead_seconds"):
        dataclasses.replace(FLIGHT_FEATURES, lead_seconds=-1)


def test_an_unknown_source_name_is_a_key_error_naming_it() -> None:
    with pytest.raises(KeyError, match=r"no source 'depatures'.*departures, weather"):
        FLIGHT_FEATURES.source("depatures")


ORDERS = EventSource("orders", "ready_ts", ("restaurant",), ("prep_minutes",), id_column="order_id")
SCALE = 60.0


def _minutes(c: Columns) -> np.ndarray:
    return _scaled(c["seconds"])


def _scaled(values: np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=np.float64) / SCALE


def _orders(*features: RowFeature | AsOfFeature | WindowFeature) -> FeatureSet:
    return FeatureSet("orders", "order_ts", (ORDERS,), features, request_fields=("restaurant", "order_ts"))


@pytest.mark.parametrize(
    ("feature", "message"),
    [
        (
            WindowFeature("n", "orders", "zone", "prep_minutes", "count", 600),
            "key 'zone' is not a key column",
        ),
        (WindowFeature("m", "orders", "restaurant", "basket", "mean", 600), "value 'basket' is not a value"),
        (
            WindowFeature("s", "orders", "restaurant", "prep_minutes", "sum", 600),  # type: ignore[arg-type]
            "agg must be one of count, mean",
        ),
        (WindowFeature("w", "orders", "restaurant", "prep_minutes", "mean", 0), "window_seconds must be > 0"),
        (AsOfFeature("a", "orders", "restaurant", "prep_minutes", -1), "ttl_seconds must be >= 0"),
        (AsOfFeature("a", "orders", "restaurant", "prep_minutes", 60, "float32"), "dtype must be one of"),  # type: ignore[arg-type]
        (AsOfFeature("a", "order", "restaurant", "prep_minutes", 60), "unknown source 'order'"),
    ],
)
def test_a_definition_the_executors_cannot_agree_on_is_refused_naming_the_feature(
    feature: WindowFeature | AsOfFeature, message: str
) -> None:
    """Offline reads any column of the raw events, the stores keep only key and value columns,
    and an aggregate other than count or mean used to be computed as a mean by every executor."""
    with pytest.raises(ValueError, match=rf"feature {feature.name}\b.*{message}"):
        _orders(feature)


def test_a_row_function_without_source_is_refused_when_the_set_is_built() -> None:
    halve = functools.partial(np.multiply, 0.5)
    with pytest.raises(ValueError, match=r"row feature half: .* no source to fingerprint"):
        _orders(RowFeature("half", "float64", ("seconds",), halve))


def test_what_a_row_function_reads_from_its_module_is_part_of_the_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A constant or helper of the function's module changes the values as surely as editing the
    function itself: the same fingerprint with other values is train/serve skew nobody refuses."""
    built = _orders(RowFeature("minutes", "float64", ("seconds",), _minutes))
    original = built.fingerprint()
    reads = built.schema()[0]["reads"]
    assert isinstance(reads, dict) and reads["SCALE"] == "60.0" and "def _scaled" in reads["_scaled"]
    module = sys.modules[__name__]
    monkeypatch.setattr(module, "SCALE", 1.0)  # a constant the helper reads
    assert _orders(RowFeature("minutes", "float64", ("seconds",), _minutes)).fingerprint() != original
    monkeypatch.undo()
    assert _orders(RowFeature("minutes", "float64", ("seconds",), _minutes)).fingerprint() == original

    def by(divisor: float) -> Callable[[Columns], np.ndarray]:
        def fn(c: Columns, offset: float = 0.0) -> np.ndarray:
            return np.asarray(c["seconds"], dtype=np.float64) / divisor + offset

        return fn

    hours, minutes = (_orders(RowFeature("t", "float64", ("seconds",), by(d))) for d in (3600.0, 60.0))
    assert hours.fingerprint() != minutes.fingerprint()  # same source text, other captured value


def test_an_event_id_holding_the_store_separator_is_refused() -> None:
    """The stores keep ``id|value|...``: an id "2024|1" read back its tail as a value."""
    with pytest.raises(ValueError, match=r"'2024\|1' contains '\|'"):
        Event.from_record(
            ORDERS, {"ready_ts": 0, "order_id": "2024|1", "restaurant": "r", "prep_minutes": 10}
        )
    kept = {"ready_ts": 0, "order_id": "2024-1", "restaurant": "r", "prep_minutes": 10}
    assert Event.from_record(ORDERS, kept).member() == "2024-1|10.0"
