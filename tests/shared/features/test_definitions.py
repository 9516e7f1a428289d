"""The feature set's fingerprint: any change to a definition is a new fingerprint."""

from __future__ import annotations

import dataclasses

import pytest

from shared.example.flights import FLIGHT_FEATURES
from shared.features import FeatureSet, WindowFeature


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
