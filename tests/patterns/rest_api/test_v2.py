"""Open Inference Protocol (V2): a standard client (tritonclient, JSON mode) and malformed requests."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

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


def _inputs(requests: list[dict[str, Any]]) -> list[triton.InferInput]:
    inputs = []
    for name, (datatype, dtype) in _COLUMNS.items():
        data = np.array([r[name] for r in requests], dtype=dtype)
        tensor = triton.InferInput(name, [len(requests)], datatype)
        tensor.set_data_from_numpy(data, binary_data=False)
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


def test_v2_infer_counts_in_metrics(rest_app: RestApp, rest_requests: list[dict[str, Any]]) -> None:
    httpx.post(f"{rest_app.url}/v2/models/{MODEL}/infer", json=_body(rest_requests[:2]))
    text = httpx.get(rest_app.url + "/metrics").text
    assert 'mlpatterns_rest_requests_total{endpoint="v2_infer",model_version="v1"}' in text
