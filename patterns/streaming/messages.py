"""What travels on the wire: topic names, the event schema, creating the topics, the producer policy.

Every input message is one JSON object with a ``type``:

* ``scheduled`` (a prediction request, at ``sched_ts``): ``flight_id`` + the raw request fields.
* ``departed`` (state, at ``dep_ts``): ``event_id`` (= flight_id), ``carrier``, ``origin``, ``dep_delay``.
* ``weather`` (state, at ``obs_ts``): ``event_id``, ``origin`` and the six observations (null = missing).

The Kafka message timestamp is the event time (ms), so ``offsets_for_times`` finds "the first event at
or after t" in a partition: that is how a worker cuts the log between history and stream.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.errors import UserError
from shared.example.flights import REQUEST_FIELDS, WEATHER_FIELDS

__all__ = [
    "KINDS",
    "MAX_FUTURE_S",
    "SCORING_FAILURE",
    "SOURCE_OF",
    "Event",
    "SchemaError",
    "TopicNameError",
    "Topics",
    "dead_letter_headers",
    "decode",
    "encode",
    "ensure_topics",
    "prediction_message",
    "producer",
]

#: message type -> (time field, id field)
KINDS: dict[str, tuple[str, str]] = {
    "weather": ("obs_ts", "event_id"),
    "departed": ("dep_ts", "event_id"),
    "scheduled": ("sched_ts", "flight_id"),
}
#: message type -> the feature set's event source it updates (requests update none)
SOURCE_OF = {"weather": "weather", "departed": "departures"}
#: an event time later than this past the wall clock is refused (a unit error, not an event)
MAX_FUTURE_S = 86400
#: how a dead letter's ``error`` header starts when a valid event could not be scored (the bake
#: counts those against the version; malformed input, which every version refuses, it does not)
SCORING_FAILURE = "features: "
#: order of types at equal event time: an observation stamped t is "at or before t" for a request at t
TIE_ORDER = {"weather": 0, "departed": 1, "scheduled": 2}

_INT, _NUM, _STR = "int", "number", "str"
_INT64 = 2**63
_SCHEMA: dict[str, dict[str, str]] = {
    "scheduled": {
        "flight_id": _STR, "year": _INT, "month": _INT, "day": _INT, "hour": _INT, "minute": _INT,
        "carrier": _STR, "flight": _INT, "origin": _STR, "dest": _STR, "distance": _NUM, "sched_ts": _INT,
    },
    "departed": {"event_id": _STR, "dep_ts": _INT, "carrier": _STR, "origin": _STR, "dep_delay": _NUM},
    "weather": {"event_id": _STR, "origin": _STR, "obs_ts": _INT, **{f: "number?" for f in WEATHER_FIELDS}},
}  # fmt: skip
assert set(_SCHEMA["scheduled"]) - {"flight_id"} == set(REQUEST_FIELDS)


class SchemaError(ValueError):
    """A message that cannot be decoded or does not follow the schema (it goes to the dead letters)."""


@dataclass(frozen=True)
class Event:
    """One decoded input message."""

    kind: str
    ts: int
    id: str
    record: dict[str, Any]


def encode(kind: str, record: Mapping[str, Any]) -> bytes:
    """JSON bytes of one event; NaN becomes null (JSON has no NaN)."""
    body: dict[str, Any] = {"type": kind}
    for name in _SCHEMA[kind]:
        value = record[name]
        if hasattr(value, "item"):
            value = value.item()
        body[name] = None if isinstance(value, float) and math.isnan(value) else value
    return json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes | None) -> Event:
    """Parse and validate one message; raises ``SchemaError`` saying what is wrong."""
    if raw is None:
        raise SchemaError("empty message (null value)")
    try:
        body = json.loads(raw, parse_constant=_no_constant)
    except SchemaError:
        raise
    # ValueError also covers an integer past Python's digit limit; RecursionError, deep nesting.
    except (ValueError, RecursionError) as exc:
        raise SchemaError(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise SchemaError(f"expected a JSON object, got {type(body).__name__}")
    kind = body.get("type")
    if kind not in _SCHEMA:
        raise SchemaError(f"unknown type {kind!r} (expected one of {sorted(_SCHEMA)})")
    record: dict[str, Any] = {}
    for name, expected in _SCHEMA[kind].items():
        if name not in body:
            raise SchemaError(f"{kind}: field {name!r} required")
        record[name] = _check(kind, name, body[name], expected)
    time_field, id_field = KINDS[kind]
    ts = record[time_field]
    # An event time in milliseconds (or any other far-future time) would become the partition's
    # committed cut-off and watermark: every later event would then be dropped as late.
    if ts > time.time() + MAX_FUTURE_S:
        raise SchemaError(
            f"{kind}: field {time_field!r} is {ts}, more than a day in the future: "
            "event times are epoch seconds, not milliseconds"
        )
    return Event(kind, ts, record[id_field], record)


def prediction_message(
    ev: Event, message: Any, version: str, probability: float, threshold: float, now_ms: int
) -> bytes:
    """What a worker publishes for the scheduled flight ``ev`` read from Kafka ``message``."""
    sent = dict(message.headers or ()).get("sent_ms")
    return json.dumps(
        {
            "flight_id": ev.id,
            "model_version": version,
            "probability": probability,
            "delayed": probability >= threshold,
            "sched_ts": ev.ts,
            "partition": message.partition,
            "offset": message.offset,
            "sent_ms": int(sent) if sent else None,
            "produced_ms": now_ms,
        }
    ).encode()


def dead_letter_headers(message: Any, error: str, worker: str) -> list[tuple[str, bytes]]:
    """A dead letter keeps the refused message's bytes; its headers say why, whence and who."""
    return [
        ("error", error.encode()),
        ("source", f"{message.topic}/{message.partition}/{message.offset}".encode()),
        ("worker", worker.encode()),
    ]


