"""Open Inference Protocol (V2, REST) adapter for ``FlightDelayService``, framework-free.

Tabular convention: one input tensor per raw request field (``carrier`` BYTES, ``distance`` FP64,
``sched_ts`` INT64, ...), each of shape ``[n]`` or ``[n, 1]`` with one element per flight; the
output ``probability`` is FP64 ``[n]``. The same three ways to give the scheduled departure as the
JSON endpoint apply (``scheduled_departure``, ``sched_ts`` or the five local fields), and every row
goes through the same ``decode_request`` hook, so both endpoints accept and refuse the same flights.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from patterns.rest_api.schemas import FIELDS, InputError
from patterns.rest_api.service import FlightDelayService, Prediction

__all__ = ["MAX_ROWS", "V2Error", "decode_infer", "encode_infer", "model_metadata", "server_metadata"]

#: Largest batch one inference request may carry.
MAX_ROWS = 10_000
_SPECS = {f.name: f for f in FIELDS}
_INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
_ACCEPTED = {"str": frozenset({"BYTES"}), "int": _INT_TYPES, "float": _INT_TYPES | _FLOAT_TYPES}
_OUTPUTS = ("probability",)


class V2Error(ValueError):
    """A protocol-level error: answered as ``{"error": message}`` with ``status``."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "mlpatterns-rest", "version": version, "extensions": []}


def model_metadata(service: FlightDelayService) -> dict[str, Any]:
    return {
        "name": service.model_name,
        "versions": [service.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": f.name, "datatype": f.v2_datatype, "shape": [-1]} for f in FIELDS],
        "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]}],
        # Not every input is needed: the scheduled departure has three equivalent forms.
        "parameters": {
            "required_inputs": "carrier, flight, origin, dest, distance",
            "departure_inputs": "scheduled_departure | sched_ts | year, month, day, hour, minute",
        },
    }


def _flatten(data: Any, out: list[Any]) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, out)
        else:
            out.append(item)


def _tensor(spec: Any, index: int) -> tuple[str, list[Any]]:
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise V2Error(f"{where}: expected an object with name, shape, datatype and data")
    name = spec.get("name")
    if not isinstance(name, str):
        raise V2Error(f"{where}: 'name' must be a string")
    if name not in _SPECS:
        raise V2Error(f"input '{name}': unknown input; expected some of {', '.join(_SPECS)}")
    field = _SPECS[name]
    datatype, shape, data = spec.get("datatype"), spec.get("shape"), spec.get("data")
    if datatype not in _ACCEPTED[field.kind]:
        raise V2Error(f"input '{name}': datatype {datatype!r} not accepted; expected {field.v2_datatype}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise V2Error(f"input '{name}': 'shape' must be a list of integers")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 0:
        raise V2Error(f"input '{name}': shape {shape} not accepted; expected [n] or [n, 1]")
    if not isinstance(data, list):
        raise V2Error(f"input '{name}': 'data' must be an array")
    flat: list[Any] = []
    try:
        _flatten(data, flat)
    except RecursionError:
        raise V2Error(f"input '{name}': 'data' nested too deeply") from None
    if len(flat) != shape[0]:
        raise V2Error(f"input '{name}': shape {shape} needs {shape[0]} elements, data has {len(flat)}")
    return name, flat


def decode_infer(service: FlightDelayService, body: Any) -> tuple[list[dict[str, Any]], str | None]:
    """(decoded flights, request id) from an inference request; ``V2Error`` on a bad one."""
    if not isinstance(body, dict):
        raise V2Error("request body must be a JSON object")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error("'id' must be a string")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error("'inputs' must be a non-empty array")
    columns: dict[str, list[Any]] = {}
    for i, spec in enumerate(inputs):
        name, values = _tensor(spec, i)
        if name in columns:
            raise V2Error(f"input '{name}': given twice")
        columns[name] = values
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1:
        raise V2Error(
            "all inputs must hold the same number of rows: "
            + ", ".join(f"{k}={len(v)}" for k, v in columns.items())
        )
    n = sizes.pop()
    if n == 0 or n > MAX_ROWS:
        raise V2Error(f"inputs must hold between 1 and {MAX_ROWS} rows, got {n}")
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise V2Error("'outputs' must be an array")
        for out in outputs:
            if not isinstance(out, dict) or out.get("name") not in _OUTPUTS:
                raise V2Error(f"unknown output {out!r}: this model has {', '.join(_OUTPUTS)}")
    names = list(columns)
    flights: list[dict[str, Any]] = []
    for row in range(n):
        try:
            flights.append(service.decode_request({k: columns[k][row] for k in names}))
        except InputError as exc:
            raise V2Error(f"input '{exc.field}': row {row}: {exc.message}") from None
    return flights, request_id


def encode_infer(
    service: FlightDelayService, predictions: Sequence[Prediction], request_id: str | None
) -> dict[str, Any]:
    probabilities = [p.probability for p in predictions]
    if not all(math.isfinite(p) for p in probabilities):
        raise V2Error("the model produced a non-finite probability", status=500)
    body: dict[str, Any] = {"model_name": service.model_name, "model_version": service.version}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = [
        {"name": "probability", "datatype": "FP64", "shape": [len(probabilities)], "data": probabilities}
    ]
    return body
