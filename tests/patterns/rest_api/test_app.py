"""The REST app end to end, over HTTP against a real uvicorn process and a real Redis."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from patterns.rest_api.loader import parse_until
from patterns.rest_api.service import build_store
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import OfflineExecutor, StreamingExecutor
from shared.predictor import Predictor
from shared.predlog import iter_records
from shared.registry import ModelVersion

#: A February day (the models saw January only); a Thursday with ~950 flights.
DAY = "2013-02-14"
RestApp = Any
RestStore = Any

NAMES = FLIGHT_FEATURES.names


def _features(body: dict[str, Any]) -> np.ndarray:
    return np.array([math.nan if body["features"][n] is None else body["features"][n] for n in NAMES])


def test_predictions_equal_offline_features_and_onnx_for_a_day_of_flights(
    start_rest_app: Callable[..., RestApp],
    new_rest_store: Callable[[], RestStore],
    rest_payload: Callable[[Any], dict[str, Any]],
    rest_model: ModelVersion,
    rest_home: Path,
) -> None:
    """Replay a day hour by hour like a stream; every flight's features and score match offline."""
    store_info = new_rest_store()
    store = build_store("redis", store_info.url, store_info.prefix)
    app = start_rest_app(store_info, slot="green")
    executor = StreamingExecutor(FLIGHT_FEATURES, store)
    events = event_sources()
    flights = load_flights((2,))
    day = flights[flights["flight_id"].str.startswith(DAY.replace("-", ""))]
    offline = OfflineExecutor(FLIGHT_FEATURES).compute(day, events).to_numpy()
    expected_p = Predictor(rest_model, FLIGHT_FEATURES.fingerprint()).predict_proba(offline)
    row_of = {fid: i for i, fid in enumerate(day["flight_id"])}
    start = parse_until(DAY)
    served: dict[str, dict[str, Any]] = {}
    with httpx.Client(base_url=app.url, timeout=30) as client:
        for hour in range(24):
            lo, hi = start + hour * 3600, start + (hour + 1) * 3600
            executor.observe_history(events, hi, None if hour == 0 else lo)
            batch = day[(day["sched_ts"] >= lo) & (day["sched_ts"] < hi)]
            if batch.empty:
                continue
            response = client.post(
                "/predict?explain=true", json={"flights": [rest_payload(r) for _, r in batch.iterrows()]}
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["model_version"] == "v1"
            for p in body["predictions"]:
                served[p["request_id"]] = p
        flushed = client.post("/admin/flush-log", headers=app.admin_headers)
        assert flushed.json() == {"flushed": True}
    assert set(served) == set(day["flight_id"]) and len(served) > 500
    for fid, p in served.items():
        i = row_of[fid]
        np.testing.assert_array_equal(_features(p), offline[i], err_msg=fid)
        assert p["probability"] == expected_p[i], fid
    logged = {r["request_id"]: r for r in iter_records("rest_api", root=rest_home / "logs")}
    for fid, p in served.items():
        record = logged[fid]
        assert record["model_version"] == "v1" and record["prediction"] == p["probability"]
        assert record["request"]["sched_ts"] == int(day.iloc[row_of[fid]]["sched_ts"])
        np.testing.assert_array_equal([record["features"][n] for n in NAMES], offline[row_of[fid]])


def test_the_three_departure_forms_give_the_same_answer(rest_app: RestApp, rest_requests: list[dict]) -> None:
    base = dict(rest_requests[0])
    sched_ts = base.pop("sched_ts")
    flights = load_flights((2,))
    row = flights[flights["flight_id"] == base["request_id"]].iloc[0]
    local = {k: int(row[k]) for k in ("year", "month", "day", "hour", "minute")}
    iso = "{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}".format(**local)
    forms = [
        {"sched_ts": sched_ts},
        local,
        {"scheduled_departure": iso + ":00-05:00"},  # February: New York is UTC-5
        {"scheduled_departure": iso},  # naive = New York local
        {"scheduled_departure": np.datetime_as_string(np.datetime64(sched_ts, "s")) + "Z"},
        local | {"sched_ts": sched_ts, "scheduled_departure": iso + ":00-05:00"},
    ]
    answers = []
    for form in forms:
        r = httpx.post(rest_app.url + "/predict", json=base | form, params={"explain": "true"})
        assert r.status_code == 200, (form, r.text)
        answers.append(r.json())
    assert len({a["probability"] for a in answers}) == 1
    assert all(a["features"] == answers[0]["features"] for a in answers)
    assert answers[0]["features"]["hour"] == local["hour"] and answers[0]["request_id"] == base["request_id"]


def test_unknown_codes_are_accepted_and_encoded_minus_one(
    rest_app: RestApp, rest_requests: list[dict]
) -> None:
    body = rest_requests[0] | {"carrier": "ZZ", "dest": "XYZ", "origin": "BOS", "explain": True}
    r = httpx.post(rest_app.url + "/predict", json=body)
    assert r.status_code == 200, r.text
    features = r.json()["features"]
    assert features["carrier"] == features["dest"] == features["origin"] == -1.0
    assert 0.0 <= r.json()["probability"] <= 1.0


def _flight(rest_requests: list[dict]) -> dict[str, Any]:
    return {k: v for k, v in rest_requests[0].items() if k != "request_id"}


BAD_FLIGHTS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("missing carrier", lambda f: {k: v for k, v in f.items() if k != "carrier"}, "carrier"),
    ("missing time", lambda f: {k: v for k, v in f.items() if k != "sched_ts"}, "year"),
    (
        "partial local time",
        lambda f: {k: v for k, v in f.items() if k != "sched_ts"} | {"year": 2013},
        "month",
    ),
    ("carrier not a string", lambda f: f | {"carrier": 7}, "carrier"),
    ("empty carrier", lambda f: f | {"carrier": ""}, "carrier"),
    ("distance as a string", lambda f: f | {"distance": "1400"}, "distance"),
    ("negative distance", lambda f: f | {"distance": -5}, "distance"),
    ("distance NaN", lambda f: f | {"distance": math.nan}, "distance"),
    ("distance beyond a float", lambda f: f | {"distance": 10**400}, "distance"),
    ("flight not an integer", lambda f: f | {"flight": 15.5}, "flight"),
    ("flight a boolean", lambda f: f | {"flight": True}, "flight"),
    ("sched_ts a string", lambda f: f | {"sched_ts": "1360000000"}, "sched_ts"),
    (
        "bad ISO date",
        lambda f: f | {"scheduled_departure": "2013-02-30T08:00:00-05:00"},
        "scheduled_departure",
    ),
    ("ISO year 1", lambda f: f | {"scheduled_departure": "0001-01-01T00:00:00+14:00"}, "scheduled_departure"),
    (
        "ISO year 9999",
        lambda f: f | {"scheduled_departure": "9999-12-31T23:59:59-14:00"},
        "scheduled_departure",
    ),
    ("ISO before 1970", lambda f: f | {"scheduled_departure": "1960-01-01T00:00:00"}, "scheduled_departure"),
    ("sched_ts after 2100", lambda f: f | {"sched_ts": 10**12}, "sched_ts"),
    ("ISO not a string", lambda f: f | {"scheduled_departure": 1360000000}, "scheduled_departure"),
    (
        "February 30",
        lambda f: {k: v for k, v in f.items() if k != "sched_ts"} | _local(2013, 2, 30, 8, 0),
        "day",
    ),
    (
        "month 13",
        lambda f: {k: v for k, v in f.items() if k != "sched_ts"} | _local(2013, 13, 1, 8, 0),
        "month",
    ),
    (
        "hour 24",
        lambda f: {k: v for k, v in f.items() if k != "sched_ts"} | _local(2013, 2, 1, 24, 0),
        "hour",
    ),
    ("hour disagrees with sched_ts", lambda f: f | {"hour": 3}, "hour"),
    ("body is an array of numbers", lambda f: [1, 2], "flights[0]"),
    ("body is a string", lambda f: "UA1545", "flights"),
    ("empty batch", lambda f: {"flights": []}, "flights"),
    ("flights not an array", lambda f: {"flights": f}, "flights"),
    ("bad second flight", lambda f: {"flights": [f, f | {"distance": None}]}, "flights[1].distance"),
    ("explain not a boolean", lambda f: f | {"explain": "yes"}, "explain"),
    # One explain flag answers a whole batch: per flight it would be silently ignored.
    ("explain in an array's flight", lambda f: [f, f | {"explain": True}], "flights[1].explain"),
    ("explain in a batch's flight", lambda f: {"flights": [f | {"explain": "x"}]}, "flights[0].explain"),
    ("origin naming a store key", lambda f: f | {"origin": "EWR:cum"}, "origin"),
    ("carrier with a space", lambda f: f | {"carrier": "U A"}, "carrier"),
    ("dest with an equals sign", lambda f: f | {"dest": "IAH=x"}, "dest"),
    ("request_id not a string", lambda f: f | {"request_id": 5}, "request_id"),
]


