"""Streaming benchmark: the worker vs a raw kafka-python consume-then-produce loop, same broker and run.

1. Throughput: a topic pre-filled with several days of events (1 partition) is drained by the raw
   loop (poll, produce each message unchanged, flush, commit) and by the worker (decode, state,
   features, ONNX, produce, flush, commit, no prediction log). Events/s from the first batch on.
2. Latency at a fixed rate: the replayer publishes at ``--rate`` events/s; each loop runs as its
   own process; a reader measures wall time from publish (``sent_ms``) to receiving the output.

Goals: >= 60 % of the raw loop's throughput; p99 <= 100 ms at 1,000 events/s. The model is the
registry's latest (``--version`` picks another); with none registered a small one is trained.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from _plot import bar_chart

from patterns.streaming.messages import Topics, ensure_topics
from patterns.streaming.replay import Replayer, day_window
from patterns.streaming.switch import WorkerPool
from patterns.streaming.worker import StreamWorker
from shared import settings
from shared.example.flights import FLIGHT_FEATURES
from shared.predictor import Predictor
from shared.registry import Registry


def raw_loop(
    bootstrap: str, source: str, sink: str, group: str, count: int | None, batch: int
) -> tuple[int, float]:
    """Consume, produce each message as is, flush, commit; returns (messages, seconds from first batch)."""
    from kafka import KafkaConsumer, KafkaProducer

    consumer = KafkaConsumer(
        source, allow_auto_create_topics=False, bootstrap_servers=bootstrap, group_id=group,
        enable_auto_commit=False, auto_offset_reset="earliest", max_poll_records=batch, fetch_max_wait_ms=50,
    )  # fmt: skip
    producer = KafkaProducer(
        allow_auto_create_topics=False, bootstrap_servers=bootstrap, acks="all", enable_idempotence=True,
        linger_ms=1,
    )  # fmt: skip
    seen, began = 0, None
    try:
        while count is None or seen < count:
            records = consumer.poll(timeout_ms=100, max_records=batch)
            if not records:
                continue
            began = began or time.perf_counter()
            for tp, msgs in records.items():
                for m in msgs:
                    producer.send(sink, m.value, key=m.key, partition=tp.partition, headers=m.headers)
                seen += len(msgs)
            producer.flush()
            consumer.commit()
    finally:
        consumer.close()
        producer.close()
    return seen, time.perf_counter() - (began or time.perf_counter())


def _throughput(bootstrap: str, predictor: Predictor, days: int, batch: int) -> dict[str, float]:
    topics = Topics(f"bench{uuid.uuid4().hex[:8]}")
    start, _ = day_window("2013-03-04")
    replayer = Replayer(bootstrap, topics, partitions=1)
    n = replayer.replay(start, start + days * 86400).messages
    replayer.close()
    ensure_topics(bootstrap, {f"{topics.prefix}.raw-out": 1})
    raw_n, raw_s = raw_loop(
        bootstrap, topics.events, f"{topics.prefix}.raw-out", f"{topics.prefix}.raw", n, batch
    )
    worker = StreamWorker(predictor, bootstrap, topics, max_batch=batch)
    began = None
    try:
        while worker.stats.messages < n:
            if worker.step() and began is None:
                began = time.perf_counter() - 0.0
                first = worker.stats.messages
        elapsed = time.perf_counter() - (began or time.perf_counter())
    finally:
        worker.close()
    # The first batch includes the history bootstrap: count from the end of it.
    return {"messages": n, "raw_eps": raw_n / raw_s, "worker_eps": (n - first) / elapsed}


def _latency(
    bootstrap: str, registry: Path, version: str, rate: float, seconds: float, batch: int
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    start, _ = day_window("2013-03-04")
    for name in ("raw", "worker"):
        topics = Topics(f"lat{uuid.uuid4().hex[:8]}")
        replayer = Replayer(bootstrap, topics, partitions=1)
        sink = f"{topics.prefix}.raw-out" if name == "raw" else topics.predictions(version)
        ensure_topics(bootstrap, {sink: 1})
        if name == "raw":
            cmd = [sys.executable, __file__, "--raw-loop", bootstrap, topics.events, sink, str(batch)]
        else:
            cmd = [
                *WorkerPool(bootstrap, topics, registry).command(version),
                "--no-log",
                "--max-batch",
                str(batch),
            ]
        output = _output_reader(bootstrap, sink)  # before the loop starts: no output is missed
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples: list[float] = []
        inside: list[float] = []  # worker only: publish -> prediction handed to the producer
        stop = threading.Event()
        reader = threading.Thread(target=_measure, args=(output, samples, inside, stop))
        reader.start()
        try:
            # Warm up (process start, history bootstrap) on a few events until the loop answers,
            # let the backlog drain, then measure at the rate.
            replayer.replay(start, start + 1800)
            _wait_for_output(samples, proc, timeout=60.0)
            time.sleep(1.0)
            samples.clear()
            inside.clear()
            sent = replayer.replay(start + 1800, start + 1800 + 86400 * 30, rate=rate, stop_after_s=seconds)
            # Until every output of the measured events has arrived: a loop that stalls (a group
            # rebalance, a slow spell) shows as latency, not as a window that saw no output at all.
            expected = sent.messages if name == "raw" else sent.requests
            _wait_for_output(samples, proc, timeout=30.0, count=expected)
        finally:
            stop.set()
            reader.join()
            proc.terminate()
            proc.wait(timeout=30)
            replayer.close()
        out[name] = np.asarray(samples)
        if inside:
            out["worker_inside"] = np.asarray(inside)
    return out


def _wait_for_output(
    samples: list[float], proc: subprocess.Popen[bytes], timeout: float, count: int = 1
) -> None:
    """Until the reader has seen ``count`` outputs, the loop's process has died, or ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while len(samples) < count and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)


