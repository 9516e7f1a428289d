"""No input makes the app answer 5xx: property tests over the in-process ASGI app (any store)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patterns.rest_api.app import create_app
from patterns.rest_api.service import FlightDelayService
from shared.features import EmbeddedStore
from shared.predictor import Predictor
from shared.registry import ModelVersion

VALID = {
    "carrier": "UA",
    "flight": 1545,
    "origin": "EWR",
    "dest": "IAH",
    "distance": 1400.0,
    "scheduled_departure": "2013-02-14T11:30:00-05:00",
}
FIELDS = [*VALID, "sched_ts", "year", "month", "day", "hour", "minute", "explain", "request_id", "flights"]
ISO = st.tuples(st.datetimes(), st.sampled_from(["", "Z", "+14:00", "-12:00", "-05:00"])).map(
    lambda t: t[0].isoformat() + t[1]
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30) | ISO,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def client(rest_model: ModelVersion) -> Iterator[TestClient]:
    service = FlightDelayService(Predictor(rest_model), EmbeddedStore())
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        yield c
    service.close()


def _check(response: Any) -> dict[str, Any]:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert isinstance(body["error"], str) and body["error"]
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4),
    drop=st.sets(st.sampled_from(list(VALID)), max_size=2),
)
def test_predict_never_fails_with_5xx(client: TestClient, changes: dict[str, Any], drop: set[str]) -> None:
    flight = {k: v for k, v in VALID.items() if k not in drop} | changes
    response = client.post("/predict", content=json.dumps(flight))
    body = _check(response)
    if response.status_code >= 400:
        assert response.status_code in (400, 422) and isinstance(body["field"], str)
    else:
        assert 0.0 <= body["probability"] <= 1.0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    name=st.sampled_from([*VALID, "sched_ts", "x"]),
    datatype=st.sampled_from(["BYTES", "INT64", "FP64", "FP32", "BOOL", 5]),
    shape=JSON,
    data=JSON,
    extra=st.dictionaries(st.sampled_from(["id", "outputs", "parameters", "inputs"]), JSON, max_size=2),
)
def test_v2_infer_never_fails_with_5xx(
    client: TestClient, name: str, datatype: Any, shape: Any, data: Any, extra: dict[str, Any]
) -> None:
    inputs = [
        {"name": k, "datatype": "BYTES" if isinstance(v, str) else "FP64", "shape": [1], "data": [v]}
        for k, v in VALID.items()
        if k != name
    ]
    inputs.append({"name": name, "datatype": datatype, "shape": shape, "data": data})
    _check(client.post("/v2/models/flight_delay/infer", content=json.dumps({"inputs": inputs} | extra)))


BINARY_INPUTS = ("carrier", "flight", "origin", "dest", "distance", "sched_ts")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    sizes=st.lists(st.integers(-2, 24) | JSON, min_size=len(BINARY_INPUTS), max_size=len(BINARY_INPUTS)),
    datatypes=st.lists(st.sampled_from(["BYTES", "INT64", "INT8", "FP64", "FP16", "UINT64"]), min_size=6),
    blob=st.binary(max_size=120),
    length=st.none() | st.integers(-3, 2000).map(str) | st.text("0123456789 +-x", max_size=4),
)
def test_v2_binary_infer_never_fails_with_5xx(
    client: TestClient, sizes: list[Any], datatypes: list[str], blob: bytes, length: str | None
) -> None:
    inputs = [
        {"name": name, "datatype": datatype, "shape": [1], "parameters": {"binary_data_size": size}}
        for name, datatype, size in zip(BINARY_INPUTS, datatypes, sizes, strict=False)
    ]
    header = json.dumps({"inputs": inputs}).encode()
    headers = {"Inference-Header-Content-Length": str(len(header)) if length is None else length}
    _check(client.post("/v2/models/flight_delay/infer", content=header + blob, headers=headers))


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"flights": ' + b"[" * 50_000, b"{" * 100_000])
def test_deeply_nested_bodies_are_4xx(client: TestClient, body: bytes) -> None:
    for path in ("/predict", "/v2/models/flight_delay/infer"):
        assert 400 <= client.post(path, content=body).status_code < 500


def test_a_bug_in_a_hook_is_a_json_500_counted_for_the_bake_window(rest_model: ModelVersion) -> None:
    class Broken(FlightDelayService):
        def predict(self, features: Any) -> Any:
            raise RuntimeError("bug")

    service = Broken(Predictor(rest_model), EmbeddedStore())
    app = create_app(service)
    flight = {k: v for k, v in VALID.items()}
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/predict", json=flight)
        assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError"}
        assert 'status="500"' in c.get("/metrics").text
    assert app.state.metrics.window.snapshot()["errors"] == 1
