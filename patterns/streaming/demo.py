"""The streaming pattern's part of ``make demo``: v1 live, v2 in shadow, switch, reader follows, rollback.

Needs Kafka (``mlpatterns services up``) and two registered versions (``scripts/demo.py`` trains them).
Everything runs under a fresh topic prefix, so the demo never touches a real deployment's topics.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter

from patterns.streaming.messages import Topics
from patterns.streaming.reader import PredictionReader, Served
from patterns.streaming.replay import Replayer, day_window
from patterns.streaming.switch import StreamSwitch, build_target, compare_table
from shared import settings
from shared.deploy import (
    Deployer,
    GoldenSetGate,
    GuardrailGate,
    ReadinessGate,
    ShadowGate,
    Slot,
    SQLiteStore,
    Strategy,
)

__all__ = ["run_demo"]

_DAYS = ("2013-12-02", "2013-12-03", "2013-12-04")


def _drain(reader: PredictionReader, expected: int, timeout_s: float = 120.0) -> list[Served]:
    served: list[Served] = []
    deadline = time.monotonic() + timeout_s
    while len(served) < expected and time.monotonic() < deadline:
        served.extend(reader.poll(timeout_ms=200))
    return served


def run_demo(versions: tuple[str, str] = ("v1", "v2")) -> None:
    blue, green = versions
    bootstrap = settings.kafka_bootstrap()
    topics = Topics(f"demo{uuid.uuid4().hex[:6]}")
    print(f"streaming demo: topics {topics.prefix}.* on {bootstrap}")
    replayer = Replayer(bootstrap, topics, partitions=3)
    target = build_target(bootstrap=bootstrap, prefix=topics.prefix)
    switch = target.switch
    assert isinstance(switch, StreamSwitch)
    gates = [
        ReadinessGate(timeout_s=120),
        GoldenSetGate(),
        ShadowGate(min_pairs=300, timeout_s=120),  # v1 and v2 agree on ~92 % of decisions here
        GuardrailGate(max_p99_ms=5000.0, max_psi=0.5),
    ]
    store = SQLiteStore(settings.home() / "streaming" / topics.prefix / "deploy.db")
    deployer = Deployer(
        "streaming-demo", switch, store, target.feature_fingerprint, gates, models=target.models
    )
    reader = PredictionReader(bootstrap, topics)
    rows: list[tuple[str, str, int, str]] = []
    # Contiguous windows: each replay starts where the previous one ended, so the night's late
    # departures and weather between two days' schedules are streamed too (a gap would leave the
    # window features short, which `mlpatterns check` flags as feature skew).
    ends = [day_window(day)[1] for day in _DAYS]
    windows = [(day_window(_DAYS[0])[0], ends[0]), (ends[0], ends[1]), (ends[1], ends[2])]
    try:
        first = replayer.replay(*windows[0])
        print(f"1. replayed {_DAYS[0]}: {first.requests} requests + {first.state_events} state events "
              f"(state broadcast to 3 partitions: {first.messages} messages)")  # fmt: skip
        result = deployer.deploy(target.models(blue), Strategy.all_at_once())
        print(f"2. deploy {blue}: {'live' if result.ok else 'FAILED: ' + result.reason}")
        if not result.ok:
            return
        served = _drain(reader, first.requests)
        rows.append((_DAYS[0], blue, len(served), _versions(served)))
        sample = served[len(served) // 2]
        print(
            f"   reader serves {len(served)} predictions, e.g. {sample.flight_id}: {sample.probability:.3f}"
        )

        print(f"3. deploy {green}: its workers start in their own group and replay the log (shadow)")
        result = deployer.deploy(target.models(green), Strategy.all_at_once())
        a, b = switch.pairs(blue, green)
        print(f"   shadow comparison {blue} (live) vs {green} (candidate):")
        cuts = (target.models(blue).decision_threshold, target.models(green).decision_threshold)
        print(compare_table(blue, green, a, b, cuts))
        for gate in result.gates:
            print(f"   gate {gate.gate:<11} {'pass' if gate.passed else 'FAIL'}  {gate.detail}")
        print(
            f"   -> {green} {'is live (control topic says so)' if result.ok else 'refused: ' + result.reason}"
        )
        second = replayer.replay(*windows[1])
        served = _drain(reader, second.requests)
        rows.append((_DAYS[1], deployer.state().live_version or "-", len(served), _versions(served)))

        state = deployer.rollback("demo rollback")
        print(f"4. rollback: {state.live_version} is live again; the reader follows the control topic")
        third = replayer.replay(*windows[2])
        served = _drain(reader, third.requests)
        rows.append((_DAYS[2], state.live_version or "-", len(served), _versions(served)))

        print(f"\n   {'day':<12} {'live':<6} {'served':>7}  served by")
        for day, live, n, by in rows:
            print(f"   {day:<12} {live:<6} {n:>7}  {by}")
        print(f"   duplicates dropped by the reader: {reader.duplicates_dropped}; "
              f"switches followed: {' -> '.join(r.version or '-' for r in reader.switches)}")  # fmt: skip
    finally:
        reader.close()
        replayer.close()
        for slot in (Slot.GREEN, Slot.BLUE):
            switch.retire(slot)
        store.close()


def _versions(served: list[Served]) -> str:
    return ", ".join(f"{v} x{n}" for v, n in sorted(Counter(s.version for s in served).items())) or "-"


if __name__ == "__main__":
    run_demo()
