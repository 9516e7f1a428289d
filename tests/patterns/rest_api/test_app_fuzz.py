"""No input makes the app answer 5xx: property tests over the in-process ASGI app (any store)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patterns.rest_api.app import create_app
from patterns.rest_api.schemas import FIELDS as SPECS
from patterns.rest_api.schemas import InputError
from patterns.rest_api.service import FlightDelayService, build_store
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
#: Integers past the largest float (about 1.8e308) too: float() of one raises OverflowError.
NUMBERS = st.integers() | st.integers(-(10**400), 10**400) | st.floats()
JSON = st.recursive(
    st.none() | st.booleans() | NUMBERS | st.text(max_size=30) | ISO,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.fixture(scope="module")
def client(rest_model: ModelVersion) -> Iterator[TestClient]:
    service = FlightDelayService(Predictor(rest_model), EmbeddedStore())
    with TestClient(create_app(service), raise_server_exceptions=False) as c:
        yield c
    service.close()


#: The V2 datatype of each field (``flight`` is INT64 only: an FP64 flight is refused).
V2_TYPES = {f.name: f.v2_datatype for f in SPECS}


def _v2_inputs(flight: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": k, "datatype": V2_TYPES[k], "shape": [1], "data": [v]} for k, v in flight.items()]


def test_the_unfuzzed_bases_are_valid(client: TestClient) -> None:
    """Otherwise the fuzz tests below would only ever exercise the refusals."""
    assert client.post("/predict", json=VALID).status_code == 200
    r = client.post("/v2/models/flight_delay/infer", json={"inputs": _v2_inputs(VALID)})
    assert r.status_code == 200, r.text


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
    inputs = _v2_inputs({k: v for k, v in VALID.items() if k != name})
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


def test_a_non_finite_score_is_a_counted_500_on_both_endpoints(rest_model: ModelVersion) -> None:
    class NaNModel(FlightDelayService):
        def predict(self, features: Any) -> Any:
            return np.full(len(features), np.nan)

    service = NaNModel(Predictor(rest_model), EmbeddedStore())
    app = create_app(service)
    error = {"error": "internal error: model returned a non-finite probability"}
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/predict", json=VALID)
        assert r.status_code == 500 and r.json() == error
        r = c.post("/v2/models/flight_delay/infer", json={"inputs": _v2_inputs(VALID)})
        assert r.status_code == 500 and r.json() == error
        text = c.get("/metrics").text
    for endpoint in ("predict", "v2_infer"):
        assert (
            f'mlpatterns_rest_errors_total{{endpoint="{endpoint}",model_version="v1",status="500"}} 1.0'
            in text
        )
    assert app.state.metrics.window.snapshot()["errors"] == 2
    service.close()


BAD_CODES = ["EWR:cum", "EWR=", "E W R", "EWR\n", "ÉWR", "UA-1"]


@pytest.mark.parametrize("code", BAD_CODES)
@pytest.mark.parametrize("field", ["carrier", "origin", "dest"])
def test_codes_other_than_ascii_letters_and_digits_are_422(client: TestClient, field: str, code: str) -> None:
    r = client.post("/predict", json=VALID | {field: code})
    assert r.status_code == 422 and r.json()["field"] == field, r.text
    assert "letters and digits" in r.json()["error"]


async def _asgi_post(app: Any, body: dict[str, Any]) -> tuple[int, Any]:
    """POST /predict straight into the ASGI app: no client in between, so requests started
    together reach the micro-batcher in the same turn of the loop (httpx's transport yields)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("app", 80),
    }
    messages = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_a_code_naming_another_store_key_cannot_break_the_micro_batch(
    rest_model: ModelVersion, rest_store: Any, rest_requests: list[dict[str, Any]]
) -> None:
    """'EWR:cum' would read EWR's own cumulative set in Redis, unparsable for every row of the
    batch; refused at decoding, it never joins the batch of the good request sent with it."""
    plug_arrived, release_plug = asyncio.Event(), asyncio.Event()

    class Plugged(FlightDelayService):
        async def features_async(self, requests: Any) -> Any:
            # A batch holding the plug keeps one of the two batch slots busy, so requests sent
            # together then go as one batch in the other (with both free, they would be split).
            if any(r["flight"] == 99999 for r in requests):
                plug_arrived.set()
                await release_plug.wait()
            return await super().features_async(requests)

    service = Plugged(Predictor(rest_model), build_store("redis", rest_store.url, rest_store.prefix))
    app = create_app(service)
    good = rest_requests[0]
    bad = good | {"origin": "EWR:cum", "request_id": "bad"}

    async def run() -> tuple[list[tuple[int, Any]], list[tuple[int, Any]]]:
        plug = asyncio.ensure_future(_asgi_post(app, good | {"flight": 99999}))
        await plug_arrived.wait()
        control = await asyncio.gather(_asgi_post(app, good), _asgi_post(app, good))
        answers = await asyncio.gather(_asgi_post(app, bad), _asgi_post(app, good))
        release_plug.set()
        assert (await plug)[0] == 200
        return list(control), list(answers)

    def batches() -> dict[str, float]:
        return {
            s.name.rsplit("_", 1)[1]: s.value
            for m in app.state.metrics.registry.collect()
            if m.name == "mlpatterns_rest_batch_rows"
            for s in m.samples
            if s.name.endswith(("_count", "_sum"))
        }

    control, answers = asyncio.run(run())
    assert [status for status, _ in control] == [200, 200]
    assert answers[0][0] == 422 and answers[0][1]["field"] == "origin", answers[0]
    assert answers[1][0] == 200 and 0.0 <= answers[1][1]["probability"] <= 1.0, answers[1]
    # The harness does score requests sent together as one batch (the two good ones: 2 rows), so
    # without the check the bad one would have shared the good one's store read.
    assert batches() == {"count": 3, "sum": 4}  # the plug, the two good ones, the good one alone
    service.close()


