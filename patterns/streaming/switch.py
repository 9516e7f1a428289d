"""Blue-green for the stream: a slot is a consumer group of worker processes; the switch is a control message.

``stage`` starts the version's workers (their own group, their own prediction topic, so a staged
version is already a shadow: it sees every event and its output is served to nobody). ``predict``
sends a feature matrix to the workers' probe topic and waits for their answer, so the golden-set
gate judges the deployed processes themselves. ``route`` publishes the live version on the
compacted control topic; readers (``PredictionReader``) follow it. ``shadow_pairs`` joins the live
and candidate prediction topics on ``flight_id``. Rolling back is the same control message.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from patterns.streaming.messages import SCORING_FAILURE, Topics, ensure_topics, producer
from patterns.streaming.reader import Control
from shared import settings
from shared.deploy import (
    BakeMetrics,
    Slot,
    SlotState,
    Switch,
    Target,
    TargetState,
    default_gates,
    registry_cards,
)
from shared.deploy.metrics import agreement_rate, p99, psi
from shared.example.flights import FLIGHT_FEATURES
from shared.registry import Registry

__all__ = ["StreamSwitch", "WorkerPool", "build_target", "compare_table"]


class WorkerPool:
    """Worker processes per version, tracked by pid files under ``<home>/streaming/<prefix>/``."""

    def __init__(
        self, bootstrap: str, topics: Topics, registry: Path | None = None, directory: Path | None = None
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.registry = registry
        self.dir = directory or settings.home() / "streaming" / topics.prefix
        self.dir.mkdir(parents=True, exist_ok=True)

    def command(self, version: str, cutoff: int | None = None) -> list[str]:
        cmd = [sys.executable, "-m", "patterns.streaming", "work", "--version", version,
               "--prefix", self.topics.prefix, "--bootstrap", self.bootstrap]  # fmt: skip
        if self.registry is not None:
            cmd += ["--registry", str(self.registry)]
        if cutoff is not None:
            cmd += ["--cutoff", str(cutoff)]
        return cmd

    def start(self, version: str, n: int = 1, cutoff: int | None = None) -> list[int]:
        """Start workers until ``n`` of ``version`` are alive; returns their pids."""
        alive = self.pids(version)
        for i in range(n):
            pid_file = self.dir / f"{version}-{i}.pid"
            if _pid(pid_file) in alive:
                continue
            log = open(self.dir / f"{version}-{i}.log", "ab")  # noqa: SIM115 - handed to the child
            proc = subprocess.Popen(
                self.command(version, cutoff), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
            log.close()
            pid_file.write_text(str(proc.pid))
        return self.pids(version)

    def pids(self, version: str) -> list[int]:
        return [p for f in sorted(self.dir.glob(f"{version}-*.pid")) if (p := _pid(f)) and _alive(p)]

    def stop(self, version: str, timeout_s: float = 15.0) -> None:
        """SIGTERM (the worker finishes its batch and commits), then SIGKILL after ``timeout_s``."""
        for pid in self.pids(version):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while self.pids(version) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.pids(version):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for f in self.dir.glob(f"{version}-*.pid"):
            f.unlink(missing_ok=True)


def _pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):  # a zombie child of ours counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"
    return True


class StreamSwitch(Switch):
    """Slots are consumer groups (one per version); routing is a message on the control topic."""

    supports_weights: ClassVar[bool] = False  # a reader serves one topic: all or nothing
    supports_shadow: ClassVar[bool] = True

    def __init__(
        self,
        bootstrap: str,
        topics: Topics,
        registry: Path | None = None,
        workers: int = 1,
        probe_timeout_s: float = 30.0,
    ) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.pool = WorkerPool(bootstrap, topics, registry)
        self.workers = workers
        self.probe_timeout_s = probe_timeout_s
        self.control = Control(bootstrap, topics)
        self.versions: dict[Slot, str] = {}
        self._window: dict[str, dict[int, int]] = {}
        self._dlq_window: dict[int, int] = {}
        self._shadow: tuple[Slot, Slot, dict[int, int]] | None = None

    def stage(self, slot: Slot, version: str) -> None:
        self.versions[slot] = version
        self.pool.start(version, self.workers)

    def ready(self, slot: Slot) -> bool:
        version = self.versions.get(slot)
        if version is None or not self.pool.pids(version):
            return False
        with contextlib.suppress(TimeoutError):
            self._probe(version, np.zeros((1, len(FLIGHT_FEATURES.names)), np.float32), timeout_s=3.0)
            return True
        return False

    def predict(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        version = self.versions.get(slot)
        if version is None:
            raise RuntimeError(f"slot {slot} holds no version")
        return self._probe(version, np.asarray(X, np.float32), self.probe_timeout_s)

    def route(self, weights: Mapping[Slot, float]) -> None:
        live = [Slot(s) for s, w in weights.items() if w > 0]
        if len(live) > 1:
            raise ValueError("a stream reader serves one version at a time: route all-or-nothing")
        version = self.versions[live[0]] if live else None
        self.control.publish(version, live[0].value if live else None)
        self._window = {v: self._ends(self.topics.predictions(v)) for v in self.versions.values()}
        self._dlq_window = self._ends(self.topics.dead_letters)

    def observe(self, slot: Slot) -> BakeMetrics:
        """The slot's predictions since the last ``route``, and its dead letters as failed requests.

        A worker that cannot score a message dead-letters it instead of producing a prediction, so
        counting predictions alone would show a candidate that fails most requests at 0 % errors.
        """
        version = self.versions.get(slot)
        if version is None:
            return BakeMetrics()
        values = self._read(self.topics.predictions(version), self._window.get(version, {}))
        probs = np.array([v["probability"] for v in values], dtype=np.float64)
        lat = [v["produced_ms"] - v["sent_ms"] for v in values if v.get("sent_ms") is not None]
        # The dead-letter topic is shared by every version: its ``worker`` header says whose it is.
        # Only scoring failures count; a message that is not a valid event is refused by every
        # version alike (the producer's fault), so it says nothing about the candidate.
        headers = [dict(m.headers or ()) for m in self._records(self.topics.dead_letters, self._dlq_window)]
        dead = sum(
            h.get("worker") == version.encode() and h.get("error", b"").startswith(SCORING_FAILURE.encode())
            for h in headers
        )
        errors = int(np.sum(~np.isfinite(probs))) + dead
        return BakeMetrics(len(values) + dead, errors, p99(lat), probs[np.isfinite(probs)])

    def shadow(self, slot: Slot | None) -> None:
        # A staged group already scores every event (it started at the first retained one), so the
        # "mirrored traffic" is everything it produced, catch-up included: nothing to switch on.
        live = next((s for s in self.versions if s != slot), None)
        self._shadow = None if slot is None or live is None else (live, slot, {})

    def shadow_pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self._shadow is None:
            return None
        live, cand, since = self._shadow
        return self.pairs(self.versions[live], self.versions[cand], since)

    def pairs(
        self, live: str, candidate: str, since: Mapping[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(live, candidate) scores for the flights both scored; candidate messages from ``since``."""
        cand_values = self._read(self.topics.predictions(candidate), since or {})
        live_scores = {
            v["flight_id"]: v["probability"] for v in self._read(self.topics.predictions(live), {})
        }
        both = [
            (live_scores[v["flight_id"]], v["probability"])
            for v in cand_values
            if v["flight_id"] in live_scores
        ]
        return np.array([a for a, _ in both], np.float64), np.array([b for _, b in both], np.float64)

    def retire(self, slot: Slot) -> None:
        version = self.versions.pop(slot, None)
        if version is not None and version not in self.versions.values():
            self.pool.stop(version)

    def attach(self, state: TargetState) -> None:
        for slot, info in state.slots.items():
            if info.state in (SlotState.EMPTY, SlotState.RETIRED, SlotState.FAILED) or not info.version:
                continue
            self.versions[slot] = info.version
            self.pool.start(info.version, self.workers)  # no-op when its workers are alive

    # -- Kafka helpers -------------------------------------------------------------------------------

    def _probe(self, version: str, X: np.ndarray, timeout_s: float) -> np.ndarray:
        from kafka import KafkaConsumer, TopicPartition

        ensure_topics(self.bootstrap, {self.topics.probes(version): 1, self.topics.probe_replies: 1})
        probe_id = uuid.uuid4().hex.encode()
        tp = TopicPartition(self.topics.probe_replies, 0)
        consumer = KafkaConsumer(
            allow_auto_create_topics=False, bootstrap_servers=self.bootstrap, enable_auto_commit=False
        )
        probes = producer(self.bootstrap, "mlp-switch")
        try:
            consumer.assign([tp])
            consumer.seek(tp, consumer.end_offsets([tp])[tp])
            body = json.dumps({"features": X.astype(np.float64).tolist()}).encode()
            probes.send(self.topics.probes(version), body, key=probe_id).get(timeout=10)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                for msgs in consumer.poll(timeout_ms=200).values():
                    for m in msgs:
                        if m.key != probe_id:
                            continue
                        reply = json.loads(m.value)
                        if "error" in reply:
                            raise RuntimeError(f"worker {version}: {reply['error']}")
                        return np.asarray(reply["probabilities"], dtype=np.float64)
            raise TimeoutError(f"no worker of {version} answered a probe within {timeout_s:.0f}s")
        finally:
            consumer.close()
            probes.close()

    def _ends(self, topic: str) -> dict[int, int]:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(allow_auto_create_topics=False, bootstrap_servers=self.bootstrap)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()} if tps else {}
        finally:
            consumer.close()

    def _read(self, topic: str, since: Mapping[int, int]) -> list[dict[str, Any]]:
        """Every JSON value of ``topic`` from ``since`` (partition -> offset; default 0) to its end now."""
        return [json.loads(m.value) for m in self._records(topic, since)]

    def _records(self, topic: str, since: Mapping[int, int]) -> list[Any]:
        """Every message of ``topic`` from ``since`` (partition -> offset; default 0) to its end now."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(
            allow_auto_create_topics=False, bootstrap_servers=self.bootstrap, enable_auto_commit=False
        )
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            if not tps:
                return []
            ends = consumer.end_offsets(tps)
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, since.get(tp.partition, 0))
            out: list[Any] = []
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                for msgs in consumer.poll(timeout_ms=500).values():
                    out.extend(msgs)
            return out
        finally:
            consumer.close()


def compare_table(
    live: str, candidate: str, a: np.ndarray, b: np.ndarray, cuts: tuple[float, float] = (0.5, 0.5)
) -> str:
    """The shadow comparison as a small text table (what the gates judge, for people); ``cuts`` are
    the two versions' decision thresholds, the scores from which each publishes "delayed"."""
    if len(a) == 0:
        return f"{live} vs {candidate}: no flight scored by both yet"
    diff = np.abs(a - b)
    cut_a, cut_b = cuts
    rows = [
        ("flights scored by both", f"{len(a):,}"),
        ("decision agreement", f"{agreement_rate(a, b, cut_a, cut_b):.2%}"),
        (f"{live} mean score / delayed from {cut_a:.3f}", f"{a.mean():.3f} / {np.mean(a >= cut_a):.1%}"),
        (f"{candidate} mean score / delayed from {cut_b:.3f}", f"{b.mean():.3f} / {np.mean(b >= cut_b):.1%}"),
        ("mean |diff|", f"{diff.mean():.4f}"),
        ("p99 |diff|", f"{np.percentile(diff, 99):.4f}"),
        ("psi (candidate vs live)", f"{psi(a, b):.4f}"),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k:<{width}}  {v}" for k, v in rows)


def build_target(
    bootstrap: str | None = None,
    prefix: str | None = None,
    registry: Registry | None = None,
    workers: int | None = None,
    **_: Any,
) -> Target:
    """The ``streaming`` deploy target (``$MLPATTERNS_STREAM_PREFIX``, ``$MLPATTERNS_STREAM_WORKERS``)."""
    reg = registry or Registry()
    switch = StreamSwitch(
        bootstrap or settings.kafka_bootstrap(),
        Topics(prefix or os.environ.get("MLPATTERNS_STREAM_PREFIX", "mlp")),
        reg.root,
        workers or settings.env_int("MLPATTERNS_STREAM_WORKERS", 1, lo=1),
    )
    return Target("streaming", switch, FLIGHT_FEATURES.fingerprint(), registry_cards(reg), default_gates())
