"""Property tests (hypothesis) over random sequences of deploys, rollbacks and crashes.

A small model of what the operator should see (which version is live, which is on standby) is
checked after every step, together with the safety invariants: never two live slots, never a live
version that failed a gate, durable routing and the medium always agree.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from shared.deploy import (
    IN_FLIGHT,
    TRANSITIONS,
    DeployRefused,
    GateResult,
    RollbackError,
    Slot,
    SlotState,
    TargetState,
    TransitionError,
)
from tests.shared.deploy.deploy_world import ALL, CANARY, Crash, CrashingSwitch, World

KINDS = ["good", "good", "bad", "err", "drift", "newfeat"]
Trace = list[tuple["Slot", "SlotState", bool]]


def _family(version: str) -> str:
    return "drift" if "drift" in version else "base"


class DeployMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory()
        self.w = World(Path(self._tmp.name) / "p.sqlite", switch=CrashingSwitch())
        self.n = 0
        self.live: str | None = None
        self.standby: str | None = None
        self.failed: set[str] = set()

    def _new_version(self, kind: str) -> str:
        self.n += 1
        return f"v{self.n}" if kind == "good" else f"v{self.n}-{kind}"

    def _after_failed_deploy(self) -> None:
        if self.live is not None:
            self.standby = None  # the idle slot (and the version on standby) was reused

    @rule(kind=st.sampled_from(KINDS), canary=st.booleans(), force=st.booleans())
    def deploy(self, kind: str, canary: bool, force: bool) -> None:
        version = self._new_version(kind)
        strategy = CANARY if canary else ALL
        if kind == "newfeat" and not force:
            with pytest.raises(DeployRefused):
                self.w.deploy(version, strategy)
            return
        # A model of another family is only caught by comparing it with a live one (shadow, PSI).
        other_family = self.live is not None and _family(version) != _family(self.live)
        fails = kind in ("bad", "err") or other_family
        result = self.w.deploy(version, strategy, force=force)
        if not fails:
            assert result.ok, result.reason
            self.live, self.standby = version, self.live
        else:
            assert not result.ok, f"{version} went live"
            self.failed.add(version)
            self._after_failed_deploy()

    @rule()
    def rollback(self) -> None:
        if self.standby is None:
            with pytest.raises(RollbackError):
                self.w.deployer.rollback()
        else:
            self.w.deployer.rollback()
            self.live, self.standby = self.standby, None

    @rule(k=st.integers(1, 30), medium_survives=st.booleans(), canary=st.booleans())
    def crash_during_deploy(self, k: int, medium_survives: bool, canary: bool) -> None:
        sw = self.w.switch
        assert isinstance(sw, CrashingSwitch)
        same_family = self.live is not None and _family(self.live) == "drift"
        version = self._new_version("drift" if same_family else "good")
        sw.calls.clear()
        sw.crash_at = k
        try:
            result = self.w.deploy(version, CANARY if canary else ALL)
        except Crash:
            started = k > (1 if self.live is not None else 0)  # recover() re-routes first when live
            if started:
                self._after_failed_deploy()
            sw.crash_at = None
            self.w = self.w.reopen(switch=sw if medium_survives else CrashingSwitch())
            self.w.deployer.recover()
        else:
            sw.crash_at = None
            assert result.ok, result.reason  # the crash point lay beyond this deployment
            self.live, self.standby = version, self.live

    @invariant()
    def durable_state_is_safe_and_matches_the_model(self) -> None:
        state = self.w.deployer.state()
        state.check()
        assert sum(i.state is SlotState.LIVE for i in state.slots.values()) <= 1
        assert state.deployment is None
        assert state.live_version == self.live
        assert state.live_version not in self.failed
        if self.standby is not None:
            assert state.live is not None
            other = state.slots[state.live.other]
            assert (other.state, other.version) == (SlotState.STANDBY, self.standby)

    @invariant()
    def medium_serves_exactly_the_live_version(self) -> None:
        state = self.w.deployer.state()
        assert self.w.switch.weights == state.weights
        if self.live is not None:
            assert self.w.served_by() == {self.live}

    def teardown(self) -> None:
        self.w.store.close()
        self._tmp.cleanup()


DeployMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=8, deadline=None, suppress_health_check=list(HealthCheck)
)
test_random_operation_sequences = DeployMachine.TestCase


_RESETS = (SlotState.STAGED, SlotState.FAILED, SlotState.ROLLED_BACK, SlotState.RETIRED)


@st.composite
def _moves(draw: st.DrawFn) -> list[tuple[Slot, SlotState]]:
    """Mostly moves the table allows from the slot's current state, preferring the ones that do not
    abort (so many sequences reach LIVE), with some illegal moves mixed in."""
    current = {s: SlotState.EMPTY for s in Slot}
    moves = []
    for _ in range(draw(st.integers(0, 60))):
        slot = draw(st.sampled_from(list(Slot)))
        legal = sorted(TRANSITIONS[current[slot]])
        onward = [s for s in legal if s not in (SlotState.FAILED, SlotState.ROLLED_BACK)] or legal
        kind = draw(st.integers(0, 9))
        choices = onward if kind < 6 else legal if kind < 9 else list(SlotState)
        to = draw(st.sampled_from(choices))
        if to in legal:
            current[slot] = to
        moves.append((slot, to))
    return moves


MOVES = _moves()


def _apply(moves: list[tuple[Slot, SlotState]]) -> tuple[TargetState, Trace]:
    """Apply the moves the state accepts; record for each: (slot, new state, verified since reset)."""
    state = TargetState("x")
    trace: Trace = []
    verified = {s: False for s in Slot}  # a VERIFIED came after the last STAGED/FAILED/ROLLED_BACK/RETIRED
    for i, (slot, to) in enumerate(moves):
        before = state.to_json()
        try:
            state.transition(slot, to, version=f"v{i}")
        except TransitionError:
            assert state.to_json() == before  # a refused move changes nothing
            continue
        if to in _RESETS:
            verified[slot] = False
        verified[slot] |= to is SlotState.VERIFIED
        trace.append((slot, to, verified[slot]))
    return state, trace


def test_live_is_reachable_only_through_passed_verification() -> None:
    reached_live: list[bool] = []

    @settings(max_examples=300, deadline=None, database=None)
    @given(MOVES)
    def check(moves: list[tuple[Slot, SlotState]]) -> None:
        _, trace = _apply(moves)
        for slot, to, verified in trace:
            if to in (SlotState.CANARY, SlotState.LIVE):
                assert verified, f"{slot} reached {to} without a VERIFIED since its last reset: {trace}"
        reached_live.append(any(to is SlotState.LIVE for _, to, _ in trace))

    check()
    # The property is only tested by sequences that get there: at least half must (about 70 % do).
    assert sum(reached_live) >= len(reached_live) // 2, (
        f"{sum(reached_live)}/{len(reached_live)} reached LIVE"
    )


@settings(max_examples=200, deadline=None)
@given(MOVES)
def test_state_survives_json_round_trip(moves: list[tuple[Slot, SlotState]]) -> None:
    state, _ = _apply(moves)
    state.gates.append(GateResult("golden_set", False, "x", phase="verify", metrics={"max_abs_diff": 0.5}))
    assert TargetState.from_json(state.to_json()) == state


def test_transition_table_shape() -> None:
    assert set(TRANSITIONS) == set(SlotState)
    reach_live = {s for s, nxt in TRANSITIONS.items() if SlotState.LIVE in nxt}
    assert reach_live == {SlotState.CANARY, SlotState.STANDBY}
    assert SlotState.LIVE not in IN_FLIGHT and SlotState.CANARY in IN_FLIGHT
