"""The framework-free glue (``FlightDelayService``), the request decoder, the loader and the CLI."""

from __future__ import annotations

import asyncio
import calendar
import dataclasses
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from patterns.__main__ import main
from patterns.rest_api.loader import parse_until
from patterns.rest_api.schemas import InputError, decode_flight
from patterns.rest_api.service import FlightDelayService, build_store
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import EmbeddedStore, OfflineExecutor, OnlineExecutor, StreamingExecutor
from shared.predictor import Predictor
from shared.predlog import PredictionLog, iter_records
from shared.registry import FingerprintMismatch, ModelVersion, Registry
from tests.conftest import PrivateRedis, register_copy

CUTOFF = "2013-03-10T10:00"  # the morning clocks went forward in New York


def _hour_before(until: int) -> Any:
    flights = load_flights((3,))
    return flights[(flights["sched_ts"] >= until - 3600) & (flights["sched_ts"] < until)]


def test_service_without_a_web_framework_matches_offline(
    rest_model: ModelVersion, rest_payload: Callable[[Any], dict[str, Any]]
) -> None:
    """History loaded up to T answers flights scheduled in [T - 1 h, T + 1 h) exactly (their feature
    time is an hour earlier); one scheduled later already misses events the store has not seen."""
    until = parse_until(CUTOFF)
    store = EmbeddedStore()
    events = event_sources()
    StreamingExecutor(FLIGHT_FEATURES, store).observe_history(events, until)
    service = FlightDelayService(Predictor(rest_model, FLIGHT_FEATURES.fingerprint()), store, slot="blue")
    march = load_flights((3,))
    flights = march[(march["sched_ts"] >= until - 3600) & (march["sched_ts"] < until + 3600)]
    assert (flights["sched_ts"] > until).sum() > 10 and (flights["sched_ts"] < until).sum() > 10
    offline = OfflineExecutor(FLIGHT_FEATURES).compute(flights, events).to_numpy()
    expected = service.predictor.predict_proba(offline)
    for i, (_, row) in enumerate(flights.iterrows()):
        answer = service.handle(rest_payload(row), explain=True)
        assert answer["request_id"] == row["flight_id"] and answer["model_version"] == "v1"
        got = [
            np.nan if answer["features"][n] is None else answer["features"][n] for n in FLIGHT_FEATURES.names
        ]
        np.testing.assert_array_equal(got, offline[i])
        assert answer["probability"] == expected[i]
    later = march[(march["sched_ts"] >= until + 3600) & (march["sched_ts"] < until + 7200)]
    missed = OfflineExecutor(FLIGHT_FEATURES).compute(later, events)["origin_dep_count_1h"].to_numpy()
    served = [service.handle(rest_payload(row), explain=True)["features"] for _, row in later.iterrows()]
    assert (np.array([f["origin_dep_count_1h"] for f in served]) < missed).any()
    assert service.ready() and service.info()["slot"] == "blue"
    service.close()


@pytest.fixture
def unix_redis() -> Iterator[str]:
    """A Redis of this test alone, listening on a unix socket only: its ``unix://`` URL."""
    folder = Path(tempfile.mkdtemp(prefix="mlp-redis-"))  # short: a socket path has ~100 bytes
    server = PrivateRedis.on_unix_socket(folder)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def test_a_redis_on_a_unix_socket_serves_the_same_features(unix_redis: str) -> None:
    """``build_store`` keeps a ``unix://`` URL intact (it adds timeouts to the query)."""
    until = parse_until(CUTOFF)
    events = event_sources()
    embedded, redis = EmbeddedStore(), build_store("redis", unix_redis)
    for store in (embedded, redis):
        StreamingExecutor(FLIGHT_FEATURES, store).observe_history(events, until)
    requests = [decode_flight({**row, "sched_ts": int(row["sched_ts"])}) for row in _requests(until)]
    expected = OnlineExecutor(FLIGHT_FEATURES, embedded).matrix(requests)
    online = OnlineExecutor(FLIGHT_FEATURES, redis)
    assert redis.ping()
    np.testing.assert_array_equal(online.matrix(requests), expected)
    np.testing.assert_array_equal(asyncio.run(online.matrix_async(requests)), expected)


def _requests(until: int) -> list[dict[str, Any]]:
    fields = ["carrier", "flight", "origin", "dest", "distance", "sched_ts"]
    rows = _hour_before(until)[fields].itertuples(index=False)
    return [dict(zip(fields, row, strict=True)) for row in rows]


