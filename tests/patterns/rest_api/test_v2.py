"""Open Inference Protocol (V2): a standard client (tritonclient: JSON, binary tensors), bad requests."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from patterns.rest_api.app import create_app
from patterns.rest_api.loader import parse_until
from patterns.rest_api.schemas import FIELDS, FlightField
from patterns.rest_api.service import FlightDelayService
from shared.example.data import event_sources
from shared.example.flights import FLIGHT_FEATURES
from shared.features import EmbeddedStore, StreamingExecutor
from shared.predictor import Predictor
from shared.registry import ModelVersion
from tests.patterns.rest_api.conftest import CUTOFF

RestApp = Any
MODEL = "flight_delay"
_COLUMNS = {
    "carrier": ("BYTES", object),
    "flight": ("INT64", np.int64),
    "origin": ("BYTES", object),
    "dest": ("BYTES", object),
    "distance": ("FP64", np.float64),
    "sched_ts": ("INT64", np.int64),
}


def _client(app: RestApp) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(app.url.removeprefix("http://"))


def _inputs(requests: list[dict[str, Any]], binary: Callable[[str], bool] = lambda _: False) -> list[Any]:
    inputs = []
    for name, (datatype, dtype) in _COLUMNS.items():
        data = np.array([r[name] for r in requests], dtype=dtype)
        tensor = triton.InferInput(name, [len(requests)], datatype)
        tensor.set_data_from_numpy(data, binary_data=binary(name))
        inputs.append(tensor)
    return inputs


def test_tritonclient_health_and_metadata(rest_app: RestApp) -> None:
    client = _client(rest_app)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(MODEL) and client.is_model_ready(MODEL, "v1")
    assert not client.is_model_ready(MODEL, "v9") and not client.is_model_ready("other")
    server = client.get_server_metadata()
    assert server["name"] == "mlpatterns-rest" and "extensions" in server
    meta = client.get_model_metadata(MODEL)
    assert meta["name"] == MODEL and meta["versions"] == ["v1"]
    inputs = {i["name"]: i["datatype"] for i in meta["inputs"]}
    assert {k: v[0] for k, v in _COLUMNS.items()}.items() <= inputs.items()
    assert meta["outputs"] == [{"name": "probability", "datatype": "FP64", "shape": [-1]}]
    assert client.get_model_metadata(MODEL, "v1") == meta
    with pytest.raises(InferenceServerException):
        client.get_model_metadata("other")


def test_tritonclient_infer_equals_predict(rest_app: RestApp, rest_requests: list[dict[str, Any]]) -> None:
    requests = rest_requests[:20]
    client = _client(rest_app)
    outputs = [triton.InferRequestedOutput("probability", binary_data=False)]
    result = client.infer(MODEL, _inputs(requests), outputs=outputs, request_id="req-42")
    response = result.get_response()
    assert (
        response["model_name"] == MODEL and response["model_version"] == "v1" and response["id"] == "req-42"
    )
    probabilities = result.as_numpy("probability")
    assert probabilities.dtype == np.float64 and probabilities.shape == (20,)
    expected = httpx.post(rest_app.url + "/predict", json={"flights": requests}).json()["predictions"]
    assert probabilities.tolist() == [p["probability"] for p in expected]
    versioned = client.infer(MODEL, _inputs(requests[:3]), model_version="v1", outputs=outputs)
    assert versioned.as_numpy("probability").tolist() == probabilities[:3].tolist()
    with pytest.raises(InferenceServerException, match="no version"):
        client.infer(MODEL, _inputs(requests[:3]), model_version="v9")


def test_tritonclient_binary_tensors_equal_json(
    rest_app: RestApp, rest_requests: list[dict[str, Any]]
) -> None:
    """tritonclient's defaults: inputs as binary tensor data and, naming no outputs, binary outputs."""
    requests = rest_requests[:20]
    client = _client(rest_app)
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    json_outputs = [triton.InferRequestedOutput("probability", binary_data=False)]
    expected = client.infer(MODEL, _inputs(requests), outputs=json_outputs).as_numpy("probability")
    binary = client.infer(MODEL, _inputs(requests, binary=lambda _: True), request_id="b-1")
    assert binary.get_response()["id"] == "b-1"
    assert binary.get_response()["outputs"][0]["parameters"] == {"binary_data_size": 8 * len(requests)}
    assert binary.as_numpy("probability").tolist() == expected.tolist()
    # Some inputs binary, some JSON; the output asked for binary, then for JSON.
    mixed = _inputs(requests, binary=lambda name: name in ("carrier", "distance", "sched_ts"))
    for output in (triton.InferRequestedOutput("probability"), json_outputs[0]):
        result = client.infer(MODEL, mixed, outputs=[output])
        assert result.as_numpy("probability").tolist() == expected.tolist()


