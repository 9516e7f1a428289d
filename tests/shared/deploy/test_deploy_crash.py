"""Crash safety: a deployment killed between any two steps recovers with the previous version live.

A ``Crash`` is a BaseException, so no ``except Exception``/rollback code runs after it: the same as
the process being killed. We crash (a) inside each switch hook call in turn and (b) just before and
just after each durable write, then restart (fresh store connection; the medium either survived or
was restarted too) and recover.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.deploy import InProcessSwitch, Slot, SlotState, SQLiteStore, TargetState
from shared.deploy.state import AuditEvent
from tests.shared.deploy.deploy_world import CANARY, Crash, CrashingSwitch, World, predictor


class CrashingStore(SQLiteStore):
    """Dies just before (write lost) or just after (write durable) its ``crash_at``-th commit."""

    def __init__(self, path: Path, crash_at: int | None = None, after: bool = False) -> None:
        super().__init__(path, synchronous="NORMAL")
        self.crash_at, self.after, self.writes = crash_at, after, 0

    def _write(self, state: TargetState, expected: int, events: object) -> None:
        self.writes += 1
        hit = self.writes == self.crash_at
        if hit and not self.after:
            raise Crash(f"killed before write {self.writes}")
        super()._write(state, expected, events)  # type: ignore[arg-type]
        if hit and self.after:
            raise Crash(f"killed after write {self.writes}")


def _v1_live(path: Path, switch: InProcessSwitch) -> World:
    w = World(path, switch=switch)
    assert w.deploy("v1").ok
    return w


def _assert_recovered(w: World, live: str, why: str) -> None:
    st = w.deployer.recover()
    st.check()
    assert st.deployment is None, why
    assert st.live_version == live, why
    assert w.switch.weights == {st.live: 1.0}, why
    assert w.served_by() == {live}, why
    assert all(
        i.state not in (SlotState.STAGED, SlotState.VERIFYING, SlotState.CANARY) for i in st.slots.values()
    )


def _hook_calls_of_clean_deploy(tmp_path: Path) -> int:
    w = _v1_live(tmp_path / "count.sqlite", CrashingSwitch())
    w.switch.calls.clear()  # type: ignore[attr-defined]
    assert w.deploy("v2", CANARY).ok
    return len(w.switch.calls)  # type: ignore[attr-defined]


@pytest.mark.parametrize("medium_survives", [True, False], ids=["medium-survives", "medium-restarts"])
def test_kill_inside_each_switch_hook_recovers_previous_version(
    tmp_path: Path, medium_survives: bool
) -> None:
    n = _hook_calls_of_clean_deploy(tmp_path)
    assert n > 10  # stage, ready, predict, shadow..., route x3, observe...
    for k in range(1, n + 1):
        sw = CrashingSwitch()
        w = _v1_live(tmp_path / f"hook{k}.sqlite", sw)
        sw.calls.clear()
        sw.crash_at = k
        with pytest.raises(Crash) as info:
            w.deploy("v2", CANARY)
        sw.crash_at = None
        restarted = w.reopen(switch=sw if medium_survives else InProcessSwitch(predictor))
        # call 1 is recover()'s re-route before the deployment starts; every later one is mid-flight
        assert (restarted.deployer.state().deployment is not None) == (k > 1), str(info.value)
        _assert_recovered(restarted, "v1", str(info.value))
        if k > 1:
            assert restarted.store.audit("t", 1)[0].reason.startswith("recovered: deployment")
        assert restarted.deploy("v3").ok, f"not usable after {info.value}"


def test_switch_error_in_each_hook_rolls_back_automatically(tmp_path: Path) -> None:
    n = _hook_calls_of_clean_deploy(tmp_path)
    for k in range(1, n + 1):
        sw = CrashingSwitch(exc=RuntimeError)
        w = _v1_live(tmp_path / f"err{k}.sqlite", sw)
        sw.calls.clear()
        sw.crash_at = k
        if k == 1:  # recover()'s re-route, before anything starts: the error surfaces unchanged
            with pytest.raises(RuntimeError, match="crash in route"):
                w.deploy("v2", CANARY)
            assert w.deployer.state().live_version == "v1"
            continue
        result = w.deploy("v2", CANARY)
        failing_hook = sw.calls[k - 1]
        st = w.deployer.state()
        if failing_hook == "ready":  # a failing probe is retried by the readiness gate
            assert result.ok and st.live_version == "v2"
            continue
        assert not result.ok, failing_hook
        assert st.live_version == "v1" and st.deployment is None, failing_hook
        assert sw.weights == {Slot.BLUE: 1.0}, failing_hook
        assert w.served_by() == {"v1"}


def test_kill_around_each_durable_write(tmp_path: Path) -> None:
    counter = _v1_live(tmp_path / "writes.sqlite", InProcessSwitch(predictor))
    counting = CrashingStore(counter.path)
    counter.deployer = counter._deployer(counter.switch, counting)
    assert counter.deploy("v2", CANARY).ok
    n = counting.writes
    assert n >= 6  # stage, verifying, shadow, 3 canary steps, promotion
    for k in range(1, n + 1):
        for after in (False, True):
            w = _v1_live(tmp_path / f"w{k}{after}.sqlite", InProcessSwitch(predictor))
            w.store = CrashingStore(w.path, crash_at=k, after=after)
            w.deployer = w._deployer(w.switch, w.store)
            with pytest.raises(Crash) as info:
                w.deploy("v2", CANARY)
            promoted = k == n and after  # only the last write moves the live pointer
            restarted = w.reopen(switch=w.switch)
            _assert_recovered(restarted, "v2" if promoted else "v1", str(info.value))


@pytest.mark.parametrize("after", [False, True], ids=["before-commit", "after-commit"])
def test_kill_during_operator_rollback_is_never_ambiguous(tmp_path: Path, after: bool) -> None:
    w = _v1_live(tmp_path / "rb.sqlite", InProcessSwitch(predictor))
    assert w.deploy("v2").ok
    revision = w.deployer.state().revision
    w.store = CrashingStore(w.path, crash_at=1, after=after)
    w.deployer = w._deployer(w.switch, w.store)
    with pytest.raises(Crash):
        w.deployer.rollback()
    assert w.switch.weights == {Slot.BLUE: 1.0}  # the medium had already moved
    restarted = w.reopen(switch=w.switch)
    # Whatever the durable pointer says wins, and the medium is brought in line with it.
    _assert_recovered(restarted, "v1" if after else "v2", "rollback crash")
    assert restarted.deployer.state().revision == revision + (1 if after else 0)


def test_store_writes_are_atomic_with_their_audit_events(tmp_path: Path) -> None:
    store = CrashingStore(tmp_path / "a.sqlite", crash_at=2, after=False)
    st = TargetState("x")
    st = store.commit(st, [AuditEvent("x", "note", "first")])
    st.transition(Slot.BLUE, SlotState.STAGED, version="v1")
    st.deployment = "d1"
    with pytest.raises(Crash):
        store.commit(st, [AuditEvent("x", "staged", "second")])
    store.close()
    fresh = SQLiteStore(tmp_path / "a.sqlite")
    assert fresh.load("x").slots[Slot.BLUE].state is SlotState.EMPTY
    assert [e.reason for e in fresh.audit("x")] == ["first"]
