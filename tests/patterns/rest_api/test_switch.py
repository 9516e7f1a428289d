"""Blue-green of the REST pattern against real nginx and Redis: switch and rollback under continuous
load with zero failed requests, and broken versions refused before they ever see traffic.

One module-scoped world (its own MLPATTERNS_HOME, free ports, its own nginx conf.d file) runs the
steps in order: v1 on blue, v2 to green under load, rollback under load, broken versions refused.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
import numpy as np
import pytest

from patterns.rest_api.nginx import RestFront
from patterns.rest_api.switch import ColourConfig, RestSwitch, build_target
from shared.deploy import (
    Deployer,
    DeployRefused,
    GoldenSetGate,
    GuardrailGate,
    ReadinessGate,
    ShadowGate,
    Slot,
    SlotState,
    SQLiteStore,
    Strategy,
    Target,
    agreement_rate,
)
from shared.example.data import load_flights
from shared.predictor import Predictor
from shared.registry import ModelVersion, Registry
from shared.services.nginx import Nginx

MIN_REQUESTS = 5000
STRATEGY = Strategy.all_at_once(bake_s=2.0, poll_s=0.5)


def _copy(
    registry: Registry, src: ModelVersion, *, shift: float = 0.0, fingerprint: str | None = None
) -> str:
    """Register ``src``'s artifacts again (optionally with tampered golden outputs or fingerprint)."""
    X, y = src.golden_set()
    return registry.register(
        {"model.onnx": src.artifact("model.onnx"), "model.pkl": src.artifact("model.pkl")},
        feature_set=src.feature_set,
        feature_fingerprint=fingerprint or src.feature_fingerprint,
        feature_names=src.feature_names,
        training=src.training,
        metrics=src.metrics,
        data_fingerprint=src.data_fingerprint,
        golden_inputs=X,
        golden_outputs=np.clip(y + shift, 0.0, 1.0),
    ).version


@dataclass
class World:
    target: Target
    switch: RestSwitch
    deployer: Deployer
    registry: Registry
    bodies: list[dict[str, Any]]
    versions: dict[str, str] = field(default_factory=dict)  # role -> registry version


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
    nginx_server: Any,
    rest_store: Any,
    rest_model: ModelVersion,
    rest_model_v2: ModelVersion,
    rest_requests: list[dict[str, Any]],
    rest_payload: Callable[[Any], dict[str, Any]],
    rest_free_port: Callable[[], int],
) -> Iterator[World]:
    home = tmp_path_factory.mktemp("switch_home")
    registry = Registry(home / "registry")
    versions = {
        "v1": _copy(registry, rest_model),
        "v2": _copy(registry, rest_model_v2),
        "tampered": _copy(registry, rest_model, shift=0.2),
        "other_features": _copy(registry, rest_model, fingerprint="0" * 16),
    }
    config = ColourConfig(
        ports={Slot.BLUE: rest_free_port(), Slot.GREEN: rest_free_port()},
        token=uuid.uuid4().hex,
        run_dir=home / "run",
        args=("--redis-url", rest_store.url, "--redis-prefix", rest_store.prefix),
        env={"MLPATTERNS_HOME": str(home)},
    )
    front = RestFront(Nginx(), port=rest_free_port(), name=f"rest_api_test_{uuid.uuid4().hex[:8]}")
    gates = [
        ReadinessGate(timeout_s=90, poll_s=0.25),
        GoldenSetGate(),
        # v2 is trained with other hyper-parameters and decides "delayed" from 0.231 (v1: 0.195):
        # over the day's flights the two take the same decision on 86.6 % of them (mean |diff|
        # 0.024), a real difference near the shadow default (85 %); these tests judge the mechanism,
        # so over 100 pairs (sd ~3.4 points) the gate asks for 75 %. Its scores also move: over
        # these bodies, whose feature state stops at noon, v2's distribution is PSI 0.15 from v1's,
        # and the samples a bake compares (~700 a side) score above the default 0.25 in 5 % of
        # draws (max 0.40 in 3,000), so the PSI limit here is 0.5.
        ShadowGate(min_pairs=100, min_agreement=0.75, max_mean_abs_diff=0.1, timeout_s=60, poll_s=0.5),
        GuardrailGate(min_requests=50, max_p99_ms=5000.0, max_psi=0.5),
    ]
    target = build_target(registry=registry, config=config, front=front, gates=gates)
    switch = target.switch
    assert isinstance(switch, RestSwitch)
    deployer = Deployer.for_target(target, SQLiteStore(home / "deploy.sqlite"))
    # A whole day of flights: the score distributions the PSI guardrail compares need variety (the
    # flights of the last hour, whose features are exact, are too few and too alike).
    flights = load_flights((2,))
    day = flights[(flights["year"] == 2013) & (flights["month"] == 2) & (flights["day"] == 14)]
    bodies = rest_requests + [rest_payload(row) for _, row in day.iterrows()]
    w = World(target, switch, deployer, registry, bodies, versions)
    try:
        yield w
    finally:
        switch.stop_all()
        front.access_log.unlink(missing_ok=True)
        switch.close()