def _output_reader(bootstrap: str, topic: str) -> Any:
    """A consumer of ``topic``'s one partition, already at its end: it sees everything written from now.

    (Subscribing with ``auto_offset_reset="latest"`` instead resolves the end on the first fetch,
    and on a busy machine the loop's first outputs can land before it and never be seen.)
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        allow_auto_create_topics=False, bootstrap_servers=bootstrap, fetch_max_wait_ms=10
    )
    partition = TopicPartition(topic, 0)
    consumer.assign([partition])
    consumer.seek_to_end(partition)
    consumer.position(partition)
    return consumer


def _measure(consumer: Any, samples: list[float], inside: list[float], stop: threading.Event) -> None:
    while not stop.is_set():
        for msgs in consumer.poll(timeout_ms=50).values():
            now = time.time() * 1000
            for m in msgs:
                sent = dict(m.headers or ()).get("sent_ms")
                if sent:
                    samples.append(now - int(sent))
                    continue
                body = json.loads(m.value)
                if body.get("sent_ms"):
                    samples.append(now - body["sent_ms"])
                    inside.append(body["produced_ms"] - body["sent_ms"])
    consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=settings.kafka_bootstrap())
    parser.add_argument(
        "--version", default=None,
        help="registered model version (default: the latest; with none registered, a small one is trained)",
    )  # fmt: skip
    parser.add_argument("--days", type=int, default=5, help="days of events for the throughput run")
    parser.add_argument("--batch", type=int, default=500, help="messages per poll, both loops")
    parser.add_argument("--rate", type=float, default=1000.0, help="events/s for the latency run")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency run")
    parser.add_argument("--latency-only", action="store_true", help="skip the throughput run")
    parser.add_argument("--plot", type=Path, help="also draw the event-to-output latencies to this PNG file")
    parser.add_argument(
        "--raw-loop", nargs=4, metavar=("BOOTSTRAP", "SOURCE", "SINK", "BATCH"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.raw_loop:
        b, source, sink, batch = args.raw_loop
        raw_loop(b, source, sink, f"{sink}.group", None, int(batch))
        return

    with tempfile.TemporaryDirectory() as tmp:
        from shared.example.train import TrainingConfig, train

        registry = Registry()
        if not registry.list():
            registry = Registry(Path(tmp) / "registry")
            print("no model registered: training a small one (January, 50 iterations) ...", flush=True)
            train(TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=50), registry=registry)
        model = registry.get(args.version) if args.version else registry.latest()
        predictor = Predictor(model, FLIGHT_FEATURES.fingerprint())
        t = {"messages": 0.0, "raw_eps": float("nan"), "worker_eps": float("nan")}
        if not args.latency_only:
            t = _throughput(args.bootstrap, predictor, args.days, args.batch)
        lat = _latency(args.bootstrap, registry.root, model.version, args.rate, args.seconds, args.batch)

    ratio = t["worker_eps"] / t["raw_eps"]
    n, b = t["messages"], args.batch
    print(f"\nthroughput ({n:,.0f} events, 1 partition, batch {b}, model {model.version})")
    print(f"  {'':28} {'events/s':>10} {'vs raw':>8}")
    print(f"  {'raw consume->produce loop':28} {t['raw_eps']:>10,.0f} {1.0:>8.0%}")
    print(f"  {'streaming worker':28} {t['worker_eps']:>10,.0f} {ratio:>8.0%}   goal >= 60%: "
          f"{'met' if ratio >= 0.6 else 'NOT met'}")  # fmt: skip
    print(f"\nevent-to-output latency at {args.rate:,.0f} events/s for {args.seconds:.0f}s (ms)")
    print(f"  {'':28} {'n':>7} {'p50':>8} {'p99':>8}")
    labels = (
        ("raw", "raw consume->produce loop"),
        ("worker", "streaming worker"),
        ("worker_inside", "  of which publish->produce"),
    )
    bars: list[tuple[str, float]] = []  # for --plot: the same percentiles as the table
    for name, label in labels:
        s = lat.get(name, np.empty(0))
        p50, p99 = (float(np.percentile(s, q)) for q in (50, 99)) if len(s) else (float("nan"),) * 2
        print(f"  {label:28} {len(s):>7,} {p50:>8.1f} {p99:>8.1f}")
        if len(s):
            bars += [(f"{label.strip()} p50", p50), (f"{label.strip()} p99", p99)]
    w = lat["worker"]
    p99w = float(np.percentile(w, 99)) if len(w) else float("inf")
    print(f"  goal p99 <= 100 ms: {'met' if p99w <= 100 else 'NOT met'}")
    if args.plot:
        bar_chart(
            args.plot,
            f"Event-to-output latency at {args.rate:,.0f} events/s for {args.seconds:.0f}s",
            bars,
            "milliseconds",
            baselines=("raw consume->produce loop p50", "raw consume->produce loop p99"),
            goals=[("goal: worker p99 <= 100 ms", 100.0)],
        )


if __name__ == "__main__":
    main()
