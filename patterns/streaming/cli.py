"""``mlpatterns stream``: replay events, run workers, read the live predictions, switch, compare."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import click

from shared import settings

__all__ = ["stream"]

_PREFIX = click.option(
    "--prefix", envvar="MLPATTERNS_STREAM_PREFIX", default="mlp", show_default=True,
    help="Topic/group name prefix (env MLPATTERNS_STREAM_PREFIX): <prefix>.events, .control, .dlq, …",
)  # fmt: skip
_BOOTSTRAP = click.option(
    "--bootstrap", envvar="MLPATTERNS_KAFKA_BOOTSTRAP", default=settings.kafka_bootstrap,
    show_default="127.0.0.1:$MLPATTERNS_KAFKA_PORT", help="Kafka bootstrap servers.",
)  # fmt: skip


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def stream() -> None:
    """Streaming pattern: Kafka in, stateful features, micro-batched ONNX predictions out.

    \b
      mlpatterns stream replay --date 2013-06-01 --partitions 3   # publish a day of events
      mlpatterns stream work --version v1                          # a worker (run N for scale-out)
      mlpatterns stream switch v1                                  # make v1's topic the live one
      mlpatterns stream read                                       # serve live predictions
      mlpatterns stream compare v1 v2                              # shadow comparison table
    """


@stream.command()
@_PREFIX
@_BOOTSTRAP
@click.option("--date", default="2013-06-01", show_default=True, help="Local date whose flights to replay.")
@click.option("--days", default=1, show_default=True, help="Number of consecutive days.")
@click.option("--partitions", default=3, show_default=True, help="Partitions of the events topic (if new).")
@click.option("--speed", default=0.0, show_default=True, help="Event-time seconds per second (0: no pacing).")
@click.option("--rate", default=0.0, show_default=True, help="At most this many messages/s (0: unlimited).")
def replay(
    prefix: str, bootstrap: str, date: str, days: int, partitions: int, speed: float, rate: float
) -> None:
    """Publish flights, departures and weather in event-time order to <prefix>.events.

    Requests are keyed (and partitioned) by flight_id; departures and weather are written to every
    partition (broadcast state), so each partition is self-sufficient for exact features.
    """
    from tqdm import tqdm

    from patterns.streaming.messages import Topics
    from patterns.streaming.replay import Replayer, day_window, events_between

    start, _ = day_window(date)
    end = start + days * 86400
    replayer = Replayer(bootstrap, Topics(prefix), partitions)
    with tqdm(total=len(events_between(start, end)), unit="event", desc="replay") as bar:
        stats = replayer.replay(start, end, speed=speed, rate=rate, progress=bar.update)
    replayer.close()
    click.echo(
        f"{stats.requests} requests + {stats.state_events} state events = {stats.messages} messages "
        f"in {stats.seconds:.1f}s"
    )


@stream.command()
@_PREFIX
@_BOOTSTRAP
@click.option("--version", "version", envvar="MLPATTERNS_STREAM_VERSION", default=None,
              help="Model version from the registry (default: latest).")  # fmt: skip
@click.option("--registry", type=click.Path(path_type=Path), default=None, help="Registry root.")
@click.option("--cutoff", type=int, default=None,
              help="First start of a group: history before this epoch second, stream from it "
                   "(default: the first event of each partition).")  # fmt: skip
@click.option("--max-batch", default=500, show_default=True, help="Messages per poll / micro-batch.")
@click.option("--idle-exit", type=float, default=None, help="Exit after this many idle seconds.")
@click.option("--no-log", is_flag=True, help="Do not write the prediction log.")
def work(
    prefix: str,
    bootstrap: str,
    version: str | None,
    registry: Path | None,
    cutoff: int | None,
    max_batch: int,
    idle_exit: float | None,
    no_log: bool,
) -> None:
    """Run one worker of VERSION's consumer group (<prefix>.worker.<version>) until SIGTERM."""
    from patterns.streaming.messages import Topics
    from patterns.streaming.worker import StreamWorker
    from shared.example.flights import FLIGHT_FEATURES
    from shared.predictor import Predictor
    from shared.predlog import PredictionLog
    from shared.registry import Registry

    predictor = Predictor.load(version, Registry(registry), FLIGHT_FEATURES.fingerprint())
    worker = StreamWorker(
        predictor, bootstrap, Topics(prefix), cutoff=cutoff, max_batch=max_batch,
        predlog=None if no_log else PredictionLog("streaming"),
    )  # fmt: skip
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    click.echo(f"worker {predictor.version} consuming {prefix}.events", err=True)
    try:
        stats = worker.run(stop=lambda: bool(stopping), idle_exit_s=idle_exit)
    except KeyboardInterrupt:
        stats = worker.stats
    finally:
        worker.close()
    late = ", ".join(f"{n} {source}" for source, n in sorted(stats.late_dropped.items())) or "none"
    click.echo(
        f"{stats.messages} messages, {stats.predictions} predictions, {stats.dead_letters} dead letters, "
        f"late events dropped: {late}"
    )


@stream.command()
@_PREFIX
@_BOOTSTRAP
@click.option("--limit", type=int, default=None, help="Stop after this many predictions.")
@click.option("--idle-exit", type=float, default=5.0, show_default=True, help="Stop after idle seconds.")
def read(prefix: str, bootstrap: str, limit: int | None, idle_exit: float) -> None:
    """Print the live version's predictions (JSON lines), following the control topic."""
    import json
    import time

    from patterns.streaming.messages import Topics
    from patterns.streaming.reader import PredictionReader

    reader = PredictionReader(bootstrap, Topics(prefix))
    served, idle = 0, time.monotonic()
    try:
        while (limit is None or served < limit) and time.monotonic() - idle < idle_exit:
            batch = reader.poll()
            if batch:
                idle = time.monotonic()
            for s in batch:
                sys.stdout.write(json.dumps(s.value) + "\n")
            served += len(batch)
    finally:
        reader.close()
    click.echo(f"served {served} predictions, dropped {reader.duplicates_dropped} duplicates", err=True)


@stream.command("switch")
@_PREFIX
@_BOOTSTRAP
@click.argument("version", required=False)
def switch_(prefix: str, bootstrap: str, version: str | None) -> None:
    """Publish VERSION as live on the control topic (no VERSION: show the current route).

    This is the raw mechanism; `mlpatterns deploy streaming VERSION` runs it behind the gates.
    """
    from patterns.streaming.messages import Topics
    from patterns.streaming.reader import Control

    control = Control(bootstrap, Topics(prefix))
    route = control.publish(version) if version else control.current()
    click.echo(f"live: {route.version or 'nothing'} (topic {route.topic}, seq {route.seq})")


@stream.command()
@_PREFIX
@_BOOTSTRAP
@click.argument("live")
@click.argument("candidate")
def compare(prefix: str, bootstrap: str, live: str, candidate: str) -> None:
    """Shadow comparison of two versions' prediction topics, joined on flight_id."""
    from patterns.streaming.messages import Topics
    from patterns.streaming.switch import StreamSwitch, compare_table

    pairs = StreamSwitch(bootstrap, Topics(prefix)).pairs(live, candidate)
    click.echo(compare_table(live, candidate, *pairs))
