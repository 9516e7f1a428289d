"""The streaming worker: events in, stateful features, micro-batched ONNX predictions out.

Per poll (up to ``max_batch`` messages): decode each message (bad ones go to the dead-letter
topic with the error and the original bytes), apply state events to the partition's
``StreamingExecutor``, compute the features of all the requests with one ``matrix`` call per run
of requests, score everything with one ONNX call, produce asynchronously, ``flush`` and only then
commit. A crash between produce and commit re-delivers; predictions are keyed by ``flight_id`` so
readers drop the duplicates (at least once).

State follows partitions. Each assigned partition gets its own executor, bootstrapped from the
offline history for events before a cut-off ``C`` and fed from Kafka from the first offset whose
event time is ``>= C`` (``offsets_for_times``): one cut through the immutable log, so no gap and no
double count. ``C`` is the ``--cutoff`` on a group's first start (default: the partition's first
event), and afterwards the event time of the last processed message, stored in the commit's
metadata. A rebalance or a restart therefore rebuilds exactly the state the partition had.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from patterns.streaming.history import History
from patterns.streaming.messages import (
    SCORING_FAILURE,
    SOURCE_OF,
    Event,
    SchemaError,
    Topics,
    dead_letter_headers,
    decode,
    ensure_topics,
    prediction_message,
    producer,
)
from patterns.streaming.retry import CALL_TIMEOUT_MS, RECONNECT, Outage, Stopped
from shared.example.flights import REQUEST_FIELDS
from shared.features import StreamingExecutor
from shared.predictor import Predictor
from shared.predlog import PredictionLog

__all__ = ["History", "StreamWorker", "WorkerStats"]

#: A request is scored before any state event more than this far past it is applied, which keeps
#: every request inside the executor's allowed lateness (1 h) of the watermark: exact answers.
_MAX_SKEW_S = 1800
_PROBE_EVERY_S = 0.5
#: A produce waits out a broker outage this long (retried by the client, in order); only past it
#: do its futures fail, and the worker then stops without committing the batch.
_DELIVERY_TIMEOUT_MS = 3_600_000


def _freeze_long_lived() -> None:
    """Move everything alive now (history, bootstrapped state) out of the collector's reach.

    A bootstrapped partition holds about a day of events as Python objects; without this, each
    full collection walks all of them and stalls the loop for 100+ ms, which is the p99.
    """
    gc.collect()
    gc.freeze()


@dataclass
class _Partition:
    cutoff: int | None
    executor: StreamingExecutor | None = None
    last_ts: int | None = None


@dataclass
class WorkerStats:
    """What a worker has handled; ``late_dropped``: state events refused as too late, per source."""

    messages: int = 0
    predictions: int = 0
    dead_letters: int = 0
    batches: int = 0
    bootstraps: int = 0
    late_dropped: Counter[str] = field(default_factory=Counter)


class StreamWorker:
    """One worker process of a model version's consumer group (``topics.group(version)``)."""

    def __init__(
        self,
        predictor: Predictor,
        bootstrap: str,
        topics: Topics,
        history: History | None = None,
        cutoff: int | None = None,
        max_batch: int = 500,
        predlog: PredictionLog | None = None,
        session_timeout_s: float = 45.0,
    ) -> None:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.consumer.subscription_state import ConsumerRebalanceListener

        self.predictor = predictor
        self.version = predictor.version
        self.topics = topics
        self.history = history or History()
        self.cutoff = cutoff
        self.max_batch = max_batch
        self.predlog = predlog
        self.stats = WorkerStats()
        self._names = list(predictor.model.feature_names)  # the columns the model was trained on
        self._parts: dict[Any, _Partition] = {}
        self._fresh: set[Any] = set()
        self._tp = TopicPartition

        probe = TopicPartition(topics.probes(self.version), 0)
        admin_consumer = KafkaConsumer(allow_auto_create_topics=False, bootstrap_servers=bootstrap)
        n = len(admin_consumer.partitions_for_topic(topics.events) or ())
        admin_consumer.close()
        if n == 0:
            raise RuntimeError(f"topic {topics.events} does not exist: start the replayer first")
        ensure_topics(
            bootstrap,
            {
                topics.predictions(self.version): n,
                topics.dead_letters: 1,
                probe.topic: 1,
                topics.probe_replies: 1,
            },
        )
        self._producer = producer(
            bootstrap, f"mlp-worker-{self.version}", linger_ms=1, delivery_timeout_ms=_DELIVERY_TIMEOUT_MS,
            **RECONNECT,
        )  # fmt: skip
        self._outage = Outage(f"worker {self.version}")
        self._stop: Callable[[], bool] = lambda: False
        worker = self

        class _Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked: Sequence[Any]) -> None:
                for tp in revoked:  # every processed batch is committed: nothing pending to save
                    worker._parts.pop(tp, None)
                    worker._fresh.discard(tp)

            def on_partitions_assigned(self, assigned: Sequence[Any]) -> None:
                worker._fresh.update(assigned)
                # For the operator (and the recovery test): which partitions this process owns now.
                owned = sorted(tp.partition for tp in assigned)
                print(f"worker {worker.version}: assigned partitions {owned}", file=sys.stderr, flush=True)

        self._consumer = KafkaConsumer(
            allow_auto_create_topics=False,
            bootstrap_servers=bootstrap,
            group_id=topics.group(self.version),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=max_batch,
            fetch_max_wait_ms=50,
            client_id=f"mlp-worker-{self.version}",
            # How long a killed worker's partitions wait for it before the group hands them on;
            # heartbeats (from a background thread) come three times in that span.
            session_timeout_ms=int(session_timeout_s * 1000),
            heartbeat_interval_ms=min(3000, int(session_timeout_s * 1000 / 3)),
            **RECONNECT,
        )
        self._consumer.subscribe([topics.events], listener=_Listener())
        self._probes = KafkaConsumer(
            allow_auto_create_topics=False, bootstrap_servers=bootstrap, enable_auto_commit=False, **RECONNECT
        )
        self._probes.assign([probe])
        self._probes.seek_to_end(probe)
        self._probes.position(probe)  # resolve now: probes sent from here on are answered
        self._next_probe = 0.0

    # -- the loop ------------------------------------------------------------------------------------

    def run(self, stop: Callable[[], bool] = lambda: False, idle_exit_s: float | None = None) -> WorkerStats:
        """Process until ``stop()`` is true (or nothing arrived for ``idle_exit_s`` seconds).

        A Kafka outage is waited out: each call that needs the broker is retried until it answers
        (or ``stop()``), so a batch is committed once its predictions are acknowledged, not lost.
        """
        idle_since = time.monotonic()
        self._stop = stop
        try:
            while not stop():
                if self.step():
                    idle_since = time.monotonic()
                elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                    break
        except Stopped:
            pass  # stopped during an outage: the uncommitted batch is re-delivered to the next owner
        return self.stats

    def _retry(self, what: str, call: Callable[[], Any]) -> Any:
        return self._outage.call(what, call, self._stop)

    def step(self, timeout_ms: int = 100) -> int:
        """One poll: process, produce, flush, commit. Returns the number of messages handled."""
        batch = self._consumer.poll(timeout_ms=timeout_ms, max_records=self.max_batch)
        if time.monotonic() >= self._next_probe:
            self._answer_probes()
        for tp in list(self._fresh):
            self._position(tp)
            batch.pop(tp, None)  # fetched from the default position: re-read after the seek
        if not batch:
            return 0
        return self._process(batch)

    def _position(self, tp: Any) -> None:
        from kafka.structs import OffsetAndMetadata

        self._fresh.discard(tp)
        committed = self._retry(
            "committed", lambda: self._consumer.committed(tp, metadata=True, timeout_ms=CALL_TIMEOUT_MS)
        )
        cutoff = self.cutoff
        if isinstance(committed, OffsetAndMetadata) and committed.metadata:
            cutoff = int(json.loads(committed.metadata)["ts"])
        if cutoff is None:
            self._consumer.seek_to_beginning(tp)
        else:
            times = {tp: cutoff * 1000}
            found = self._retry(
                "offsets_for_times", lambda: self._consumer.offsets_for_times(times, CALL_TIMEOUT_MS)
            ).get(tp)
            if found is None:
                self._consumer.seek_to_end(tp)
            else:
                self._consumer.seek(tp, found.offset)
        self._parts[tp] = _Partition(cutoff)

    def _process(self, batch: Mapping[Any, Sequence[Any]]) -> int:
        requests: list[tuple[Any, Any, Event]] = []
        rows: list[np.ndarray] = []
        dead: list[tuple[Any, str]] = []
        commits: dict[Any, tuple[int, int | None]] = {}
        for tp, msgs in batch.items():
            part = self._parts.setdefault(tp, _Partition(self.cutoff))
            self._partition(tp, part, msgs, requests, rows, dead)
            # A batch of nothing but dead letters keeps the cut-off it started from: an empty one
            # would make the next start replay the partition from its beginning.
            commits[tp] = (msgs[-1].offset + 1, part.last_ts if part.last_ts is not None else part.cutoff)
            self.stats.messages += len(msgs)
        futures = []
        scored: list[tuple[Any, Any, Event, np.ndarray, float]] = []
        if requests:
            features = np.vstack(rows)
            probabilities = self.predictor.predict_proba(features)
            scored = [
                (tp, m, ev, features[i], float(probabilities[i])) for i, (tp, m, ev) in enumerate(requests)
            ]
        now_ms = int(time.time() * 1000)
        for tp, m, ev, _, p in scored:
            futures.append(
                self._producer.send(
                    self.topics.predictions(self.version),
                    prediction_message(ev, m, self.version, p, self.predictor.decision_threshold, now_ms),
                    key=ev.id.encode(),
                    partition=tp.partition,
                    timestamp_ms=ev.ts * 1000,
                )
            )
        for m, error in dead:
            headers = dead_letter_headers(m, error, self.version)
            futures.append(self._producer.send(self.topics.dead_letters, m.value, key=m.key, headers=headers))
        if scored and self.predlog is not None:
            self.predlog.write_many(
                [
                    (
                        ev.id,
                        {k: ev.record[k] for k in REQUEST_FIELDS},
                        dict(zip(self._names, x.tolist(), strict=True)),
                        p,
                    )
                    for _, _, ev, x, p in scored
                ],
                model_version=self.version,
            )
        self._flush()
        for f in futures:
            if f.failed():
                raise RuntimeError(f"produce failed, not committing: {f.exception}")
        self._commit(commits)
        self.stats.predictions += len(scored)
        self.stats.dead_letters += len(dead)
        self.stats.batches += 1
        return sum(len(m) for m in batch.values())

    def _partition(
        self,
        tp: Any,
        part: _Partition,
        msgs: Sequence[Any],
        requests: list[tuple[Any, Any, Event]],
        rows: list[np.ndarray],
        dead: list[tuple[Any, str]],
    ) -> None:
        pending: list[tuple[Any, Event]] = []
        run: list[dict[str, Any]] = []
        run_kind = ""

        def flush_run() -> None:
            nonlocal run
            if run and part.executor is not None:
                before = part.executor.late_dropped.copy()
                part.executor.observe_many(SOURCE_OF[run_kind], run)
                self.stats.late_dropped.update(part.executor.late_dropped - before)
            run = []

        def flush_pending() -> None:
            nonlocal pending
            if pending and part.executor is not None:
                self._score(part.executor, tp, pending, requests, rows, dead)
            pending = []

        for m in msgs:
            try:
                ev = decode(m.value)
            except SchemaError as exc:
                dead.append((m, str(exc)))
                continue
            if part.executor is None:
                cutoff = ev.ts if part.cutoff is None else min(part.cutoff, ev.ts)
                part.executor = self.history.bootstrap(cutoff)
                self.stats.bootstraps += 1
                _freeze_long_lived()
            if ev.kind == "scheduled":
                pending.append((m, ev))
            else:
                if pending and ev.ts > pending[0][1].ts + _MAX_SKEW_S:
                    flush_run()
                    flush_pending()
                if ev.kind != run_kind:
                    flush_run()
                    run_kind = ev.kind
                run.append(ev.record)
            part.last_ts = ev.ts if part.last_ts is None else max(part.last_ts, ev.ts)
        flush_run()
        flush_pending()

    def _score(
        self,
        executor: StreamingExecutor,
        tp: Any,
        pending: list[tuple[Any, Event]],
        requests: list[tuple[Any, Any, Event]],
        rows: list[np.ndarray],
        dead: list[tuple[Any, str]],
    ) -> None:
        try:
            rows.append(executor.matrix([ev.record for _, ev in pending]))
            requests.extend((tp, m, ev) for m, ev in pending)
            return
        except Exception:
            pass  # find the culprit row by row; the others still get predictions
        for m, ev in pending:
            try:
                rows.append(executor.matrix([ev.record]))
            except Exception as exc:
                dead.append((m, f"{SCORING_FAILURE}{type(exc).__name__}: {exc}"))
                continue
            requests.append((tp, m, ev))

    def _commit(self, commits: Mapping[Any, tuple[int, int | None]]) -> None:
        from kafka.structs import OffsetAndMetadata

        offsets = {
            tp: OffsetAndMetadata(off, json.dumps({"ts": ts}) if ts is not None else "", -1)
            for tp, (off, ts) in commits.items()
            if tp in self._parts
        }
        if not offsets:
            return
        from kafka.errors import CommitFailedError, RebalanceInProgressError

        try:
            self._retry("commit", lambda: self._consumer.commit(offsets, timeout_ms=CALL_TIMEOUT_MS))
        except (CommitFailedError, RebalanceInProgressError) as exc:
            # The group moved on while Kafka was away: retrying cannot succeed, the next poll rejoins
            # and the partitions' new owner (maybe this process) re-reads from the last commit.
            print(f"worker {self.version}: commit refused ({exc}); the batch will be re-read",
                  file=sys.stderr, flush=True)  # fmt: skip

    def _answer_probes(self) -> None:
        """Score feature matrices sent by the deploy switch (golden set, readiness) with this model."""
        self._next_probe = time.monotonic() + _PROBE_EVERY_S
        for msgs in self._probes.poll(timeout_ms=0).values():
            for m in msgs:
                try:
                    body = json.loads(m.value)
                    x = np.asarray(body["features"], dtype=np.float32).reshape(-1, len(self._names))
                    reply: dict[str, Any] = {"probabilities": self.predictor.predict_proba(x).tolist()}
                except Exception as exc:
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                reply |= {"id": m.key.decode() if m.key else "", "version": self.version}
                self._producer.send(self.topics.probe_replies, json.dumps(reply).encode(), key=m.key)
        self._flush()

    def _flush(self) -> None:
        # With a timeout: a flush blocked by an outage gets logged and lets ``stop()`` be checked.
        self._retry("flush", lambda: self._producer.flush(timeout=CALL_TIMEOUT_MS / 1000))

    def close(self) -> None:
        for client in (self._consumer, self._probes):
            client.close()
        self._producer.close()
        if self.predlog is not None:
            self.predlog.close()