def _binary_request(
    requests: list[dict[str, Any]], change: Callable[[dict[str, Any], dict[str, bytes]], None] | None = None
) -> tuple[bytes, dict[str, str]]:
    """A body with every input as binary tensor data, built here from the protocol's description."""
    blobs: dict[str, bytes] = {}
    for name, (datatype, dtype) in _COLUMNS.items():
        values = [r[name] for r in requests]
        if datatype == "BYTES":
            blobs[name] = b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in values)
        else:
            blobs[name] = np.asarray(values, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()
    header: dict[str, Any] = {
        "inputs": [
            {
                "name": n,
                "datatype": dt,
                "shape": [len(requests)],
                "parameters": {"binary_data_size": len(blobs[n])},
            }
            for n, (dt, _) in _COLUMNS.items()
        ],
        "parameters": {"binary_data_output": True},
    }
    if change is not None:
        change(header, blobs)
    text = json.dumps(header).encode()
    return text + b"".join(blobs.values()), {"Inference-Header-Content-Length": str(len(text))}


def _set(name: str, **changes: Any) -> Callable[[dict[str, Any], dict[str, bytes]], None]:
    def change(header: dict[str, Any], _: dict[str, bytes]) -> None:
        next(t for t in header["inputs"] if t["name"] == name).update(changes)

    return change


def _blob(name: str, data: bytes) -> Callable[[dict[str, Any], dict[str, bytes]], None]:
    def change(header: dict[str, Any], blobs: dict[str, bytes]) -> None:
        blobs[name] = data
        _set(name, parameters={"binary_data_size": len(data)})(header, blobs)

    return change


def test_a_binary_request_built_from_the_protocol_is_answered_in_binary(
    rest_app: RestApp, rest_requests: list[dict[str, Any]]
) -> None:
    requests = rest_requests[:5]
    content, headers = _binary_request(requests)
    r = httpx.post(f"{rest_app.url}/v2/models/{MODEL}/infer", content=content, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    header = json.loads(r.content[:n])
    assert header["model_name"] == MODEL and header["outputs"][0]["parameters"]["binary_data_size"] == 40
    expected = httpx.post(rest_app.url + "/predict", json={"flights": requests}).json()["predictions"]
    assert np.frombuffer(r.content[n:], "<f8").tolist() == [p["probability"] for p in expected]


BAD_BINARY: list[tuple[str, Callable[[dict[str, Any], dict[str, bytes]], None], str]] = [
    ("size past the end", _set("distance", parameters={"binary_data_size": 10_000}), "distance"),
    ("bytes left over", lambda _, b: b.update(tail=b"\0" * 8), "binary data after"),
    ("not whole elements", _blob("distance", b"\0" * 7), "distance"),
    ("truncated BYTES length", _blob("carrier", b"\2\0"), "carrier"),
    ("BYTES longer than the data", _blob("carrier", b"\x09\0\0\0AA"), "carrier"),
    ("BYTES not UTF-8", _blob("origin", b"\3\0\0\0\xff\xfeX" * 4), "origin"),
    ("data and binary", _set("flight", data=[1, 2, 3, 4]), "flight"),
    ("negative size", _set("flight", parameters={"binary_data_size": -8}), "flight"),
    ("size a string", _set("flight", parameters={"binary_data_size": "32"}), "flight"),
    ("parameters not an object", _set("flight", parameters=[32]), "flight"),
    ("NaN distance", _blob("distance", np.full(4, np.nan, "<f8").tobytes()), "distance"),
    (
        "binary_data not a bool",
        lambda h, _: h.update(outputs=[{"name": "probability", "parameters": {"binary_data": "yes"}}]),
        "probability",
    ),
    ("request parameters a list", lambda h, _: h.update(parameters=[1]), "parameters"),
]


@pytest.mark.parametrize(("case", "change", "named"), BAD_BINARY, ids=[c[0] for c in BAD_BINARY])
def test_bad_binary_requests_are_4xx_json_errors(
    rest_app: RestApp, rest_requests: list[dict[str, Any]], case: str, change: Callable, named: str
) -> None:
    content, headers = _binary_request(rest_requests[:4], change)
    r = httpx.post(f"{rest_app.url}/v2/models/{MODEL}/infer", content=content, headers=headers)
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert named in r.json()["error"], r.json()


@pytest.mark.parametrize("length", ["abc", "0", "100000", "-5"])
def test_a_bad_header_length_is_a_400(
    rest_app: RestApp, rest_requests: list[dict[str, Any]], length: str
) -> None:
    content, _ = _binary_request(rest_requests[:4])
    headers = {"Inference-Header-Content-Length": length}
    r = httpx.post(f"{rest_app.url}/v2/models/{MODEL}/infer", content=content, headers=headers)
    assert r.status_code == 400 and "inference-header-content-length" in r.json()["error"], r.text


def _body(requests: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    inputs = [
        {"name": n, "datatype": dt, "shape": [len(requests)], "data": [r[n] for r in requests]}
        for n, (dt, _) in _COLUMNS.items()
    ]
    return {"inputs": inputs, **extra}


def test_plain_http_quirks_are_tolerated(rest_app: RestApp, rest_requests: list[dict[str, Any]]) -> None:
    requests = rest_requests[:4]
    url = f"{rest_app.url}/v2/models/{MODEL}/infer"
    reference = httpx.post(url, json=_body(requests)).json()["outputs"][0]["data"]
    # no JSON content type, extra top-level fields, parameters, nested [n, 1] data, ISO departure
    body = _body(requests, model_name=MODEL, parameters={"x": 1}, id="abc")
    for tensor in body["inputs"]:
        tensor["shape"] = [len(requests), 1]
        tensor["data"] = [[v] for v in tensor["data"]]
    r = httpx.post(url, content=json.dumps(body), headers={"content-type": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.json()["id"] == "abc" and r.json()["outputs"][0]["data"] == reference
    iso = _body(requests)
    iso["inputs"] = [t for t in iso["inputs"] if t["name"] != "sched_ts"] + [
        {
            "name": "scheduled_departure",
            "datatype": "BYTES",
            "shape": [len(requests)],
            "data": [str(np.datetime64(r["sched_ts"], "s")) + "+00:00" for r in requests],
        }
    ]
    assert httpx.post(url, json=iso).json()["outputs"][0]["data"] == reference


def _mutate(requests: list[dict[str, Any]], name: str, **changes: Any) -> dict[str, Any]:
    body = _body(requests)
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor.update(changes)
    return body


BAD: list[tuple[str, Callable[[list[dict[str, Any]]], Any], str]] = [
    ("carrier as FP32", lambda r: _mutate(r, "carrier", datatype="FP32"), "carrier"),
    ("distance as BYTES", lambda r: _mutate(r, "distance", datatype="BYTES"), "distance"),
    ("flight as FP64", lambda r: _mutate(r, "flight", datatype="FP64"), "flight"),
    ("shape does not match data", lambda r: _mutate(r, "distance", shape=[len(r) + 1]), "distance"),
    ("shape with two columns", lambda r: _mutate(r, "distance", shape=[len(r) // 2, 2]), "distance"),
    ("shape not a list", lambda r: _mutate(r, "distance", shape="4"), "distance"),
    ("shape over the row limit", lambda r: _mutate(r, "distance", shape=[10_001]), "distance"),
    ("data not an array", lambda r: _mutate(r, "distance", data=5.0), "distance"),
    ("string in a FP64 tensor", lambda r: _mutate(r, "distance", data=["x"] * len(r)), "distance"),
    ("negative distance", lambda r: _mutate(r, "distance", data=[-1.0] * len(r)), "distance"),
    ("number in a BYTES tensor", lambda r: _mutate(r, "carrier", data=[1] * len(r)), "carrier"),
    ("rows differ", lambda r: _mutate(r, "flight", shape=[1], data=[r[0]["flight"]]), "rows"),
    ("missing input", lambda r: {"inputs": _body(r)["inputs"][1:]}, "carrier"),
    (
        "unknown input",
        lambda r: {"inputs": [*_body(r)["inputs"], {**_body(r)["inputs"][0], "name": "x"}]},
        "x",
    ),
    ("input twice", lambda r: {"inputs": [*_body(r)["inputs"], _body(r)["inputs"][0]]}, "carrier"),
    ("inputs missing", lambda r: {"id": "1"}, "inputs"),
    ("inputs empty", lambda r: {"inputs": []}, "inputs"),
    ("input not an object", lambda r: {"inputs": [3]}, "inputs[0]"),
    ("body an array", lambda r: [1, 2, 3], "object"),
    ("unknown output", lambda r: _body(r, outputs=[{"name": "logits"}]), "logits"),
    ("id not a string", lambda r: _body(r, id=7), "id"),
]


@pytest.mark.parametrize(("case", "make", "named"), BAD, ids=[c[0] for c in BAD])
def test_bad_inference_requests_are_4xx_json_errors(
    rest_app: RestApp, rest_requests: list[dict[str, Any]], case: str, make: Callable, named: str
) -> None:
    r = httpx.post(f"{rest_app.url}/v2/models/{MODEL}/infer", content=json.dumps(make(rest_requests[:4])))
    assert 400 <= r.status_code < 500, (case, r.status_code, r.text)
    assert named in r.json()["error"], r.json()


@pytest.mark.parametrize(
    ("path", "content", "status"),
    [
        (f"/v2/models/{MODEL}/infer", b"{nope", 400),
        ("/v2/models/other/infer", b"{}", 404),
        (f"/v2/models/{MODEL}/versions/v9/infer", b"{}", 404),
    ],
)
def test_protocol_errors(rest_app: RestApp, path: str, content: bytes, status: int) -> None:
    r = httpx.post(rest_app.url + path, content=content)
    assert r.status_code == status and isinstance(r.json()["error"], str), r.text


def _metric(app: RestApp, name: str) -> float:
    line = f'{name}{{endpoint="v2_infer",model_version="v1"}} '
    text = httpx.get(app.url + "/metrics").text
    return next((float(x.removeprefix(line)) for x in text.splitlines() if x.startswith(line)), 0.0)


def test_v2_infer_counts_in_metrics(rest_app: RestApp, rest_requests: list[dict[str, Any]]) -> None:
    names = ("mlpatterns_rest_requests_total", "mlpatterns_rest_predictions_total")
    before = [_metric(rest_app, n) for n in names]
    r = httpx.post(f"{rest_app.url}/v2/models/{MODEL}/infer", json=_body(rest_requests[:3]))
    assert r.status_code == 200, r.text
    after = [_metric(rest_app, n) for n in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 3]  # one request, three rows


class _CodedFlights(FlightDelayService):
    """A service on other requests: the flight named by one code ("UA1545"), not carrier and number."""

    input_fields = (
        FlightField(
            "flight_code", "str", "BYTES", "Carrier and flight number, e.g. UA1545.", example="UA1545"
        ),
        *(f for f in FIELDS if f.name not in ("carrier", "flight")),
    )
    input_notes: ClassVar[Mapping[str, str]] = {"required_inputs": "flight_code, origin, dest, distance"}
    description = "Delays by flight code."

    def decode_request(self, payload: Any, where: str = "") -> dict[str, Any]:
        if isinstance(payload, dict) and isinstance(payload.get("flight_code"), str):
            code = payload.pop("flight_code")
            payload |= {"carrier": code[:2], "flight": int(code[2:])}
        return super().decode_request(payload, where)


def test_a_service_on_other_requests_speaks_v2_and_documents_its_own_inputs(
    rest_model: ModelVersion, rest_requests: list[dict[str, Any]]
) -> None:
    """The V2 endpoint takes the service's ``input_fields`` (not the flight table) as its tensors,
    lists them in the model metadata, and the OpenAPI document carries the service's description."""
    store = EmbeddedStore()
    StreamingExecutor(FLIGHT_FEATURES, store).observe_history(event_sources(), parse_until(CUTOFF))
    plain = FlightDelayService(Predictor(rest_model), store)
    coded = _CodedFlights(Predictor(rest_model), store)
    flights = rest_requests[:8]
    columns = {
        "flight_code": ("BYTES", [f"{r['carrier']}{r['flight']}" for r in flights]),
        **{k: (_COLUMNS[k][0], [r[k] for r in flights]) for k in ("origin", "dest", "distance", "sched_ts")},
    }
    body = {
        "inputs": [{"name": k, "datatype": t, "shape": [len(v)], "data": v} for k, (t, v) in columns.items()]
    }
    with TestClient(create_app(coded)) as client:
        answer = client.post(f"/v2/models/{MODEL}/infer", json=body)
        assert answer.status_code == 200, answer.text
        expected = [plain.handle(dict(r))["probability"] for r in flights]
        assert answer.json()["outputs"][0]["data"] == expected
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert [i["name"] for i in meta["inputs"]][:3] == ["flight_code", "origin", "dest"]
        assert meta["parameters"] == {"required_inputs": "flight_code, origin, dest, distance"}
        refused = client.post(
            f"/v2/models/{MODEL}/infer", json={"inputs": [{**body["inputs"][0], "name": "carrier"}]}
        )
        assert (
            refused.status_code == 400 and "expected some of flight_code, origin" in refused.json()["error"]
        )
        assert client.get("/openapi.json").json()["info"]["description"].startswith("Delays by flight code.")
    plain.close()
    coded.close()
