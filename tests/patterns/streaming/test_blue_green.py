"""Blue-green by consumer groups and a control topic, driven by the shared Deployer and its gates.

v1 goes live, v2 runs in shadow in its own group, passes the gates, takes over; then a rollback.
A reader follows the control topic all along: it serves every flight of the day exactly once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from patterns.streaming.messages import Topics, ensure_topics, producer
from patterns.streaming.reader import PredictionReader, Served
from patterns.streaming.replay import Replayer, events_between
from patterns.streaming.switch import StreamSwitch, build_target
from shared.deploy import (
    Deployer,
    GateContext,
    GoldenSetGate,
    GuardrailGate,
    ReadinessGate,
    ShadowGate,
    Slot,
    SlotState,
    SQLiteStore,
    Strategy,
    agreement_rate,
    registry_cards,
)
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.registry import Registry


def test_switch_and_rollback_lose_nothing_and_serve_each_flight_once(
    bootstrap: str, topics: Topics, registry: Registry, day: tuple[int, int], tmp_path: Path,
    offline: Callable[..., Any], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    start, end = day
    replayer = Replayer(bootstrap, topics, partitions=2)
    target = build_target(bootstrap=bootstrap, prefix=topics.prefix, registry=registry)
    switch = target.switch
    assert isinstance(switch, StreamSwitch)
    judged: list[tuple[np.ndarray, np.ndarray]] = []  # the (live, candidate) pairs the shadow gate saw
    real_pairs = switch.shadow_pairs

    def shadow_pairs() -> tuple[np.ndarray, np.ndarray] | None:
        pairs = real_pairs()
        if pairs is not None:
            judged.append(pairs)
        return pairs

    monkeypatch.setattr(switch, "shadow_pairs", shadow_pairs)
    gates = [
        ReadinessGate(timeout_s=90, poll_s=0.5),
        GoldenSetGate(),
        # v1 and v2 are different models: the gate must run, its thresholds are not the point here.
        ShadowGate(min_pairs=100, min_agreement=0.5, max_mean_abs_diff=0.5, timeout_s=90, poll_s=0.5),
        GuardrailGate(min_requests=1, max_p99_ms=1e9, max_psi=100.0),
    ]
    store = SQLiteStore(tmp_path / "deploy.db")
    deployer = Deployer("streaming", switch, store, target.feature_fingerprint, gates, models=target.models)

    served: list[Served] = []
    done = threading.Event()
    reader = PredictionReader(bootstrap, topics)

    def read() -> None:
        while not done.is_set():
            served.extend(reader.poll(timeout_ms=100))

    # The day goes out in three parts, each later one tied to a step: until the step is done its
    # part trickles (a few events a second, so the switch and the rollback happen under load), then
    # the rest goes out at full rate. A slow machine thus never runs out of day mid-deployment,
    # which would leave the new version nothing to serve.
    switched, rolled_back = threading.Event(), threading.Event()
    cut_1, cut_2 = _cuts(start, end, (0.6, 0.8))

    def feed() -> None:
        replayer.replay(start, cut_1, rate=80.0)
        _trickle_until(replayer, cut_1, cut_2, switched)
        _trickle_until(replayer, cut_2, end, rolled_back)

    feeding = threading.Thread(target=feed)
    following = threading.Thread(target=read)
    try:
        feeding.start()
        first = deployer.deploy(target.models("v1"), Strategy.all_at_once())
        assert first.ok, first.reason
        following.start()
        _wait(lambda: len(served) >= 100)
        second = deployer.deploy(target.models("v2"), Strategy.all_at_once())
        switched.set()
        assert second.ok, second.reason
        assert {g.gate for g in second.gates} >= {"readiness", "golden_set", "shadow", "guardrails"}
        assert all(g.passed and not g.skipped for g in second.gates if g.gate in ("golden_set", "shadow"))
        shadow = next(g for g in second.gates if g.gate == "shadow")
        at_switch = len(served)
        _wait(lambda: len(served) >= at_switch + 100 and served[-1].version == "v2")
        state = deployer.rollback("test rollback")
        rolled_back.set()
        assert state.live_version == "v1" and state.slots[Slot.GREEN].state is SlotState.ROLLED_BACK
        feeding.join()
        n_flights = replayer_requests(start, end)
        _wait(lambda: len({s.flight_id for s in served}) >= n_flights)
    finally:
        done.set()
        switched.set()
        rolled_back.set()
        if feeding.is_alive():
            feeding.join()
        if following.is_alive():
            following.join()
        reader.close()
        replayer.close()
        switch.retire(Slot.GREEN)
        switch.retire(Slot.BLUE)

    ids = [s.flight_id for s in served]
    assert len(set(ids)) == n_flights  # lose nothing
    assert len(ids) == len(set(ids))  # the reader itself served each flight once
    versions = [s.version for s in served]
    # The reader followed: v1, then v2, then v1 again, in that order.
    runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
    assert runs == ["v1", "v2", "v1"]
    assert [r.version for r in reader.switches] == ["v1", "v2", "v1"]
    # The shadow gate compared live v1 with candidate v2: each pair is one flight's v1 and v2 scores
    # (exactly the offline ones), and the two models honestly differ.
    live, cand = judged[-1]
    assert len(live) == shadow.metrics["pairs"] >= 100
    p1 = offline(Predictor(registry.get("v1"), FLIGHT_FEATURES.fingerprint()), start, end)
    p2 = offline(Predictor(registry.get("v2"), FLIGHT_FEATURES.fingerprint()), start, end)
    per_flight = {(p1[f][0], p2[f][0]) for f in p1}
    assert all((a, b) in per_flight for a, b in zip(live.tolist(), cand.tolist(), strict=True))
    assert shadow.metrics["mean_abs_diff"] > 0
    cuts = (registry.get("v1").decision_threshold, registry.get("v2").decision_threshold)
    assert (shadow.metrics["live_threshold"], shadow.metrics["candidate_threshold"]) == cuts
    assert cuts[0] != cuts[1] and shadow.metrics["agreement"] == agreement_rate(live, cand, *cuts)


def test_bake_guardrail_counts_the_candidates_dead_letters(
    bootstrap: str, topics: Topics, registry: Registry
) -> None:
    # What workers write, produced by hand: a real candidate cannot be made to fail requests that the
    # live version scores, and a whole deployment would take a minute to reach the bake step.
    ensure_topics(bootstrap, {topics.predictions("v2"): 2, topics.dead_letters: 1})
    out = producer(bootstrap, "test-bake")

    def dead_letter(version: str, error: bytes = b"features: KeyError: 'carrier'") -> None:
        headers = [("error", error), ("worker", version.encode())]
        out.send(topics.dead_letters, b'{"type": "scheduled"}', headers=headers)

    for _ in range(7):  # before the switch: not part of the bake
        dead_letter("v2")
    out.flush()
    switch = build_target(bootstrap=bootstrap, prefix=topics.prefix, registry=registry).switch
    assert isinstance(switch, StreamSwitch)
    switch.versions = {Slot.BLUE: "v1", Slot.GREEN: "v2"}  # as staged; no workers needed
    switch.route({Slot.GREEN: 1.0})
    for i in range(150):
        body = {"flight_id": f"f{i}", "probability": 0.3, "sent_ms": 1_000, "produced_ms": 1_005}
        out.send(topics.predictions("v2"), json.dumps(body).encode(), partition=i % 2)
    for _ in range(50):
        dead_letter("v2")
    for _ in range(30):
        dead_letter("v1")  # the live version's: not the candidate's errors
    for _ in range(40):  # bad input both versions refuse: the producer's fault, not the candidate's
        dead_letter("v2", b"not JSON: Expecting value")
    out.flush()
    out.close()

    bake = switch.observe(Slot.GREEN)
    assert (bake.requests, bake.errors, len(bake.predictions)) == (200, 50, 150)
    assert (switch.observe(Slot.BLUE).requests, switch.observe(Slot.BLUE).errors) == (30, 30)
    ctx = GateContext(switch, Slot.GREEN, Slot.BLUE, registry_cards(registry)("v2"), "bake 100%")
    result = GuardrailGate(max_p99_ms=1e9).check(ctx)
    assert not result.passed and "error rate 25.00% > 1.00%" in result.detail, result.detail


def _wait(condition: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def replayer_requests(start: int, end: int) -> int:
    events = events_between(start, end)
    return int((events["kind"] == "scheduled").sum())


def _trickle_until(replayer: Replayer, start: int, end: int, step: threading.Event) -> None:
    """Replay [start, end): a slice of ~10 event times a second until ``step`` is set, the rest at
    full rate after it. Half the part is kept for after the step, waiting if need be."""
    times = np.unique(events_between(start, end)["ts"].to_numpy())
    edges = [int(t) for t in times[: len(times) // 2 : 10]]
    at = start
    for edge in edges[1:]:
        if step.is_set():
            break
        replayer.replay(at, edge, rate=80.0)
        at = edge
        step.wait(1.0)
    step.wait(timeout=600)
    replayer.replay(at, end, rate=80.0)


def _cuts(start: int, end: int, shares: tuple[float, ...]) -> list[int]:
    """Event times that split the day's messages at ``shares`` (the first part ends before each)."""
    times = np.sort(events_between(start, end)["ts"].to_numpy())
    return [int(times[int(share * len(times))]) for share in shares]
