"""End-to-end behaviour of Deployer with the reference switch: promotion, gates, rollback."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from shared.deploy import (
    BakeMetrics,
    Deployer,
    DeploymentInFlight,
    DeployRefused,
    GoldenSetGate,
    GuardrailGate,
    InProcessSwitch,
    ReadinessGate,
    RollbackError,
    ShadowGate,
    Slot,
    SlotState,
    Strategy,
    Switch,
)
from tests.shared.deploy.deploy_world import ALL, CANARY, FP, World, make_gates, model, predictor


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "deploy.sqlite")


def _states(w: World) -> dict[str, tuple[str, str | None]]:
    st = w.deployer.state()
    return {s.value: (i.state.value, i.version) for s, i in st.slots.items()}


def test_first_deploy_goes_live_in_blue(world: World) -> None:
    result = world.deploy("v1")
    assert result.ok, result.reason
    st = world.deployer.state()
    assert (st.live, st.live_version, st.deployment) == (Slot.BLUE, "v1", None)
    assert world.switch.weights == {Slot.BLUE: 1.0}
    assert world.served_by() == {"v1"}
    gates = {(g.phase, g.gate): g.outcome for g in st.gates}
    assert gates[("verify", "golden_set")] == "pass"
    assert gates[("shadow", "shadow")] == "skip"  # nothing live to compare with yet


def test_on_bake_counts_the_bake_waits_only(world: World) -> None:
    """A progress bar fed by ``on_bake`` ends at the plan's bake time: the readiness and shadow
    gates' polling (which sleeps too) is not counted."""
    assert world.deploy("v1").ok
    waits: list[float] = []
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        world.clock.sleep(seconds)

    deployer = Deployer("t", world.switch, world.store, FP, world.gates, world.clock.now, sleep,
                        models=model, on_bake=waits.append)  # fmt: skip
    assert deployer.deploy(model("v2"), CANARY).ok
    assert sum(waits) == CANARY.bake_s * len(CANARY.steps)
    assert sum(slept) > sum(waits)  # the shadow gate waited for mirrored pairs as well


def test_canary_walks_the_steps_then_keeps_previous_on_standby(world: World) -> None:
    assert world.deploy("v1").ok
    result = world.deploy("v2", CANARY)
    assert result.ok, result.reason
    assert _states(world) == {"blue": ("standby", "v1"), "green": ("live", "v2")}
    routes = [e.reason for e in world.store.audit("t", 100) if e.to_state == "canary" and e.version == "v2"]
    assert routes == ["route blue=90% green=10%", "route blue=50% green=50%", "route green=100%"]
    bakes = [g for g in result.gates if g.gate == "guardrails"]
    assert [g.phase for g in bakes] == ["bake 10%", "bake 50%", "bake 100%"]
    assert all(g.passed for g in bakes)
    assert "psi" in bakes[-1].metrics
    assert world.served_by() == {"v2"}


def test_golden_set_mismatch_fails_before_any_traffic(world: World) -> None:
    assert world.deploy("v1").ok
    result = world.deploy("v2-bad", CANARY)
    assert not result.ok
    assert result.reason.startswith("golden_set gate failed")
    assert _states(world)["green"] == ("failed", "v2-bad")
    assert world.deployer.state().live_version == "v1"
    assert all(e.to_state != "canary" for e in world.store.audit("t", 100) if e.version == "v2-bad")
    last = world.store.audit("t", 1)[0]
    assert (last.action, last.gate, last.to_state) == ("failed", "golden_set", "failed")


def test_shadow_disagreement_fails_and_records_agreement(world: World) -> None:
    assert world.deploy("v1").ok
    result = world.deploy("v2-drift")
    assert not result.ok
    shadow = next(g for g in result.gates if g.gate == "shadow")
    assert not shadow.passed and shadow.metrics["agreement"] < 0.85
    assert world.served_by() == {"v1"}


def test_shadow_compares_the_decisions_each_version_takes_at_its_own_cut(world: World) -> None:
    # Same scores as v1 (mean |diff| ~1e-4), but "delayed" from 0.8 instead of v1's 0.5.
    assert world.deploy("v1").ok
    result = world.deploy("v2-cut")
    shadow = next(g for g in result.gates if g.gate == "shadow")
    assert not result.ok and not shadow.passed
    assert shadow.metrics["mean_abs_diff"] < 0.01 and shadow.metrics["agreement"] < 0.85
    assert (shadow.metrics["live_threshold"], shadow.metrics["candidate_threshold"]) == (0.5, 0.8)
    assert "(min 85%, cuts 0.500 live 0.800 new)" in shadow.detail
    assert world.served_by() == {"v1"}


def test_shadow_reads_the_live_versions_cut_from_its_card(world: World) -> None:
    assert world.deploy("v1-cut").ok  # first deployment: nothing to shadow
    assert world.deploy("v2-cut").ok  # both cut at 0.8
    result = world.deploy("v3")  # back to 0.5 against the live 0.8
    shadow = next(g for g in result.gates if g.gate == "shadow")
    assert not result.ok and shadow.metrics["live_threshold"] == 0.8


