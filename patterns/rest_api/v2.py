"""Open Inference Protocol (V2, REST) adapter for ``FlightDelayService``, framework-free.

Tabular convention: one input tensor per raw request field of the service's ``input_fields``
(``carrier`` BYTES, ``distance`` FP64, ``sched_ts`` INT64, ...), each of shape ``[n]`` or ``[n, 1]``
with one element per flight; the output ``probability`` is FP64 ``[n]``. The same three ways to
give the scheduled departure as the JSON endpoint apply (``scheduled_departure``, ``sched_ts`` or
the five local fields), and every row goes through the same ``decode_request`` hook, so both
endpoints accept and refuse the same flights.

Tensors travel as JSON ``data`` or, with the binary tensor data extension (what ``tritonclient``
sends by default), as raw little-endian bytes after the JSON header: the request's
``Inference-Header-Content-Length`` header gives the JSON's length, and each binary input says its
size in ``parameters.binary_data_size``, in input order. A BYTES element is a 4-byte little-endian
length and then the bytes (UTF-8 here). The output comes back binary when the request asks for it
(``parameters.binary_data_output``, or ``binary_data`` on the requested output).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import orjson

from patterns.rest_api.schemas import FlightField, InputError
from patterns.rest_api.service import FlightDelayService, Prediction

__all__ = [
    "HEADER_LENGTH",
    "MAX_ROWS",
    "InferRequest",
    "V2Error",
    "decode_infer",
    "encode_infer",
    "model_metadata",
    "server_metadata",
    "split_body",
]

#: Largest batch one inference request may carry.
MAX_ROWS = 10_000
#: The HTTP header giving the length of the JSON part of a body that carries binary tensors.
HEADER_LENGTH = "inference-header-content-length"
#: Little-endian element types of the numeric datatypes in binary tensor data.
_BINARY_DTYPES = {
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
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


class InferRequest(NamedTuple):
    """A decoded inference request: its flights, its id, and whether the output goes back binary."""

    flights: list[dict[str, Any]]
    request_id: str | None
    binary_output: bool


def server_metadata(version: str) -> dict[str, Any]:
    return {"name": "mlpatterns-rest", "version": version, "extensions": ["binary_tensor_data"]}


def model_metadata(service: FlightDelayService) -> dict[str, Any]:
    return {
        "name": service.model_name,
        "versions": [service.version],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": f.name, "datatype": f.v2_datatype, "shape": [-1]} for f in service.input_fields],
        "outputs": [{"name": "probability", "datatype": "FP64", "shape": [-1]}],
        "parameters": dict(service.input_notes),
    }


def _flatten(data: Any, out: list[Any]) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, out)
        else:
            out.append(item)


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(JSON header, binary tensor data) of a request body, from its ``HEADER_LENGTH`` header."""
    if header_length is None:
        return body, b""
    try:
        n = int(header_length)
    except ValueError:
        raise V2Error(f"{HEADER_LENGTH} must be an integer, got {header_length[:40]!r}") from None
    if not 0 < n <= len(body):
        raise V2Error(f"{HEADER_LENGTH} {n} does not fit a body of {len(body)} bytes")
    return body[:n], body[n:]


class _BinaryData:
    """The binary part of a request, handed out input by input in the order the inputs come."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._offset = 0

    def take(self, size: int, name: str) -> memoryview:
        if size > len(self._data) - self._offset:
            left = len(self._data) - self._offset
            raise V2Error(f"input '{name}': binary_data_size {size}, but {left} bytes of binary data left")
        self._offset += size
        return self._data[self._offset - size : self._offset]

    def check_used_up(self) -> None:
        if self._offset != len(self._data):
            raise V2Error(
                f"{len(self._data) - self._offset} bytes of binary data after the last binary input "
                "(binary_data_size of the inputs and the body disagree)"
            )


def _binary_values(name: str, datatype: str, raw: memoryview) -> list[Any]:
    if datatype != "BYTES":
        dtype = np.dtype(_BINARY_DTYPES[datatype])
        if len(raw) % dtype.itemsize:
            raise V2Error(f"input '{name}': {len(raw)} bytes is not a whole number of {datatype} elements")
        values: list[Any] = np.frombuffer(raw, dtype).tolist()
        return values
    out: list[Any] = []
    i = 0
    while i < len(raw):
        if i + 4 > len(raw):
            raise V2Error(f"input '{name}': BYTES element {len(out)} has a truncated length prefix")
        size = int.from_bytes(raw[i : i + 4], "little")
        if i + 4 + size > len(raw):
            raise V2Error(f"input '{name}': BYTES element {len(out)} is longer than the binary data")
        try:
            out.append(str(raw[i + 4 : i + 4 + size], "utf-8"))
        except UnicodeDecodeError:
            raise V2Error(f"input '{name}': BYTES element {len(out)} is not UTF-8 text") from None
        i += 4 + size
    return out


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    """An object's ``parameters`` (empty when absent); ``V2Error`` when it is not an object."""
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise V2Error(f"{where}: 'parameters' must be an object")
    return parameters