def test_hooks_can_be_overridden(rest_model: ModelVersion, rest_requests: list[dict[str, Any]]) -> None:
    class Thresholded(FlightDelayService):
        def encode_response(self, prediction: Any, explain: bool = False) -> dict[str, Any]:
            return super().encode_response(prediction) | {"delayed": prediction.probability >= 0.5}

    service = Thresholded(Predictor(rest_model), EmbeddedStore())
    answer = service.handle(rest_requests[0])
    assert answer["delayed"] == (answer["probability"] >= 0.5)


def test_decoder_derives_the_same_times_as_the_dataset() -> None:
    flights = load_flights().sample(3000, random_state=0)
    fields = ("year", "month", "day", "hour", "minute")
    for _, row in flights.iterrows():
        base = {k: row[k] for k in ("carrier", "origin", "dest")} | {
            "flight": int(row["flight"]),
            "distance": float(row["distance"]),
        }
        from_local = decode_flight(base | {k: int(row[k]) for k in fields})
        from_ts = decode_flight(base | {"sched_ts": int(row["sched_ts"])})
        assert from_local == from_ts
        assert from_local["sched_ts"] == row["sched_ts"] and from_ts["hour"] == row["hour"]
        assert set(from_local) == set(FLIGHT_FEATURES.request_fields)


def _local_flight(hour: int, minute: int, month: int, day: int) -> dict[str, Any]:
    base = {"carrier": "UA", "flight": 1, "origin": "EWR", "dest": "IAH", "distance": 1400.0}
    return base | {"year": 2013, "month": month, "day": day, "hour": hour, "minute": minute}


def test_a_local_time_the_clocks_skipped_is_refused() -> None:
    """2013-03-10 02:30 never happened in New York; it used to score as 03:30 EDT with hour=2."""
    with pytest.raises(InputError) as caught:
        decode_flight(_local_flight(2, 30, 3, 10), "flights[1].")
    assert caught.value.field == "flights[1].hour"
    assert "does not exist in America/New_York (clocks moved forward)" in caught.value.message
    after = decode_flight(_local_flight(3, 30, 3, 10))
    assert after["sched_ts"] == calendar.timegm((2013, 3, 10, 7, 30, 0)) and after["hour"] == 3
    # The autumn fold stays accepted: 01:30 on 3 November is its first instant (EDT).
    fold = decode_flight(_local_flight(1, 30, 11, 3))
    assert fold["sched_ts"] == calendar.timegm((2013, 11, 3, 5, 30, 0)) and fold["hour"] == 1


def test_a_failed_prediction_log_write_drops_its_rows_and_keeps_logging(
    rest_model: ModelVersion, rest_requests: list[dict[str, Any]], tmp_path: Path
) -> None:
    class DiskFullOnce(PredictionLog):
        calls = 0

        def write_many(self, rows: Sequence[Any], *, model_version: str) -> None:
            DiskFullOnce.calls += 1
            if DiskFullOnce.calls == 1:
                raise OSError(28, "No space left on device")
            super().write_many(rows, model_version=model_version)

    service = FlightDelayService(
        Predictor(rest_model), EmbeddedStore(), log=DiskFullOnce("rest_api", tmp_path)
    )
    first, second = (decode_flight(r) for r in rest_requests[:2])
    writer = service._log
    assert writer is not None
    service.score([first], ["lost"])
    assert service.flush_log(timeout=5) is False  # a row is missing...
    # ... and the failed batch was handled (counted as written), not waited on until the timeout.
    assert (writer._written, writer._queued, writer.dropped_rows, DiskFullOnce.calls) == (1, 1, 1, 1)
    service.score([second], ["kept"])
    assert service.flush_log(timeout=5) is False  # still: the log misses "lost" for good
    assert (writer._written, writer._queued, writer.dropped_rows, DiskFullOnce.calls) == (2, 2, 1, 2)
    # The writer kept going: "kept" is on disk before close.
    assert [r["request_id"] for r in iter_records("rest_api", root=tmp_path)] == ["kept"]
    service.close()
    assert [r["request_id"] for r in iter_records("rest_api", root=tmp_path)] == ["kept"]