def _local(year: int, month: int, day: int, hour: int, minute: int) -> dict[str, int]:
    return {"year": year, "month": month, "day": day, "hour": hour, "minute": minute}


@pytest.mark.parametrize(("case", "make", "field"), BAD_FLIGHTS, ids=[c[0] for c in BAD_FLIGHTS])
def test_bad_input_is_a_4xx_naming_the_field(
    rest_app: RestApp, rest_requests: list[dict], case: str, make: Callable[[dict], Any], field: str
) -> None:

    r = httpx.post(rest_app.url + "/predict", content=json.dumps(make(_flight(rest_requests))))
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    body = r.json()
    assert body["field"] == field, body
    assert field.split(".")[-1].split("[")[0] in body["error"], body


def test_explain_is_a_boolean_of_the_query_or_the_batch(rest_app: RestApp, rest_requests: list[dict]) -> None:
    flight, url = _flight(rest_requests), rest_app.url + "/predict"
    for value in ("maybe", "", "2"):
        r = httpx.post(url, json=flight, params={"explain": value})
        assert r.status_code == 422 and r.json()["field"] == "explain", (value, r.text)
    for value, explained in (("false", False), ("0", False), ("off", False), ("TRUE", True), ("1", True)):
        r = httpx.post(url, json=flight, params={"explain": value})
        assert r.status_code == 200 and ("features" in r.json()) == explained, (value, r.text)
    r = httpx.post(url, json={"flights": [flight, flight], "explain": True})
    assert r.status_code == 200 and all("features" in p for p in r.json()["predictions"]), r.text
    r = httpx.post(url, json=[flight], params={"explain": "true"})
    assert r.status_code == 200 and "features" in r.json()["predictions"][0], r.text