def _closed_idle_connection(exc: httpx.HTTPError) -> bool:
    # The old worker closed the idle keep-alive connection as the request went out: either a clean
    # close before any response, or a reset when the request reached the closed socket.
    text = str(exc)
    return "without sending a response" in text or "Connection reset by peer" in text


class Load:
    """Concurrent clients through nginx until stopped: half keep connections alive, half do not.

    A keep-alive client retries a request only when nginx closed the idle connection before
    sending any response, cleanly or by a reset (a graceful reload closes idle connections; RFC 9112
    9.3.1 lets clients retry then, and scoring is idempotent). Every other failure, and any second
    failure, counts.
    """

    def __init__(self, url: str, bodies: list[dict[str, Any]], threads: int = 8) -> None:
        self.url = url + "/predict"
        self.bodies = bodies
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.served: list[str] = []  # model_version of every answered request, in answer order
        self.failures: list[str] = []
        self.retried = 0
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(30)

    def wait_for(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.served) + len(self.failures) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self, i: int) -> None:
        keepalive = i % 2 == 0
        limits = httpx.Limits(max_keepalive_connections=1 if keepalive else 0)
        # Bodies in random order, not in turn: the day's flights are sorted by departure time, so
        # walking them would feed the live version's reference window mornings and the candidate's
        # bake afternoons, and the PSI guardrail would measure that traffic mix, not the model.
        pick = random.Random(i)
        with httpx.Client(timeout=30.0, limits=limits) as client:
            while not self.stop.is_set():
                body = pick.choice(self.bodies)
                for attempt in (1, 2):
                    try:
                        resp = client.post(self.url, json=body)
                    except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                        if keepalive and attempt == 1 and _closed_idle_connection(exc):
                            with self.lock:
                                self.retried += 1
                            continue
                        self._fail(repr(exc))
                    except httpx.HTTPError as exc:
                        self._fail(repr(exc))
                    else:
                        if resp.status_code == 200:
                            with self.lock:
                                self.served.append(resp.json()["model_version"])
                        else:
                            self._fail(f"HTTP {resp.status_code}: {resp.text[:200]}")
                    break

    def _fail(self, what: str) -> None:
        with self.lock:
            self.failures.append(what)


def _deploy(world: World, role: str) -> Any:
    return world.deployer.deploy(world.target.models(world.versions[role]), STRATEGY)


def test_first_deployment_puts_blue_behind_nginx(world: World) -> None:
    result = _deploy(world, "v1")
    assert result.ok, result.reason
    assert result.slot is Slot.BLUE
    assert {g.gate for g in result.gates if g.passed and not g.skipped} >= {"readiness", "golden_set"}
    answer = httpx.post(world.switch.front.url + "/predict", json=world.bodies[0], timeout=10).json()
    assert answer["model_version"] == world.versions["v1"]
    assert world.switch.running() == {Slot.BLUE: world.versions["v1"]}


def test_admin_endpoints_of_a_colour_refuse_requests_without_the_token(world: World) -> None:
    url = world.switch.url(Slot.BLUE)
    assert httpx.post(url + "/admin/window/reset", timeout=5).status_code == 401
    assert httpx.get(url + "/admin/info", headers={"x-admin-token": "wrong"}, timeout=5).status_code == 403


