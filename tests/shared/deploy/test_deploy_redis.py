"""RedisStore against the real Redis started by the project (``redis_server`` fixture)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from shared.deploy import (
    ConflictError,
    Deployer,
    RedisStore,
    Slot,
    SlotState,
    Strategy,
    TargetState,
    open_store,
)
from shared.deploy.state import AuditEvent, InvariantError
from shared.deploy.store import StateStoreError
from tests.conftest import PrivateRedis
from tests.shared.deploy.deploy_world import CANARY, FP, Crash, CrashingSwitch, World, model


@pytest.fixture
def redis_url(redis_server) -> str:  # type: ignore[no-untyped-def]
    return str(redis_server.url)


def _prefix() -> str:
    return f"test:deploy:{uuid.uuid4().hex[:8]}"


def test_commit_load_audit_and_compare_and_set(redis_url: str) -> None:
    store = RedisStore(redis_url, prefix=_prefix())
    assert store.load("x") == TargetState("x")
    st = TargetState("x")
    st.transition(Slot.BLUE, SlotState.STAGED, version="v1")
    st.deployment = "d1"
    saved = store.commit(st, [AuditEvent("x", "staged", "first")])
    assert saved.revision == 1
    assert store.load("x") == saved
    assert [e.reason for e in store.audit("x")] == ["first"]
    assert store.targets() == ["x"]
    with pytest.raises(ConflictError):
        store.commit(st)  # still at revision 0: someone (we) committed since
    bad = store.load("x")
    bad.live = Slot.GREEN  # a pointer to a slot that is not live must never be written
    with pytest.raises(InvariantError):
        store.commit(bad)
    assert store.load("x").revision == 1
    store.close()


def test_both_stores_return_the_same_last_events_for_any_limit(redis_url: str, tmp_path: Path) -> None:
    stores = [RedisStore(redis_url, prefix=_prefix()), open_store(tmp_path / "state.sqlite")]
    for store in stores:
        state = store.load("x")
        for reason in ("a", "b", "c"):
            state = store.commit(state, [AuditEvent("x", "note", reason)])
    expected = {-5: [], -1: [], 0: [], 1: ["c"], 2: ["b", "c"], 3: ["a", "b", "c"], 9: ["a", "b", "c"]}
    for store in stores:
        assert {n: [e.reason for e in store.audit("x", n)] for n in expected} == expected, store
        store.close()


def test_open_store_picks_redis_for_redis_urls(redis_url: str) -> None:
    store = open_store(redis_url)
    assert isinstance(store, RedisStore)
    store.close()


def test_deployments_and_crash_recovery_on_redis(redis_url: str, tmp_path: Path) -> None:
    prefix = _prefix()
    sw = CrashingSwitch()
    w = World(tmp_path / "unused.sqlite", switch=sw, store=lambda: RedisStore(redis_url, prefix=prefix))
    assert w.deploy("v1").ok
    assert w.deploy("v2", CANARY).ok
    assert w.deployer.rollback().live_version == "v1"
    sw.calls.clear()
    sw.crash_at = 6  # inside the deployment of v3
    with pytest.raises(Crash):
        w.deploy("v3", CANARY)
    sw.crash_at = None
    restarted = w.reopen(switch=CrashingSwitch())
    assert restarted.deployer.state().deployment is not None  # the crash left it in flight
    st = restarted.deployer.recover()
    assert (st.live_version, st.deployment) == ("v1", None)
    assert restarted.served_by() == {"v1"}
    reasons = [e.reason for e in restarted.store.audit("t", 50)]
    assert reasons[-1].startswith("recovered: deployment")
    assert "operator rollback" in reasons


def _on_redis(server: PrivateRedis, world_path: Path, on_bake: Callable[[int], None]) -> World:
    """A world whose deploy state is on ``server``; ``on_bake(n)`` runs at the n-th bake wait."""
    world = World(world_path, store=lambda: RedisStore(server.url, prefix=_prefix(), timeout_s=1.0))
    waits = iter(range(1, 10_000))
    clock = world.clock
    world.deployer = Deployer(
        "t", world.switch, world.store, FP, world.gates, clock.now, clock.sleep, models=model,
        on_bake=lambda _: on_bake(next(waits)),
    )  # fmt: skip
    return world


def test_a_state_store_gone_for_the_rest_of_a_bake_leaves_traffic_on_the_live_version(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """The candidate had all the traffic when Redis died; the deployer cannot record anything, but
    it routes back to the live colour from memory and says how to close the deployment."""
    armed = {"kill": False}

    def kill_at_second_wait(n: int) -> None:
        if armed["kill"] and n >= 2:
            private_redis.stop()

    world = _on_redis(private_redis, tmp_path / "w", kill_at_second_wait)
    assert world.deploy("v1").ok
    armed["kill"] = True
    with pytest.raises(StateStoreError, match=r"traffic is routed back to blue.*mlpatterns rollback t"):
        world.deploy("v2", Strategy.all_at_once(bake_s=4, poll_s=1))
    assert world.switch.weights == {Slot.BLUE: 1.0}
    assert world.served_by() == {"v1"}


def test_a_state_store_that_stalls_for_a_poll_does_not_end_the_bake(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Redis paused (it accepts and never answers) through one poll of the bake: the poll's check
    times out, the bake goes on, and the candidate is promoted once Redis answers again."""
    armed = {"on": False}

    def stall_one_poll(n: int) -> None:
        if armed["on"] and n == 1:
            private_redis.pause()
        elif armed["on"] and n == 2:
            private_redis.resume()

    world = _on_redis(private_redis, tmp_path / "w", stall_one_poll)
    assert world.deploy("v1").ok
    armed["on"] = True
    result = world.deploy("v2", Strategy.all_at_once(bake_s=4, poll_s=1))
    assert result.ok, result.reason
    assert world.store.load("t").live_version == "v2" and world.served_by() == {"v2"}