def _no_constant(name: str) -> Any:
    # json.loads reads NaN and Infinity by default; a missing value travels as null.
    raise SchemaError(f"not JSON: {name} is not a JSON value (send null for a missing value)")


def _check(kind: str, name: str, value: Any, expected: str) -> Any:
    if expected == "number?" and value is None:
        return math.nan
    if expected == _STR:
        ok = isinstance(value, str) and value != ""
    elif isinstance(value, bool) or not isinstance(value, int | float):
        ok = False
    elif expected == _INT:
        # Integers end up in int64 columns and Kafka timestamps: a larger one would crash there,
        # after the decode, on the same offset at every restart.
        ok = isinstance(value, int) and -_INT64 <= value < _INT64
    else:
        try:
            value = float(value)  # OverflowError: an integer beyond the largest float
        except OverflowError:
            raise SchemaError(f"{kind}: field {name!r} must be a finite number, got a huge integer") from None
        ok = math.isfinite(value)
    if not ok:
        raise SchemaError(f"{kind}: field {name!r} must be {expected.rstrip('?')}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    # The reason travels in a dead letter's header: a value of hundreds of digits would swamp it.
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


#: What Kafka allows in a topic name; the prefix starts every topic (and group) name.
_TOPIC_CHARS = re.compile(r"[A-Za-z0-9._-]+")


class TopicNameError(UserError, ValueError):
    """A topic prefix Kafka would refuse as part of a topic name."""


@dataclass(frozen=True)
class Topics:
    """Names of everything one streaming deployment uses, derived from one ``prefix``."""

    prefix: str = "mlp"

    def __post_init__(self) -> None:
        # Checked here, once: Kafka would refuse the names only later, at the first topic created
        # or subscribed, with an error that names neither the prefix nor the setting.
        if not _TOPIC_CHARS.fullmatch(self.prefix):
            raise TopicNameError(
                f"topic prefix {self.prefix!r} is not allowed: use ASCII letters, digits, '.', '_' "
                "and '-' (it starts every topic name)"
            )

    @property
    def events(self) -> str:
        return f"{self.prefix}.events"

    @property
    def control(self) -> str:
        return f"{self.prefix}.control"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}.dlq"

    @property
    def probe_replies(self) -> str:
        return f"{self.prefix}.probe-replies"

    def predictions(self, version: str) -> str:
        return f"{self.prefix}.predictions.{version}"

    def probes(self, version: str) -> str:
        return f"{self.prefix}.probe.{version}"

    def group(self, version: str) -> str:
        return f"{self.prefix}.worker.{version}"


#: Messages carry 2013 event times: time-based retention would delete them at once.
_KEEP = {"retention.ms": "-1", "message.timestamp.type": "CreateTime"}


def producer(bootstrap: str, client_id: str, linger_ms: int = 0, **options: Any) -> Any:
    """A ``KafkaProducer`` with this pattern's delivery policy (``options``: more of its settings).

    ``acks="all"`` and idempotence: a send is acknowledged only once replicated, and retries keep
    per-partition order (the replay order is the features' correctness; commits follow acks).
    Never auto-creates a topic: ``ensure_topics`` creates each with its partition count.
    """
    from kafka import KafkaProducer

    return KafkaProducer(
        allow_auto_create_topics=False,
        bootstrap_servers=bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=linger_ms,
        client_id=client_id,
        **options,
    )


def ensure_topics(bootstrap: str, topics: Mapping[str, int], compacted: tuple[str, ...] = ()) -> None:
    """Create missing topics (name -> partitions), keeping messages forever; existing ones are left."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="mlp-streaming-admin")
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(
                name,
                partitions,
                1,
                topic_configs={**_KEEP, "cleanup.policy": "compact"} if name in compacted else dict(_KEEP),
            )
            for name, partitions in topics.items()
            if name not in existing
        ]
        if new:
            # TopicAlreadyExists: created by a concurrent worker, with the same definition.
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        _wait_for_leaders(admin, topics)
    finally:
        admin.close()


def _wait_for_leaders(admin: Any, topics: Mapping[str, int], timeout_s: float = 30.0) -> None:
    # A client that reads metadata while partitions are still being created sees fewer of them.
    deadline = time.monotonic() + timeout_s
    while True:
        described = {t["name"]: t for t in admin.describe_topics(list(topics))}
        missing = [
            name
            for name, n in topics.items()
            if name not in described
            or described[name].get("error_code", 0) != 0
            or len([p for p in described[name]["partitions"] if p.get("leader_id", -1) >= 0]) < n
        ]
        if not missing:
            return
        short = [m for m in missing if m in described and 0 < len(described[m]["partitions"]) < topics[m]]
        if short:  # e.g. auto-created by a client that subscribed before we created it
            raise ValueError(f"topics exist with fewer partitions than needed: {short}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without leaders after {timeout_s:.0f}s: {missing}")
        time.sleep(0.1)