def test_a_service_on_its_own_feature_set_refuses_other_models_and_logs_its_own_names(
    rest_model: ModelVersion,
    rest_requests: list[dict[str, Any]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A service built around another feature set (here the flight features in reverse order)
    refuses a model trained on the flight ones, loads one registered for its own through
    ``from_config``, and logs each row under its own feature names, in the order the model saw."""
    reordered = dataclasses.replace(
        FLIGHT_FEATURES, name="flight_delay_reversed", features=tuple(reversed(FLIGHT_FEATURES.features))
    )
    with pytest.raises(FingerprintMismatch, match="flight_delay_reversed"):
        FlightDelayService(Predictor(rest_model), EmbeddedStore(), feature_set=reordered)
    registry = Registry(tmp_path / "models")
    register_copy(
        registry,
        rest_model,
        feature_set=reordered.name,
        feature_fingerprint=reordered.fingerprint(),
        feature_names=reordered.names,
    )
    with pytest.raises(FingerprintMismatch):  # the default feature set is still the flight one
        FlightDelayService.from_config(store="embedded", registry=registry, log=False)
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path))  # where from_config's prediction log goes
    service = FlightDelayService.from_config(store="embedded", registry=registry, feature_set=reordered)
    requests = [decode_flight(r) for r in rest_requests[:5]]
    matrix = service.features(requests)
    service.score(requests, [f"r{i}" for i in range(5)])
    assert service.flush_log(timeout=5)
    records = list(iter_records("rest_api"))
    assert [r["request_id"] for r in records] == [f"r{i}" for i in range(5)]
    for record, row in zip(records, matrix, strict=True):
        assert list(record["features"]) == reordered.names
        logged = [np.nan if v is None else v for v in record["features"].values()]
        np.testing.assert_array_equal(logged, row)
    service.close()


def test_decoder_names_the_field_in_a_batch() -> None:
    with pytest.raises(InputError) as caught:
        decode_flight({"carrier": "UA"}, "flights[3].")
    assert caught.value.field == "flights[3].flight"


def test_parse_until_reads_dates_as_new_york_time() -> None:
    assert parse_until("2013-06-01") == calendar.timegm((2013, 6, 1, 4, 0, 0))  # EDT = UTC-4
    assert parse_until("2013-01-01T08:30") == calendar.timegm((2013, 1, 1, 13, 30, 0))  # EST = UTC-5
    assert parse_until("2013-01-01T08:30:00+00:00") == calendar.timegm((2013, 1, 1, 8, 30, 0))
    with pytest.raises(ValueError):
        parse_until("June 1st")


def test_load_features_cli_materialises_exact_features_in_redis(
    new_rest_store: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    info = new_rest_store()
    monkeypatch.setenv("MLPATTERNS_REDIS_URL", info.url)
    result = CliRunner().invoke(
        main, ["rest", "load-features", "--until", CUTOFF, "--redis-prefix", info.prefix, "--clear"]
    )
    assert result.exit_code == 0, result.output
    assert "departures" in result.output and "weather" in result.output
    store = build_store("redis", info.url, info.prefix)
    flights = _hour_before(parse_until(CUTOFF))
    requests = flights[list(FLIGHT_FEATURES.request_fields)].to_dict("records")
    online = OnlineExecutor(FLIGHT_FEATURES, store).matrix(requests)
    offline = OfflineExecutor(FLIGHT_FEATURES).compute(flights, event_sources()).to_numpy()
    np.testing.assert_array_equal(online, offline)


def test_cli_help_explains_the_commands() -> None:
    runner = CliRunner()
    for args in (["rest", "--help"], ["rest", "serve", "--help"], ["rest", "load-features", "--help"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, result.output
    serve_help = runner.invoke(main, ["rest", "serve", "--help"]).output
    for flag in ("--version", "--port", "--store", "--slot", "--admin-token", "MLPATTERNS_MODEL_VERSION"):
        assert flag in serve_help
    # Each bad date names its own option.
    for args, option in (
        (["rest", "load-features", "--until", "someday"], "--until"),
        (["rest", "load-features", "--until", "2013-06-01", "--since", "someday"], "--since"),
        (["rest", "serve", "--store", "embedded", "--preload-until", "tomorrow"], "--preload-until"),
    ):
        bad = runner.invoke(main, args)
        assert bad.exit_code == 2 and f"Invalid value for {option}:" in bad.output, bad.output


def test_a_naive_iso_time_the_clocks_skipped_is_refused() -> None:
    from patterns.rest_api.schemas import InputError, parse_time

    with pytest.raises(InputError, match="does not exist in America/New_York"):
        parse_time("2013-03-10T02:30:00")
    assert parse_time("2013-03-10T03:30:00").hour == 3  # the first hour after the change is fine
    assert parse_time("2013-11-03T01:30:00").fold == 0  # the autumn fold: the first instant
