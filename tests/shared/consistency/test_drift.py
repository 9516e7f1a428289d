"""Distribution skew: a shifted serving population is flagged by the drift check, and only there."""

from __future__ import annotations

import numpy as np

from shared.consistency import check_drift, check_features, load_records, load_thresholds
from shared.example.flights import CARRIERS, DESTS, FLIGHT_FEATURES

SERVED_DAYS = tuple(range(25, 32))  # the days the world serves (conftest)
POPULATION = {"hour", "carrier", "origin", "dest", "distance"}  # the features gated by default


def _drift(world):  # type: ignore[no-untyped-def]
    return check_drift(load_records(), world.model, training=world.training)


def test_a_week_of_normal_traffic_passes(world, serve) -> None:  # type: ignore[no-untyped-def]
    serve(np.arange(len(world.requests)))
    result = _drift(world)
    assert result.passed and result.flagged == []
    assert result.finding("hour").metrics["test"] == "distance"  # > 1000 rows: PSI / JS / L-inf
    assert result.finding("month").message.startswith("not measured")
    # The served week's weather is not January's: shown, but it does not gate.
    assert result.finding("wx_pressure").status == "warn"


def test_evening_only_population_flags_hour_and_the_destinations_flown_by_day(world, serve) -> None:  # type: ignore[no-untyped-def]
    evening = world.rows(world.requests["hour"] >= 17)
    assert len(evening) > 1000
    serve(evening)
    result = _drift(world)
    assert result.flagged == ["hour", "dest"]
    hour = result.finding("hour")
    assert hour.metrics["psi"] > 0.25 and hour.metrics["js"] > 0.1
    # Fort Myers (1.1 % of January) is flown by day: none of the served evenings goes there.
    dest = result.finding("dest").metrics
    assert DESTS[int(dest["share_at"])] == "RSW" and dest["share_serving"] == 0.0
    assert dest["linf"] < 0.1  # which L-inf alone would not have shown
    # The features themselves are right: the per-example check has nothing to say.
    assert check_features(load_records(), sources=world.sources).passed


def test_small_sample_uses_ks_and_still_finds_the_shift(world, serve) -> None:  # type: ignore[no-untyped-def]
    one_evening = world.rows((world.requests["day"] == 31) & (world.requests["hour"] >= 17))
    assert len(one_evening) <= 1000
    serve(one_evening)
    result = _drift(world)
    assert result.flagged == ["hour"]
    hour = result.finding("hour")
    assert hour.metrics["test"] == "small-sample" and hour.metrics["ks_p"] < 0.05


def test_one_carrier_population_flags_the_carrier(world, serve) -> None:  # type: ignore[no-untyped-def]
    ua = world.rows(world.requests["carrier"] == "UA")
    serve(ua)
    result = _drift(world)
    carrier = result.finding("carrier")
    assert carrier.status == "fail"
    assert carrier.metrics["linf_at"] == CARRIERS.index("UA")
    assert carrier.metrics["linf"] > 0.5
    # One airline also flies from its own hubs to its own destinations: those may move, but only
    # population features gate, and the carrier is the largest categorical shift.
    assert set(result.flagged) <= POPULATION
    categorical = [result.finding(n).metrics["linf"] for n in ("carrier", "origin", "dest")]
    assert max(categorical) == carrier.metrics["linf"]


def _records(world, rows: np.ndarray, features: np.ndarray | None = None) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    x = world.served[rows] if features is None else features
    return [{"features": dict(zip(FLIGHT_FEATURES.names, v.tolist(), strict=True))} for v in x]


def test_every_ordinary_day_alone_passes(world) -> None:  # type: ignore[no-untyped-def]
    """A day of traffic (~900 rows, the small-sample path) is not drift. Before the tests were
    corrected for the number of features and paired with the distances, a thousand rows made a
    point's change in the origin mix "significant" and most real days failed."""
    days = world.requests["day"].to_numpy()
    for day in SERVED_DAYS:
        rows = np.flatnonzero(days == day)
        assert 500 < len(rows) <= 1000
        result = check_drift(_records(world, rows), world.model, training=world.training)
        assert result.flagged == [], (day, [result.finding(n).message for n in result.flagged])
        assert result.finding("origin").metrics["test"] == "small-sample"


def test_a_feed_gone_missing_is_flagged_though_the_values_that_arrived_look_normal(world) -> None:  # type: ignore[no-untyped-def]
    j = FLIGHT_FEATURES.names.index("wx_visib")
    x = world.served.copy()
    x[np.random.default_rng(0).random(len(x)) < 0.6, j] = np.nan
    for rows in (np.arange(len(x)), np.flatnonzero(world.requests["day"].to_numpy() == 31)):
        finding = check_drift(_records(world, rows, x[rows]), world.model, training=world.training).finding(
            "wx_visib"
        )
        # Its values warn by default (the served week's weather), but a rise in the missing share
        # has its own action, and that fails: the feed went down.
        assert finding.status == "fail"
        assert finding.message.startswith("missing 6") and finding.metrics["missing_serving"] > 0.55
    # The same week with every value present: no word about missing values.
    clean = check_drift(_records(world, np.arange(len(x))), world.model, training=world.training)
    assert "missing" not in clean.finding("wx_visib").message
    # With the missing share's action set to warn (as the example's pressure has), it only warns.
    lenient = load_thresholds()
    lenient.data["drift"]["per_feature"]["wx_visib"]["missing_action"] = "warn"
    rows = np.arange(len(x))
    finding = check_drift(_records(world, rows, x), world.model, training=world.training, thresholds=lenient)
    assert finding.finding("wx_visib").status == "warn"


def test_fewer_missing_values_than_training_are_shown_not_gated(world) -> None:  # type: ignore[no-untyped-def]
    """A field missing more often in training than in serving is no feed gone down."""
    j = FLIGHT_FEATURES.names.index("wx_visib")
    training = world.training.copy()
    training.iloc[np.random.default_rng(1).random(len(training)) < 0.3, j] = np.nan
    result = check_drift(_records(world, np.arange(len(world.served))), world.model, training=training)
    finding = result.finding("wx_visib")
    assert finding.status == "warn" and finding.message.startswith("missing 0.0% vs 3")


def test_a_carrier_gone_from_serving_is_flagged_though_l_inf_stays_under_its_limit(world) -> None:  # type: ignore[no-untyped-def]
    """Envoy (MQ) flies 8 % of January: losing it moves no share by more than 0.1, so the L-inf
    limit passes it; the per-value test does not, for the week and for one day alone."""
    days = world.requests["day"].to_numpy()
    without_mq = world.requests["carrier"].to_numpy() != "MQ"
    for rows in (np.flatnonzero(without_mq), np.flatnonzero(without_mq & (days == 31))):
        carrier = check_drift(_records(world, rows), world.model, training=world.training).finding("carrier")
        assert carrier.status == "fail", carrier.metrics
        assert CARRIERS[int(carrier.metrics["share_at"])] == "MQ"
        assert carrier.metrics["share_serving"] == 0.0 and carrier.metrics["share_training"] > 0.07
        assert carrier.metrics["linf"] < 0.1
        assert carrier.message == (
            f"code {CARRIERS.index('MQ')}: 0.0% of serving vs {carrier.metrics['share_training']:.1%} "
            f"in training (binomial p = {carrier.metrics['share_p']:.2g})"
        )
