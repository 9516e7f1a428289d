"""Feature skew per example: each injected serving bug is flagged on exactly the features it touches.

The perturbed logs come from the real streaming path replayed with the bug (a clock that runs late,
a lagging stream), or from the clean features transformed the way a buggy path would (a unit change).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shared.consistency import ConsistencyReport, check_features, load_records
from shared.example.flights import FLIGHT_FEATURES
from shared.features import EventSource, FeatureSet, WindowFeature

NAMES = FLIGHT_FEATURES.names
WINDOW_FEATURES = [n for n in NAMES if "_dep_" in n]


@pytest.fixture
def last_days(world):  # type: ignore[no-untyped-def]
    """January 30-31: enough examples for the perturbations that need a second replay."""
    return world.rows(world.requests["day"] >= 30)


def _check(world, **kwargs):  # type: ignore[no-untyped-def]
    return check_features(load_records(), sources=world.sources, **kwargs)


def test_clean_serving_passes_every_feature_and_the_prediction(world, serve) -> None:  # type: ignore[no-untyped-def]
    everything = np.arange(len(world.requests))
    serve(everything[::2], pattern="rest_api")
    serve(everything[1::2], pattern="streaming")
    result = _check(world)
    assert result.passed and result.status == "pass"
    assert result.flagged == []
    assert [f.name for f in result.findings] == [*NAMES, "prediction"]
    assert all(f.metrics["n"] == len(world.requests) for f in result.findings)
    assert any("rest_api" in n and "streaming" in n for n in result.notes)


def test_unit_change_in_one_feature_is_flagged_with_its_ratio(world, serve, last_days) -> None:  # type: ignore[no-untyped-def]
    km = world.served[last_days].copy()
    km[:, NAMES.index("distance")] *= 1.609344  # the serving path converted miles to km
    serve(last_days, km)
    result = _check(world)
    assert not result.passed
    assert result.flagged == ["distance"]
    distance = result.finding("distance")
    assert distance.metrics["mismatch_rate"] == 1.0
    assert "1.609" in distance.message
    example = distance.examples[0]
    assert np.isclose(example["served"], example["offline"] * 1.609344)
    request = next(r["request"] for r in load_records() if r["request_id"] == example["request_id"])
    assert example["keys"] == {"carrier": request["carrier"], "origin": request["origin"]}
    assert example["sched_ts"] == request["sched_ts"]


def test_examples_of_a_custom_feature_set_name_its_own_keys() -> None:
    """No flight field is assumed: a feature set keyed by ``k`` labels its examples by ``k``."""
    source = EventSource("ev", "ts", ("k",), ("v",))
    fs = FeatureSet("toy", "rt", (source,), (WindowFeature("n", "ev", "k", "v", "count", 600),), ("rt", "k"))
    events = pd.DataFrame({"event_id": ["a", "b"], "ts": [100, 200], "k": "x", "v": 1.0})
    records = [
        {"request_id": "r1", "request": {"rt": 500, "k": "x"}, "features": {"n": 2.0}},
        {"request_id": "r2", "request": {"rt": 500, "k": "x"}, "features": {"n": 3.0}},  # skewed
    ]
    result = check_features(records, feature_set=fs, sources={"ev": events}, recompute_predictions=False)
    finding = result.finding("n")
    assert finding.metrics["mismatches"] == 1
    assert finding.examples == [
        {"request_id": "r2", "pattern": None, "keys": {"k": "x"}, "rt": 500, "served": 3.0, "offline": 2.0}
    ]


def test_window_that_sees_the_future_is_flagged(world, serve, last_days) -> None:  # type: ignore[no-untyped-def]
    # The serving path aggregates the origin's last hour at processing time, 30 min after the
    # scheduled time: it sees departures after t, the flight's own departure included.
    late = world.requests.iloc[last_days].copy()
    late["sched_ts"] = late["sched_ts"] + 1800
    from shared.consistency import replay_serving

    leaked = world.served[last_days].copy()
    j = NAMES.index("origin_dep_delay_1h")
    leaked[:, j] = replay_serving(late, world.sources)[:, j]
    serve(last_days, leaked)
    result = _check(world)
    assert result.flagged == ["origin_dep_delay_1h"]
    finding = result.finding("origin_dep_delay_1h")
    assert 0.5 < finding.metrics["mismatch_rate"] <= 1.0
    assert finding.examples and all(e["served"] != e["offline"] for e in finding.examples)


def test_stale_aggregates_flag_exactly_the_window_features(world, serve, last_days) -> None:  # type: ignore[no-untyped-def]
    # The departures stream lags two hours behind; weather is on time.
    serve(last_days, world.replay(last_days, lag_seconds={"departures": 2 * 3600}))
    result = _check(world)
    assert sorted(result.flagged) == sorted(WINDOW_FEATURES)
    counts = result.finding("carrier_dep_count_1h")
    # Missing recent departures: serving counts fewer than offline.
    assert all(e["served"] < e["offline"] for e in counts.examples)
    assert result.finding("prediction").status == "pass"


def test_served_predictions_that_do_not_match_the_model_are_flagged(world, serve, last_days) -> None:  # type: ignore[no-untyped-def]
    serve(last_days, prediction=lambda p: np.round(p, 2))  # a path that rounded its output
    result = _check(world)
    assert result.flagged == ["prediction"]
    assert 0.0 < result.finding("prediction").metrics["max_abs_diff"] <= 0.005


def test_no_logs_is_reported_as_not_run(world, home) -> None:  # type: ignore[no-untyped-def]
    result = _check(world)
    assert result.status == "not_run"
    assert result.not_run_reason and "no prediction-log records" in result.not_run_reason
    assert result.passed  # not run is not failed; the report's strict mode turns it into a failure


def test_traffic_served_by_a_model_of_other_features_is_flagged(world, serve, home, last_days) -> None:  # type: ignore[no-untyped-def]
    import json

    serve(last_days)
    manifest = home / "registry" / world.model.version / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["feature_fingerprint"] = "another-feature-set"  # as if trained on other definitions
    manifest.write_text(json.dumps(doc))
    result = _check(world)
    assert result.flagged == ["prediction"]
    assert "other feature definitions" in result.finding("prediction").message


def test_traffic_the_check_cannot_recompute_is_a_row_that_fails_a_strict_gate(
    world, serve, last_days
) -> None:  # type: ignore[no-untyped-def]
    """Records of a version the registry lacks (a server logging a label it does not run) and
    records whose log lost a request field are rows of their own, not notes: a whole pattern
    could otherwise go unchecked under a passing strict gate."""
    half = len(last_days) // 2
    serve(last_days[:half])
    serve(last_days[half:], version="v9")
    serve(np.arange(40), pattern="rest_api", drop_fields=("sched_ts",))
    result = _check(world)
    unregistered = result.finding("prediction (unregistered)")
    assert unregistered.status == "not_run" and unregistered.metrics["n"] == len(last_days) - half
    assert "v9" in unregistered.message
    lacking = result.finding("request fields")
    assert lacking.status == "not_run" and lacking.metrics["skipped"] == 40
    assert "sched_ts" in lacking.message
    assert result.finding("prediction").status == "pass"
    assert result.finding("prediction").metrics["n"] == half
    assert result.passed and not ConsistencyReport([result], strict=True).passed


def test_a_near_one_ratio_is_not_reported_as_a_unit_change(world, serve, last_days) -> None:  # type: ignore[no-untyped-def]
    rounded = world.served[last_days].copy()
    j = NAMES.index("distance")
    rounded[:, j] *= 1.0001  # beyond the tolerance, but no unit is 1.0001 of another
    serve(last_days, rounded)
    message = _check(world).finding("distance").message
    assert "unit" not in message and "served > offline in 100% of mismatches" in message
