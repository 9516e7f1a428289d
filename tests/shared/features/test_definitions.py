"""The feature set's fingerprint: what it hashes (every definition) and what it leaves out (docs)."""

from __future__ import annotations

import dataclasses

from shared.example.flights import FLIGHT_FEATURES
from shared.features import FeatureSet, WindowFeature


def _with(index: int, **changes: object) -> FeatureSet:
    features = list(FLIGHT_FEATURES.features)
    features[index] = dataclasses.replace(features[index], **changes)  # type: ignore[type-var]
    return dataclasses.replace(FLIGHT_FEATURES, features=tuple(features))


def test_a_changed_definition_changes_the_fingerprint_a_reworded_doc_does_not() -> None:
    window = next(i for i, f in enumerate(FLIGHT_FEATURES.features) if isinstance(f, WindowFeature))
    original = FLIGHT_FEATURES.fingerprint()
    assert _with(window, window_seconds=7200).fingerprint() != original
    assert (
        _with(window, agg="count" if FLIGHT_FEATURES.features[window].agg == "mean" else "mean").fingerprint()
        != original
    )  # type: ignore[union-attr]
    assert _with(window, doc="the same window, explained better").fingerprint() == original
    assert _with(0, doc="reworded").fingerprint() == original