class _RefusesOne(FlightDelayService):
    """A features hook that refuses one request (flight 99999) as the caller's bad field."""

    async def features_async(self, requests: Any) -> Any:
        if any(r["flight"] == 99999 for r in requests):
            raise InputError("flight", "the test refuses flight 99999")
        return await super().features_async(requests)


def test_a_request_a_hook_refuses_is_a_422_for_its_caller_only(rest_model: ModelVersion) -> None:
    service = _RefusesOne(Predictor(rest_model), EmbeddedStore())
    app = create_app(service)
    bad = VALID | {"flight": 99999}

    async def run() -> list[tuple[int, Any]]:
        # Four requests at once and two batch slots: two batches of two, the bad one with a good one.
        return list(await asyncio.gather(*(_asgi_post(app, b) for b in (bad, VALID, VALID, VALID))))

    answers = asyncio.run(run())
    assert answers[0][0] == 422 and answers[0][1]["field"] == "flight", answers[0]
    assert "flight 99999" in answers[0][1]["error"]
    assert [status for status, _ in answers[1:]] == [200, 200, 200], answers
    service.close()


def test_a_number_too_large_for_a_float_is_a_422_naming_the_field(client: TestClient) -> None:
    huge = 10**400
    r = client.post("/predict", content=json.dumps(VALID | {"distance": huge}))
    assert r.status_code == 422 and r.json()["field"] == "distance", r.text
    assert "must be a finite number" in r.json()["error"]
    r = client.post(
        "/v2/models/flight_delay/infer",
        content=json.dumps({"inputs": _v2_inputs(VALID | {"distance": huge})}),
    )
    # V2 answers a bad input 400 (the protocol's convention), naming the input in the message.
    assert r.status_code == 400 and "'distance': row 0: must be a finite number" in r.json()["error"], r.text
