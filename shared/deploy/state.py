"""The deployment model: two slots per target, their states, the live pointer and the audit record.

Everything here is plain data plus validation, so the state can be persisted as one JSON document
and checked before every durable write (``TargetState.check``). The transition table is the single
place that says what may follow what; in particular ``LIVE`` can only be reached from ``CANARY``
(which is only reachable after verification passed) or from ``STANDBY`` (a formerly live version),
so a slot that failed verification can never become live.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "IN_FLIGHT",
    "TRANSITIONS",
    "AuditEvent",
    "GateResult",
    "InvariantError",
    "Slot",
    "SlotInfo",
    "SlotState",
    "TargetState",
    "TransitionError",
]


class Slot(StrEnum):
    BLUE = "blue"
    GREEN = "green"

    @property
    def other(self) -> Slot:
        return Slot.GREEN if self is Slot.BLUE else Slot.BLUE


class SlotState(StrEnum):
    EMPTY = "empty"  # nothing deployed in this slot yet
    STAGED = "staged"  # a version is being placed into the slot (no traffic)
    VERIFYING = "verifying"  # readiness / golden-set gates running (no traffic)
    VERIFIED = "verified"  # pre-traffic gates passed
    SHADOW = "shadow"  # receives a mirror of live traffic; its answers are only compared
    CANARY = "canary"  # serves a share of real traffic (up to 100 %) during a bake; not committed
    LIVE = "live"  # the committed live version (the live pointer names this slot)
    STANDBY = "standby"  # the previous live version, still loaded: instant rollback target
    FAILED = "failed"  # failed a gate before serving real traffic
    ROLLED_BACK = "rolled_back"  # traffic was moved away from it (gate, operator or crash recovery)
    RETIRED = "retired"  # unloaded; the slot is free for the next deployment


#: States of the slot a deployment is working on; at most one slot is ever in one of these.
IN_FLIGHT: frozenset[SlotState] = frozenset(
    {SlotState.STAGED, SlotState.VERIFYING, SlotState.VERIFIED, SlotState.SHADOW, SlotState.CANARY}
)

_S = SlotState
_ABORT = {_S.FAILED, _S.ROLLED_BACK}
TRANSITIONS: Mapping[SlotState, frozenset[SlotState]] = {
    _S.EMPTY: frozenset({_S.STAGED}),
    _S.STAGED: frozenset({_S.VERIFYING, *_ABORT}),
    _S.VERIFYING: frozenset({_S.VERIFIED, *_ABORT}),
    _S.VERIFIED: frozenset({_S.SHADOW, _S.CANARY, *_ABORT}),
    _S.SHADOW: frozenset({_S.CANARY, *_ABORT}),
    _S.CANARY: frozenset({_S.CANARY, _S.LIVE, _S.ROLLED_BACK}),
    _S.LIVE: frozenset({_S.STANDBY, _S.ROLLED_BACK}),
    _S.STANDBY: frozenset({_S.LIVE, _S.RETIRED}),
    _S.FAILED: frozenset({_S.RETIRED}),
    _S.ROLLED_BACK: frozenset({_S.RETIRED}),
    _S.RETIRED: frozenset({_S.STAGED}),
}


class TransitionError(ValueError):
    """A state change the transition table does not allow."""


class InvariantError(AssertionError):
    """A target state that must never be persisted (two live slots, a dangling pointer, ...)."""


@dataclass
class SlotInfo:
    state: SlotState = SlotState.EMPTY
    version: str | None = None


@dataclass(frozen=True)
class GateResult:
    """Outcome of one gate evaluation; ``phase`` says when it ran (``verify``, ``shadow``, ``bake 10%``)."""

    gate: str
    passed: bool
    detail: str
    phase: str = ""
    skipped: bool = False
    metrics: Mapping[str, float] = field(default_factory=dict)
    at: float = field(default_factory=time.time)

    @property
    def outcome(self) -> str:
        return "skip" if self.skipped else ("pass" if self.passed else "FAIL")


@dataclass(frozen=True)
class AuditEvent:
    """One appended line of the audit log: when, what moved from where to where, and why."""

    target: str
    action: str
    reason: str
    slot: str | None = None
    version: str | None = None
    from_state: str | None = None
    to_state: str | None = None
    gate: str | None = None
    deployment: str | None = None
    at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class TargetState:
    """Durable state of one deployment target (for example ``rest_api``)."""

    target: str
    slots: dict[Slot, SlotInfo] = field(default_factory=lambda: {s: SlotInfo() for s in Slot})
    live: Slot | None = None
    weights: dict[Slot, float] = field(default_factory=dict)
    deployment: str | None = None  # id of the in-flight deployment
    owner: str | None = None  # "host:pid" of the process running it
    gates: list[GateResult] = field(default_factory=list)  # results of the latest deployment
    revision: int = 0  # bumped by every durable write; used for compare-and-set

    @property
    def candidate(self) -> Slot | None:
        """The slot an in-flight deployment is working on, if any."""
        return next((s for s in Slot if self.slots[s].state in IN_FLIGHT), None)

    @property
    def live_version(self) -> str | None:
        return None if self.live is None else self.slots[self.live].version

    def transition(self, slot: Slot, to: SlotState, version: str | None = None) -> SlotState:
        """Move ``slot`` to ``to`` (validated; staging needs ``version``) and return the old state."""
        info = self.slots[slot]
        if to not in TRANSITIONS[info.state]:
            raise TransitionError(f"{self.target}/{slot}: {info.state} -> {to} is not allowed")
        if to is SlotState.STAGED:
            if not version:
                raise TransitionError("staging needs a version")
            info.version = version
        old, info.state = info.state, to
        if to is SlotState.LIVE:
            self.live = slot
        elif self.live is slot:
            self.live = None
        return old

    def check(self) -> None:
        """Raise InvariantError unless this state is safe to persist."""
        live = [s for s in Slot if self.slots[s].state is SlotState.LIVE]
        if len(live) > 1:
            raise InvariantError(f"{self.target}: two live slots")
        if self.live != (live[0] if live else None):
            raise InvariantError(f"{self.target}: live pointer {self.live} but live slots {live}")
        flying = [s for s in Slot if self.slots[s].state in IN_FLIGHT]
        if len(flying) > 1:
            raise InvariantError(f"{self.target}: two slots in flight")
        if bool(flying) != (self.deployment is not None):
            raise InvariantError(f"{self.target}: deployment id {self.deployment} but in-flight {flying}")
        for slot, info in self.slots.items():
            if (info.state is SlotState.EMPTY) != (info.version is None):
                raise InvariantError(f"{self.target}/{slot}: state {info.state} with version {info.version}")
        serving = {s for s, w in self.weights.items() if w > 0}
        allowed = {s for s in Slot if self.slots[s].state in (SlotState.LIVE, SlotState.CANARY)}
        if not serving <= allowed:
            raise InvariantError(f"{self.target}: traffic routed to {serving - allowed}")
        if serving and not math.isclose(sum(self.weights.values()), 1.0, abs_tol=1e-9):
            raise InvariantError(f"{self.target}: weights {self.weights} do not sum to 1")
        if self.live is not None and not serving:
            raise InvariantError(f"{self.target}: live slot {self.live} receives no traffic")

    def to_json(self) -> str:
        doc = {
            "target": self.target,
            "slots": {s.value: {"state": i.state.value, "version": i.version} for s, i in self.slots.items()},
            "live": self.live.value if self.live else None,
            "weights": {s.value: w for s, w in self.weights.items()},
            "deployment": self.deployment,
            "owner": self.owner,
            "gates": [asdict(g) for g in self.gates],
            "revision": self.revision,
        }
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TargetState:
        doc = json.loads(text)
        return cls(
            target=doc["target"],
            slots={Slot(s): SlotInfo(SlotState(i["state"]), i["version"]) for s, i in doc["slots"].items()},
            live=Slot(doc["live"]) if doc["live"] else None,
            weights={Slot(s): float(w) for s, w in doc["weights"].items()},
            deployment=doc["deployment"],
            owner=doc["owner"],
            gates=[GateResult(**g) for g in doc["gates"]],
            revision=int(doc["revision"]),
        )