def test_switch_to_green_under_load_loses_no_request(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    v1, v2 = world.versions["v1"], world.versions["v2"]
    # Spy on the shadow gate's inputs: the feature rows it had scored, and the pairs it judged.
    in_shadow, scored, judged = [False], [], []
    real_predict, real_pairs = world.switch.predict, world.switch.shadow_pairs

    def predict(slot: Slot, X: np.ndarray) -> np.ndarray:
        if in_shadow[0]:
            scored.append(np.asarray(X, dtype=np.float32))
        return real_predict(slot, X)

    def shadow_pairs() -> Any:
        in_shadow[0] = True
        try:
            pairs = real_pairs()
        finally:
            in_shadow[0] = False
        judged.append(pairs)
        return pairs

    monkeypatch.setattr(world.switch, "predict", predict)
    monkeypatch.setattr(world.switch, "shadow_pairs", shadow_pairs)
    with Load(world.switch.front.url, world.bodies) as load:
        load.wait_for(500)
        result = _deploy(world, "v2")
        switched_at = len(load.served)
        load.wait_for(max(MIN_REQUESTS, switched_at + 1000))
    print(f"switch: {len(load.served)} requests, {len(load.failures)} failed, {load.retried} retried")
    assert result.ok, result.reason
    assert load.failures == []
    assert len(load.served) >= MIN_REQUESTS
    assert load.served[0] == v1 and v2 in load.served
    # Once the deployer returned, every new request is answered by v2 (requests already in flight
    # at the reload may still finish on v1, hence the small allowance).
    assert set(load.served[switched_at + 50 :]) == {v2}
    st = world.deployer.state()
    assert (st.live, st.slots[Slot.BLUE].state) == (Slot.GREEN, SlotState.STANDBY)
    assert world.switch.running() == {Slot.BLUE: v1, Slot.GREEN: v2}  # old colour kept warm
    shadow = next(g for g in result.gates if g.gate == "shadow")
    assert shadow.passed and not shadow.skipped and shadow.metrics["pairs"] >= 100
    # The gate compared live (v1) with the candidate (v2): each pair is v1's served score and v2's
    # score of the same logged features, and the two models honestly differ.
    live, cand = judged[-1]
    X = np.concatenate(scored)
    assert len(live) == len(cand) == len(X) == shadow.metrics["pairs"]
    fingerprint = world.target.feature_fingerprint
    np.testing.assert_allclose(
        Predictor(world.registry.get(v2), fingerprint).predict_proba(X), cand, atol=1e-6
    )
    np.testing.assert_allclose(
        Predictor(world.registry.get(v1), fingerprint).predict_proba(X), live, atol=1e-6
    )
    assert shadow.metrics["mean_abs_diff"] > 0
    # Decisions at each version's registered cut, the ones its service answers with.
    cuts = (world.registry.get(v1).decision_threshold, world.registry.get(v2).decision_threshold)
    assert (shadow.metrics["live_threshold"], shadow.metrics["candidate_threshold"]) == cuts
    assert cuts[0] != cuts[1] and shadow.metrics["agreement"] == agreement_rate(live, cand, *cuts)
    bake = [g for g in result.gates if g.gate == "guardrails"][-1]
    assert bake.passed and not bake.skipped and bake.metrics["requests"] >= 50


def test_rollback_under_load_loses_no_request(world: World) -> None:
    v1, v2 = world.versions["v1"], world.versions["v2"]
    with Load(world.switch.front.url, world.bodies) as load:
        load.wait_for(500)
        st = world.deployer.rollback("test rollback")
        rolled_at = len(load.served)
        load.wait_for(max(MIN_REQUESTS, rolled_at + 1000))
    print(f"rollback: {len(load.served)} requests, {len(load.failures)} failed, {load.retried} retried")
    assert load.failures == []
    assert len(load.served) >= MIN_REQUESTS
    assert load.served[0] == v2
    assert set(load.served[rolled_at + 50 :]) == {v1}
    assert st.live is Slot.BLUE and st.slots[Slot.GREEN].state is SlotState.ROLLED_BACK


def test_a_guardrail_failing_during_the_bake_puts_the_old_colour_back_under_load(world: World) -> None:
    v1, v2 = world.versions["v1"], world.versions["v2"]
    # A latency budget no real request meets: the guardrail fails once 50 requests were judged.
    strict = [*world.deployer.gates[:-1], GuardrailGate(min_requests=50, max_p99_ms=0.5)]
    deployer = Deployer.for_target(replace(world.target, gates=strict), world.deployer.store)
    with Load(world.switch.front.url, world.bodies) as load:
        load.wait_for(300)
        result = deployer.deploy(world.target.models(v2), STRATEGY)
        back_at = len(load.served)
        load.wait_for(back_at + 500)
    print(
        f"guardrail rollback: {len(load.served)} requests, {len(load.failures)} failed, "
        f"{load.retried} retried"
    )
    assert not result.ok and "guardrails" in result.reason and "p99" in result.reason
    assert load.failures == []
    assert v2 in load.served[:back_at]  # v2 really took traffic during its bake ...
    assert set(load.served[back_at + 50 :]) == {v1}  # ... and everything went back to v1
    st = world.deployer.state()
    assert st.live is Slot.BLUE and st.slots[Slot.GREEN].state is SlotState.ROLLED_BACK


def _traffic_to(world: World, slot: Slot, since: float) -> int:
    port = f"127.0.0.1:{world.switch.config.ports[slot]}"
    return sum(1 for r in world.switch.front.records(since) if port in r.upstream)


def test_a_version_failing_its_golden_set_is_refused_and_never_receives_traffic(world: World) -> None:
    since = time.time()
    with Load(world.switch.front.url, world.bodies, threads=2) as load:
        result = _deploy(world, "tampered")
        load.wait_for(len(load.served) + 200)
    assert not result.ok
    assert "golden_set" in result.reason
    assert result.slot is Slot.GREEN
    st = world.deployer.state()
    assert st.live is Slot.BLUE and st.slots[Slot.GREEN].state is SlotState.FAILED
    assert load.failures == [] and set(load.served) == {world.versions["v1"]}
    # The candidate really ran (it answered the golden set over HTTP) but nginx never sent it a
    # request, and its own bake window saw no scoring request.
    assert world.switch.running()[Slot.GREEN] == world.versions["tampered"]
    assert _traffic_to(world, Slot.GREEN, since) == 0
    assert _traffic_to(world, Slot.BLUE, since) >= 200
    assert world.switch.observe(Slot.GREEN).requests == 0


def test_a_version_trained_on_other_features_is_refused_before_it_starts(world: World) -> None:
    since = time.time()
    with pytest.raises(DeployRefused, match="features"):
        _deploy(world, "other_features")
    assert world.versions["other_features"] not in world.switch.running().values()
    assert world.deployer.state().live is Slot.BLUE
    httpx.post(world.switch.front.url + "/predict", json=world.bodies[0], timeout=10)
    assert _traffic_to(world, Slot.GREEN, since) == 0


def test_canary_weights_split_traffic_in_nginx(world: World) -> None:
    """A canary step is an nginx upstream with weights; both colours answer their share."""
    front = world.switch.front
    blue, green = (world.switch.config.ports[s] for s in Slot)
    world.switch.stage(Slot.GREEN, world.versions["v2"])
    assert ReadinessGate(timeout_s=90, poll_s=0.25).check(_ctx(world)).passed
    try:
        world.switch.route({Slot.BLUE: 0.75, Slot.GREEN: 0.25})
        text = front.conf_file.read_text()
        assert f"127.0.0.1:{blue} weight=75" in text and f"127.0.0.1:{green} weight=25" in text
        with httpx.Client(timeout=10) as client:
            versions = [
                client.post(front.url + "/predict", json=b).json()["model_version"]
                for b in world.bodies[:100] * 4
            ]
        share = versions.count(world.versions["v2"]) / len(versions)
        assert 0.1 < share < 0.4, share
    finally:
        world.switch.route({Slot.BLUE: 1.0})  # back to the committed state


def _ctx(world: World) -> Any:
    from shared.deploy import GateContext

    model = world.target.models(world.versions["v2"])
    return GateContext(world.switch, Slot.GREEN, Slot.BLUE, model, "verify")


def test_status_shows_which_colour_runs_which_version(world: World) -> None:
    st = world.deployer.state()
    assert st.slots[Slot.BLUE].version == world.versions["v1"]
    assert st.slots[Slot.BLUE].state is SlotState.LIVE
    events = world.deployer.store.audit("rest_api", limit=50)
    assert any(e.action == "failed" and e.gate == "golden_set" for e in events)
