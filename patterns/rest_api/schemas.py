"""The request contract of the REST pattern: one table of raw flight fields, a fast decoder, doc models.

The table ``FIELDS`` is the single source of truth. ``decode_flight`` validates a JSON object against
it by hand (plain ``isinstance`` checks: no model construction on the hot path) and returns exactly
the raw fields the feature set needs. The pydantic models below are built from the same table and
are used only for the OpenAPI document at ``/docs``, never to parse a request.

The scheduled departure can be given three ways, in order of preference:

* ``scheduled_departure``: ISO-8601, e.g. ``"2013-06-01T08:30:00-04:00"``; converted to
  America/New_York (the zone of the three origin airports) for the local fields, and to UTC epoch
  seconds for ``sched_ts``; a time without offset is read as New York local time;
* ``sched_ts``: UTC epoch seconds; the local fields are derived from it;
* ``year``, ``month``, ``day``, ``hour``, ``minute`` (New York local); ``sched_ts`` is derived.

Fields given in more than one form must agree; a local time the spring clock change skipped is
refused. Unknown carrier and airport codes (ASCII letters and digits) are accepted and encoded -1 by
the feature set (the model has seen no such code: it treats them like a rare one).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field, create_model

from shared.example.flights import LOCAL_ZONE as _ZONE_NAME

__all__ = [
    "FIELDS",
    "LOCAL_ZONE",
    "MAX_BATCH",
    "PREDICT_BODY_DOC",
    "BatchResponse",
    "FlightField",
    "FlightRequest",
    "InputError",
    "PredictResponse",
    "decode_flight",
    "decode_predict_body",
    "explain_flag",
    "local_fields",
    "parse_time",
]

#: All origins of the example data are New York airports; local fields are in this zone.
LOCAL_ZONE = ZoneInfo(_ZONE_NAME)
#: Most flights one ``/predict`` call may carry.
MAX_BATCH = 1000
_TIME_FIELDS = ("year", "month", "day", "hour", "minute")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_MAX_CODE = 16


class InputError(ValueError):
    """A request field is missing or invalid; ``field`` names it (``flights[2].distance``, ``body``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class FlightField:
    """One raw request field: JSON kind, Open Inference Protocol datatype, bounds and docs."""

    name: str
    kind: Literal["str", "int", "float"]
    v2_datatype: Literal["BYTES", "INT64", "FP64"]
    doc: str
    minimum: float | None = None
    maximum: float | None = None
    example: Any = None


FIELDS: tuple[FlightField, ...] = (
    FlightField("carrier", "str", "BYTES", "Carrier code, e.g. UA (unknown codes encode -1).", example="UA"),
    FlightField("flight", "int", "INT64", "Flight number.", 0, 99999, example=1545),
    FlightField("origin", "str", "BYTES", "Origin airport code: EWR, JFK or LGA.", example="EWR"),
    FlightField("dest", "str", "BYTES", "Destination airport code (unknown codes encode -1).", example="IAH"),
    FlightField("distance", "float", "FP64", "Distance in miles (>= 0).", 0, example=1400.0),
    FlightField(
        "scheduled_departure",
        "str",
        "BYTES",
        "Scheduled departure, ISO-8601 with offset (or New York local without one).",
        example="2013-06-01T08:30:00-04:00",
    ),
    FlightField("sched_ts", "int", "INT64", "Scheduled departure, UTC epoch seconds.", 0, 4_102_444_800),
    FlightField("year", "int", "INT64", "Scheduled local year.", 1900, 2200),
    FlightField("month", "int", "INT64", "Scheduled local month.", 1, 12),
    FlightField("day", "int", "INT64", "Scheduled local day of month.", 1, 31),
    FlightField("hour", "int", "INT64", "Scheduled local hour.", 0, 23),
    FlightField("minute", "int", "INT64", "Scheduled local minute.", 0, 59),
)
_REQUIRED = ("carrier", "flight", "origin", "dest", "distance")
_BY_NAME = {f.name: f for f in FIELDS}


def _check_number(spec: FlightField, value: Any, where: str) -> int | float:
    # bool is an int subclass in Python; JSON true is never a number here.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(where, f"expected a number, got {_json_type(value)}")
    if spec.kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise InputError(where, f"expected an integer, got {value!r}")
            value = int(value)
    else:
        try:
            value = float(value)  # OverflowError: an integer beyond the largest float
        except OverflowError:
            raise InputError(where, "must be a finite number") from None
        if not math.isfinite(value):
            raise InputError(where, "must be a finite number")
    if spec.minimum is not None and value < spec.minimum:
        raise InputError(where, f"must be >= {spec.minimum:g}, got {value!r}")
    if spec.maximum is not None and value > spec.maximum:
        raise InputError(where, f"must be <= {spec.maximum:g}, got {value!r}")
    return value


def _check_code(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InputError(where, f"expected a string, got {_json_type(value)}")
    if not value or len(value) > _MAX_CODE:
        raise InputError(where, f"must be 1 to {_MAX_CODE} characters")
    # Codes become parts of feature-store keys ("departures:origin=EWR"): a ":" or "=" could name
    # another key (EWR's own ":cum" set) and break the whole micro-batch's store read.
    if not (value.isascii() and value.isalnum()):
        raise InputError(where, f"must be ASCII letters and digits only, got {value!r}")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def parse_time(text: Any, where: str = "scheduled_departure") -> dt.datetime:
    """An aware datetime from ISO-8601 text; naive times are New York local."""
    if not isinstance(text, str):
        raise InputError(where, f"expected an ISO-8601 string, got {_json_type(text)}")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InputError(where, f"not an ISO-8601 date-time: {text!r}") from None
    return when if when.tzinfo is not None else _new_york(when, where)


def _new_york(naive: dt.datetime, where: str) -> dt.datetime:
    """``naive`` as New York local time; ``InputError`` for a time the spring clock change skipped.

    zoneinfo would silently move 02:30 on 2013-03-10 to 03:30, an hour the caller did not send.
    (In the autumn fold the first of the two instants is taken.)
    """
    local = naive.replace(tzinfo=LOCAL_ZONE)
    if local.astimezone(dt.UTC).astimezone(LOCAL_ZONE).replace(tzinfo=None) != naive:
        raise InputError(
            where, f"{naive:%Y-%m-%d %H:%M} does not exist in {LOCAL_ZONE.key} (clocks moved forward)"
        )
    return local


def _epoch(when: dt.datetime, where: str) -> int:
    spec = _BY_NAME["sched_ts"]
    try:
        sched_ts = int(when.timestamp())
    except (OverflowError, ValueError, OSError):
        sched_ts = -1
    if not spec.minimum <= sched_ts <= spec.maximum:  # type: ignore[operator]
        raise InputError(where, "must be between 1970 and 2100")
    return sched_ts


def local_fields(sched_ts: int) -> dict[str, int]:
    """year, month, day, hour, minute in New York for a UTC epoch second."""
    when = dt.datetime.fromtimestamp(sched_ts, LOCAL_ZONE)
    return {"year": when.year, "month": when.month, "day": when.day, "hour": when.hour, "minute": when.minute}


def decode_flight(obj: Any, where: str = "") -> dict[str, Any]:
    """Validate one flight object; the 11 raw fields of ``FLIGHT_FEATURES.request_fields``.

    Raises ``InputError`` naming the first bad field (prefixed by ``where``, e.g. ``flights[3].``).
    """
    if not isinstance(obj, dict):
        raise InputError(where.rstrip(".") or "body", f"expected a JSON object, got {_json_type(obj)}")
    out: dict[str, Any] = {}
    for name in _REQUIRED:
        if name not in obj:
            raise InputError(where + name, "field required")
        spec = _BY_NAME[name]
        value = obj[name]
        out[name] = (
            _check_code(value, where + name)
            if spec.kind == "str"
            else _check_number(spec, value, where + name)
        )
    given = {
        n: _check_number(_BY_NAME[n], obj[n], where + n) for n in (*_TIME_FIELDS, "sched_ts") if n in obj
    }
    iso = obj.get("scheduled_departure")
    if iso is not None:
        when = parse_time(iso, where + "scheduled_departure")
        sched_ts = _epoch(when, where + "scheduled_departure")
        derived = local_fields(sched_ts) | {"sched_ts": sched_ts}
    elif "sched_ts" in given:
        sched_ts = int(given["sched_ts"])
        derived = local_fields(sched_ts) | {"sched_ts": sched_ts}
    else:
        for name in _TIME_FIELDS:
            if name not in given:
                raise InputError(where + name, "field required (or give scheduled_departure or sched_ts)")
        try:
            y, mo, d, h, mi = (int(given[n]) for n in _TIME_FIELDS)
            naive = dt.datetime(y, mo, d, h, mi)
        except ValueError as exc:
            raise InputError(where + "day", str(exc)) from None
        local = _new_york(naive, where + "hour")
        derived = {n: int(given[n]) for n in _TIME_FIELDS} | {"sched_ts": _epoch(local, where + "year")}
    for name, value in given.items():
        if derived[name] != value:
            raise InputError(
                where + name,
                f"{value} disagrees with the scheduled departure ({derived[name]} in {LOCAL_ZONE.key})",
            )
    out.update(derived)
    return out


def explain_flag(query: str | None, payload: Any) -> bool:
    """``?explain=true`` or a top-level ``"explain": true`` in the body."""
    flag = False
    if query is not None:
        lowered = query.lower()
        if lowered not in _TRUE and lowered not in _FALSE:
            raise InputError("explain", f"expected true or false, got {query[:40]!r}")
        flag = lowered in _TRUE
    if isinstance(payload, dict) and "explain" in payload:
        value = payload["explain"]
        if not isinstance(value, bool):
            raise InputError("explain", "expected true or false")
        flag = flag or value
    return flag


def _request_id(obj: dict[str, Any], where: str) -> str | None:
    rid = obj.get("request_id")
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= 128):
        raise InputError(where + "request_id", "expected a string of 1 to 128 characters")
    return rid


def decode_predict_body(
    payload: Any, decode: Callable[[Any, str], dict[str, Any]] = decode_flight
) -> tuple[list[dict[str, Any]], list[str | None], bool]:
    """(decoded flights, request ids, is_batch) of a ``/predict`` body: one flight object, or
    ``{"flights": [...]}``, or an array of flights. ``decode`` is the service's ``decode_request``.
    """
    if isinstance(payload, dict) and "flights" not in payload:
        return [decode(payload, "")], [_request_id(payload, "")], False
    items = payload["flights"] if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        raise InputError("flights", "expected an array of flight objects")
    if not 0 < len(items) <= MAX_BATCH:
        raise InputError("flights", f"must hold 1 to {MAX_BATCH} flights, got {len(items)}")
    flights, ids = [], []
    for i, item in enumerate(items):
        where = f"flights[{i}]."
        flights.append(decode(item, where))
        # One flag answers the whole batch: a per-item one would be silently ignored.
        if isinstance(item, dict) and "explain" in item:
            raise InputError(where + "explain", "explain is a top-level field (or ?explain=true)")
        ids.append(_request_id(item, where))
    return flights, ids, True


# --- documentation models (OpenAPI only; requests are never parsed through them) -------------------

_PY_TYPES: dict[str, type] = {"str": str, "int": int, "float": float}


def _doc_field(spec: FlightField) -> tuple[Any, Any]:
    required = spec.name in _REQUIRED
    return (
        _PY_TYPES[spec.kind] if required else _PY_TYPES[spec.kind] | None,
        Field(
            ... if required else None,
            description=spec.doc,
            ge=spec.minimum,
            le=spec.maximum,
            examples=[spec.example] if spec.example is not None else None,
        ),
    )


BatchFlight: type[BaseModel] = create_model(
    "BatchFlight",
    __doc__="One flight of a batch (explain is the batch's, top-level or ?explain=true).",
    **{spec.name: _doc_field(spec) for spec in FIELDS},  # type: ignore[call-overload]
    request_id=(str | None, Field(None, description="Echoed back; generated when absent.")),
)
FlightRequest: type[BaseModel] = create_model(
    "FlightRequest",
    __doc__="One flight to score. Give the scheduled departure as scheduled_departure, sched_ts "
    "or the five local fields.",
    __base__=BatchFlight,
    explain=(bool, Field(False, description="Also return the feature values used.")),
)


class PredictResponse(BaseModel):
    """The answer for one flight."""

    request_id: str
    model_version: str
    probability: float = Field(
        description="Probability that the flight leaves >= 15 min late (or is cancelled)."
    )
    features: dict[str, float | None] | None = Field(None, description="Feature values used (explain only).")


class BatchResponse(BaseModel):
    """The answers for a batch, in request order."""

    model_version: str
    predictions: list[PredictResponse]


def _predict_body_doc(schema: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    batch = {"type": "array", "items": item, "minItems": 1, "maxItems": MAX_BATCH}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            schema,
                            {
                                "type": "object",
                                "required": ["flights"],
                                "properties": {"flights": batch, "explain": {"type": "boolean"}},
                            },
                            batch,
                        ]
                    }
                }
            },
        }
    }


#: The OpenAPI request body of ``/predict``: one flight, ``{"flights": [...]}`` or an array.
PREDICT_BODY_DOC = _predict_body_doc(FlightRequest.model_json_schema(), BatchFlight.model_json_schema())