@pytest.mark.parametrize("body", [b"not json", b"{", b"", b"\xff\xfe"])
def test_a_body_that_is_not_json_is_a_400(rest_app: RestApp, body: bytes) -> None:
    r = httpx.post(rest_app.url + "/predict", content=body, headers={"content-type": "text/plain"})
    assert r.status_code == 400 and r.json()["field"] == "body", r.text


def test_unknown_paths_and_methods_answer_json_errors(rest_app: RestApp) -> None:
    r = httpx.get(rest_app.url + "/nope")
    assert r.status_code == 404 and "error" in r.json()
    r = httpx.get(rest_app.url + "/predict")
    assert r.status_code == 405 and "error" in r.json()


def test_metrics_count_requests_errors_and_latency_by_version_and_endpoint(
    rest_app: RestApp, rest_requests: list[dict]
) -> None:
    def value(text: str, name: str, **labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = httpx.get(rest_app.url + "/metrics").text
    for body in rest_requests[:5]:
        assert httpx.post(rest_app.url + "/predict", json=body).status_code == 200
    assert httpx.post(rest_app.url + "/predict", json={"carrier": "UA"}).status_code == 422
    after = httpx.get(rest_app.url + "/metrics")
    assert after.status_code == 200 and after.headers["content-type"].startswith("text/plain")
    text = after.text
    labels = {"endpoint": "predict", "model_version": "v1"}
    assert (
        value(text, "mlpatterns_rest_requests_total", **labels)
        - value(before, "mlpatterns_rest_requests_total", **labels)
        == 6
    )
    assert (
        value(text, "mlpatterns_rest_errors_total", status="422", **labels)
        - value(before, "mlpatterns_rest_errors_total", status="422", **labels)
        == 1
    )

    def delta(name: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    assert delta("mlpatterns_rest_latency_seconds_count") == 6  # every request, refused or not
    assert delta("mlpatterns_rest_latency_seconds_sum") > 0
    assert delta("mlpatterns_rest_predictions_total") == 5  # one flight per successful request
    assert value(text, "mlpatterns_rest_model_info", model_version="v1", slot="blue") == 1


def test_admin_endpoints_need_the_token(rest_app: RestApp, rest_model: ModelVersion) -> None:
    assert httpx.get(rest_app.url + "/admin/info").status_code == 401
    assert (
        httpx.get(rest_app.url + "/admin/info", headers={"Authorization": "Bearer wrong"}).status_code == 403
    )
    info = httpx.get(rest_app.url + "/admin/info", headers={"X-Admin-Token": rest_app.admin_token or ""})
    assert info.status_code == 200
    assert info.json() | {"ready": True} == info.json()
    assert info.json()["model_version"] == "v1" and info.json()["slot"] == "blue"
    assert (
        info.json()["feature_fingerprint"] == rest_model.feature_fingerprint == FLIGHT_FEATURES.fingerprint()
    )
    assert httpx.post(rest_app.url + "/admin/score", json={"features": [[0.0] * 25]}).status_code == 401


def test_admin_score_reproduces_the_golden_set(rest_app: RestApp, rest_model: ModelVersion) -> None:
    inputs, expected = rest_model.golden_set()
    r = httpx.post(
        rest_app.url + "/admin/score",
        json={"features": [[None if math.isnan(v) else float(v) for v in row] for row in inputs.tolist()]},
        headers=rest_app.admin_headers,
    )
    assert r.status_code == 200, r.text
    np.testing.assert_allclose(r.json()["probabilities"], expected, rtol=0, atol=1e-6)
    bad = httpx.post(
        rest_app.url + "/admin/score", json={"features": [[1.0, 2.0]]}, headers=rest_app.admin_headers
    )
    assert bad.status_code == 422 and bad.json()["field"] == "features"
    huge = httpx.post(
        rest_app.url + "/admin/score",
        content=json.dumps({"features": [[10**400] + [0.0] * (inputs.shape[1] - 1)]}),
        headers=rest_app.admin_headers,
    )
    assert huge.status_code == 422 and huge.json() == {"error": "must be finite numbers", "field": "features"}


def test_admin_window_counts_scoring_calls_since_reset(rest_app: RestApp, rest_requests: list[dict]) -> None:
    headers = rest_app.admin_headers
    assert httpx.post(rest_app.url + "/admin/window/reset", headers=headers).status_code == 200
    scores = [httpx.post(rest_app.url + "/predict", json=b).json()["probability"] for b in rest_requests[:4]]
    window = httpx.get(rest_app.url + "/admin/window", headers=headers).json()
    assert window["requests"] == 4 and window["errors"] == 0 and window["p99_ms"] > 0
    assert window["predictions"] == scores


def test_admin_is_disabled_without_a_configured_token(
    start_rest_app: Callable[..., RestApp], rest_store: RestStore
) -> None:
    app = start_rest_app(rest_store, admin_token=None, extra_args=("--no-log",))
    try:
        r = httpx.get(app.url + "/admin/info", headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "disabled" in r.json()["error"]
        assert httpx.get(app.url + "/v2/health/ready").json() == {"ready": True}
    finally:
        app.stop()


def test_readiness_fails_and_predict_is_503_when_the_store_is_down(
    start_rest_app: Callable[..., RestApp],
    rest_store: RestStore,
    rest_requests: list[dict],
    rest_free_port: Callable[[], int],
) -> None:
    closed = f"redis://127.0.0.1:{rest_free_port()}/0"
    app = start_rest_app(rest_store, redis_url=closed, slot="green", extra_args=("--no-log",))
    try:
        assert httpx.get(app.url + "/v2/health/live").json() == {"live": True}
        ready = httpx.get(app.url + "/v2/health/ready")
        assert ready.status_code == 503 and ready.json() == {"ready": False}
        assert httpx.get(app.url + "/v2/models/flight_delay/ready").status_code == 503
        r = httpx.post(app.url + "/predict", json=rest_requests[0])
        assert r.status_code == 503 and "feature store" in r.json()["error"]
        info = httpx.get(app.url + "/admin/info", headers=app.admin_headers).json()
        assert info["ready"] is False
    finally:
        app.stop()


def test_noop_baseline_and_api_docs(rest_app: RestApp) -> None:
    assert httpx.get(rest_app.url + "/noop").json() == {"ok": True}
    assert httpx.post(rest_app.url + "/noop", content=b"{}").json() == {"ok": True}
    spec = httpx.get(rest_app.url + "/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    one, batch, array = body["oneOf"]
    assert {"carrier", "distance", "scheduled_departure", "explain"} <= set(one["properties"])
    # explain is the batch's (top level or the query), never a batch item's.
    assert "explain" in batch["properties"] and "explain" not in batch["properties"]["flights"]["items"]
    assert "explain" not in array["items"]["properties"] and "distance" in array["items"]["properties"]
    operations = [op["operationId"] for methods in spec["paths"].values() for op in methods.values()]
    assert len(operations) == len(set(operations)) and {"get", "post"} <= set(spec["paths"]["/noop"])
    assert {"/v2/models/{name}/infer", "/metrics", "/admin/info"} <= set(spec["paths"])
    docs = httpx.get(rest_app.url + "/docs")
    assert docs.status_code == 200 and re.search(r"swagger", docs.text, re.I)