def _binary_size(spec: dict[str, Any], name: str) -> int | None:
    size = _parameters(spec, f"input '{name}'").get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise V2Error(f"input '{name}': binary_data_size must be a non-negative integer")
    if "data" in spec:
        raise V2Error(f"input '{name}': give either 'data' or binary_data_size, not both")
    return size


def _tensor(
    spec: Any, index: int, binary: _BinaryData, fields: Mapping[str, FlightField]
) -> tuple[str, list[Any]]:
    where = f"inputs[{index}]"
    if not isinstance(spec, dict):
        raise V2Error(f"{where}: expected an object with name, shape, datatype and data")
    name = spec.get("name")
    if not isinstance(name, str):
        raise V2Error(f"{where}: 'name' must be a string")
    if name not in fields:
        raise V2Error(f"input '{name}': unknown input; expected some of {', '.join(fields)}")
    field = fields[name]
    datatype, shape, data = spec.get("datatype"), spec.get("shape"), spec.get("data")
    if datatype not in _ACCEPTED[field.kind]:
        raise V2Error(f"input '{name}': datatype {datatype!r} not accepted; expected {field.v2_datatype}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise V2Error(f"input '{name}': 'shape' must be a list of integers")
    if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1) or shape[0] < 0:
        raise V2Error(f"input '{name}': shape {shape} not accepted; expected [n] or [n, 1]")
    if shape[0] > MAX_ROWS:  # before decoding any data
        raise V2Error(f"input '{name}': shape {shape} has more than {MAX_ROWS} rows")
    size = _binary_size(spec, name)
    flat: list[Any] = []
    if size is not None:
        flat = _binary_values(name, datatype, binary.take(size, name))
    elif not isinstance(data, list):
        raise V2Error(f"input '{name}': 'data' must be an array")
    else:
        try:
            _flatten(data, flat)
        except RecursionError:
            raise V2Error(f"input '{name}': 'data' nested too deeply") from None
    if len(flat) != shape[0]:
        raise V2Error(f"input '{name}': shape {shape} needs {shape[0]} elements, data has {len(flat)}")
    return name, flat


def _flag(obj: dict[str, Any], name: str, where: str) -> bool | None:
    value = _parameters(obj, where).get(name)
    if value is not None and not isinstance(value, bool):
        raise V2Error(f"{where}: {name} must be true or false")
    return value


def decode_infer(service: FlightDelayService, body: Any, binary_data: bytes = b"") -> InferRequest:
    """The flights, id and output format of an inference request; ``V2Error`` on a bad one.

    ``body`` is the parsed JSON (the header, when tensors travel as binary) and ``binary_data`` the
    bytes after it (see ``split_body``).
    """
    if not isinstance(body, dict):
        raise V2Error("request body must be a JSON object")
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise V2Error("'id' must be a string")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise V2Error("'inputs' must be a non-empty array")
    binary = _BinaryData(binary_data)
    columns: dict[str, list[Any]] = {}
    fields = {f.name: f for f in service.input_fields}
    for i, spec in enumerate(inputs):
        name, values = _tensor(spec, i, binary, fields)
        if name in columns:
            raise V2Error(f"input '{name}': given twice")
        columns[name] = values
    binary.check_used_up()
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1:
        raise V2Error(
            "all inputs must hold the same number of rows: "
            + ", ".join(f"{k}={len(v)}" for k, v in columns.items())
        )
    n = sizes.pop()
    if n == 0 or n > MAX_ROWS:
        raise V2Error(f"inputs must hold between 1 and {MAX_ROWS} rows, got {n}")
    # Binary output when asked for: per requested output, else for all of them (what tritonclient
    # asks when it names no outputs).
    binary_output = bool(_flag(body, "binary_data_output", "request"))
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise V2Error("'outputs' must be an array")
        for out in outputs:
            if not isinstance(out, dict) or out.get("name") not in _OUTPUTS:
                raise V2Error(f"unknown output {out!r}: this model has {', '.join(_OUTPUTS)}")
            asked = _flag(out, "binary_data", f"output '{out['name']}'")
            binary_output = binary_output if asked is None else asked
    names = list(columns)
    flights: list[dict[str, Any]] = []
    for row in range(n):
        try:
            flights.append(service.decode_request({k: columns[k][row] for k in names}))
        except InputError as exc:
            raise V2Error(f"input '{exc.field}': row {row}: {exc.message}") from None
    return InferRequest(flights, request_id, binary_output)


def encode_infer(
    service: FlightDelayService, predictions: Sequence[Prediction], request: InferRequest
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of the response: JSON, or a JSON header and the binary output after it."""
    probabilities = [p.probability for p in predictions]
    body: dict[str, Any] = {"model_name": service.model_name, "model_version": service.version}
    if request.request_id is not None:
        body["id"] = request.request_id
    output: dict[str, Any] = {"name": "probability", "datatype": "FP64", "shape": [len(probabilities)]}
    body["outputs"] = [output]
    if not request.binary_output:
        output["data"] = probabilities
        return orjson.dumps(body), {"content-type": "application/json"}
    data = np.asarray(probabilities, dtype="<f8").tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    header = orjson.dumps(body)
    return header + data, {"content-type": "application/octet-stream", HEADER_LENGTH: str(len(header))}