def test_shadow_at_one_fixed_cut_or_without_the_live_card(tmp_path: Path) -> None:
    fixed = [replace(g, threshold=0.5) if isinstance(g, ShadowGate) else g for g in make_gates()]
    w = World(tmp_path / "fixed.sqlite", gates=fixed)
    assert w.deploy("v1").ok
    assert w.deploy("v2-cut").ok  # judged at 0.5 on both sides: the scores agree
    blind = World(tmp_path / "blind.sqlite")
    blind.deployer = Deployer(
        "t", blind.switch, blind.store, FP, blind.gates, blind.clock.now, blind.clock.sleep
    )
    assert blind.deploy("v1").ok
    result = blind.deploy("v2-cut")  # no lookup for v1's card: both are judged at v2-cut's 0.8
    shadow = next(g for g in result.gates if g.gate == "shadow")
    assert result.ok and shadow.metrics["live_threshold"] == 0.8


def test_error_rate_during_bake_rolls_back(world: World) -> None:
    assert world.deploy("v1").ok
    result = world.deploy("v2-err", CANARY)
    assert not result.ok
    assert "error rate" in result.reason
    assert _states(world) == {"blue": ("live", "v1"), "green": ("rolled_back", "v2-err")}
    assert world.switch.weights == {Slot.BLUE: 1.0}
    assert world.served_by() == {"v1"}
    event = world.store.audit("t", 1)[0]
    assert (event.action, event.gate) == ("rolled_back", "guardrails")


def test_prediction_drift_trips_psi_guardrail(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gates = [g for g in make_gates() if g.phase != "shadow"]  # let the drifted model reach the bake
    w = World(tmp_path / "d.sqlite", gates=gates)
    assert w.deploy("v1").ok
    result = w.deploy("v2-drift", CANARY)
    assert not result.ok and "psi" in result.reason
    failing = next(g for g in result.gates if not g.passed)
    assert failing.metrics["psi"] > 0.25
    assert w.deployer.state().live_version == "v1"


class _SlowSwitch(InProcessSwitch):
    """Reports a slow p99 for versions tagged ``slow`` (latency is injected, not measured)."""

    def observe(self, slot: Slot) -> BakeMetrics:
        m = super().observe(slot)
        return replace(m, p99_ms=900.0) if "slow" in self.versions.get(slot, "") else m


def test_latency_guardrail_rolls_back(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gates = [*make_gates()[:3], GuardrailGate(max_p99_ms=250.0, min_requests=20, min_psi_samples=300)]
    w = World(tmp_path / "s.sqlite", switch=_SlowSwitch(predictor), gates=gates)
    assert w.deploy("v1").ok
    result = w.deploy("v2-slow")
    assert not result.ok and "p99 900.0ms > 250ms" in result.reason
    assert w.deployer.state().live_version == "v1"


def test_fingerprint_mismatch_is_refused_unless_forced(world: World) -> None:
    assert world.deploy("v1").ok
    with pytest.raises(DeployRefused, match="features-bbbb != running features " + FP):
        world.deploy("v2-newfeat")
    assert _states(world)["green"] == ("empty", None)
    assert world.store.audit("t", 1)[0].action == "refused"
    forced = world.deploy("v2-newfeat", force=True)
    assert forced.ok
    assert "(forced)" in forced.gates[0].detail


def test_same_version_twice_is_refused(world: World) -> None:
    assert world.deploy("v1").ok
    with pytest.raises(DeployRefused, match="already live"):
        world.deploy("v1")


def test_rollback_restores_previous_version(world: World) -> None:
    assert world.deploy("v1").ok
    assert world.deploy("v2").ok
    st = world.deployer.rollback("bad business metrics")
    assert (st.live_version, st.weights) == ("v1", {Slot.BLUE: 1.0})
    assert _states(world) == {"blue": ("live", "v1"), "green": ("rolled_back", "v2")}
    assert world.served_by() == {"v1"}
    assert world.store.audit("t", 1)[0].reason == "bad business metrics"
    with pytest.raises(RollbackError, match="no previous version on standby"):
        world.deployer.rollback()
    # the rolled-back slot is reused by the next deployment
    assert world.deploy("v3").ok
    assert _states(world) == {"blue": ("standby", "v1"), "green": ("live", "v3")}


def test_rollback_with_nothing_live(world: World) -> None:
    with pytest.raises(RollbackError, match="nothing is live"):
        world.deployer.rollback()


def test_first_deploy_failure_leaves_nothing_live(world: World) -> None:
    result = world.deploy("v1-err")
    assert not result.ok
    st = world.deployer.state()
    assert (st.live, st.weights) == (None, {})
    assert world.switch.weights == {}
    assert world.deploy("v2").ok  # the failed slot is retired and reused


class _AllOrNothing(InProcessSwitch):
    supports_weights = False


def test_canary_needs_a_medium_with_weights(tmp_path) -> None:  # type: ignore[no-untyped-def]
    w = World(tmp_path / "n.sqlite", switch=_AllOrNothing(predictor))
    assert w.deploy("v1").ok
    with pytest.raises(DeployRefused, match="cannot split traffic"):
        w.deploy("v2", CANARY)
    assert w.deploy("v2", ALL).ok


@pytest.mark.parametrize("steps", [(), (0.5,), (0.5, 0.2, 1.0), (0.0, 1.0), (0.5, 1.5)])
def test_strategy_rejects_bad_steps(steps: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="steps"):
        Strategy.canary(steps)


def test_readiness_timeout_fails(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class NeverReady(InProcessSwitch):
        def ready(self, slot: Slot) -> bool:
            return False

    w = World(
        tmp_path / "r.sqlite", switch=NeverReady(predictor), gates=[ReadinessGate(timeout_s=3, poll_s=1)]
    )
    result = w.deploy("v1")
    assert not result.ok and "readiness" in result.reason
    assert w.clock.t >= 3  # it polled until the timeout on the (fake) clock


def test_golden_gate_takes_explicit_data(world: World) -> None:
    m = model("v1")
    gate = GoldenSetGate(inputs=m.golden_inputs, expected=m.golden_outputs + 0.5)
    w = World(world.path.with_name("g.sqlite"), gates=[gate])
    result = w.deploy("v1")
    assert not result.ok and "100.0% of 32 rows" in result.reason
    # That deployment never routed, so the next one's recovery leaves alone what serves now (say,
    # predictions an operator published by hand): routing "none" would take them away.
    w.switch.weights = {Slot.BLUE: 1.0}
    w.deployer.recover()
    assert w.switch.weights == {Slot.BLUE: 1.0}


def test_deploy_refused_while_another_live_process_deploys(world: World) -> None:
    assert world.deploy("v1").ok
    st = world.deployer.state()
    st.transition(Slot.GREEN, SlotState.STAGED, version="v2")
    st.deployment, st.owner = "abcd1234", f"{os.uname().nodename}:{os.getppid()}:abcd1234"
    world.store.commit(st)
    with pytest.raises(DeploymentInFlight, match="abcd1234"):
        world.deploy("v3")
    # an operator rollback aborts it regardless of its owner
    st = world.deployer.rollback()
    assert (st.deployment, st.live_version) == (None, "v1")
    assert st.slots[Slot.GREEN].state is SlotState.FAILED


def test_rollback_from_another_process_stops_a_running_bake(world: World) -> None:
    assert world.deploy("v1").ok
    other = world.second_process()
    calls = {"n": 0}
    original = world.clock.sleep

    def sleep_and_abort(seconds: float) -> None:
        original(seconds)
        calls["n"] += 1
        if calls["n"] == 4:  # during the canary bake
            other.deployer.rollback("operator abort")

    world.deployer._sleep = sleep_and_abort
    result = world.deploy("v2", CANARY)
    assert not result.ok and result.reason == "aborted by another process"
    st = world.deployer.state()
    assert (st.live_version, st.deployment) == ("v1", None)
    assert st.slots[Slot.GREEN].state is SlotState.ROLLED_BACK
    assert world.switch.weights == {Slot.BLUE: 1.0}


def test_a_first_deployment_aborted_while_it_routes_leaves_no_traffic_on_it(world: World) -> None:
    other = world.second_process()
    original = world.switch.route

    def route_after_an_abort(weights: dict[Slot, float]) -> None:
        if weights and world.deployer.state().deployment is not None:
            other.deployer.rollback("operator abort")  # lands between our commit and our route
        original(weights)

    world.switch.route = route_after_an_abort  # type: ignore[method-assign]
    result = world.deploy("v1", CANARY)
    assert not result.ok and result.reason == "aborted by another process"
    st = world.deployer.state()
    assert (st.live, st.weights) == (None, {})
    assert world.switch.weights == {}  # our late route() was undone: nothing serves the aborted v1
    # and the next deployment's recovery re-asserts the durable routing however the medium drifted
    original({Slot.BLUE: 1.0})
    world.deployer.recover()
    assert world.switch.weights == {}


def test_switch_base_class_defaults() -> None:
    class Minimal(Switch):
        def stage(self, slot: Slot, version: str) -> None: ...
        def ready(self, slot: Slot) -> bool:
            return True

        def predict(self, slot, X):  # type: ignore[no-untyped-def]
            return X[:, 0]

        def route(self, weights) -> None: ...  # type: ignore[no-untyped-def]
        def observe(self, slot: Slot) -> BakeMetrics:
            return BakeMetrics()

    sw = Minimal()
    assert (sw.supports_weights, sw.supports_shadow, sw.shadow_pairs()) == (False, False, None)
    assert BakeMetrics(requests=10, errors=1).error_rate == 0.1
