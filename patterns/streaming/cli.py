"""``mlpatterns stream``: replay events, run workers, read the live predictions, switch, compare."""

from __future__ import annotations

import datetime as dt
import re
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from shared import settings
from shared.cli import CommandGroup
from shared.errors import UserError

if TYPE_CHECKING:
    from shared.registry import Registry

__all__ = ["stream"]

#: How the registry names versions; a prediction topic is named after one.
_VERSION = re.compile(r"v[0-9]+")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
#: The one year of the data set: a replay of any other day has no events.
_DATA_YEAR = 2013


def _check_prefix(ctx: click.Context, param: click.Parameter, prefix: str) -> str:
    # Before any model loads or topic is made: Kafka would refuse the names much later.
    from patterns.streaming.messages import TopicNameError, Topics

    try:
        Topics(prefix)
    except TopicNameError as exc:
        raise click.BadParameter(str(exc)) from None
    return prefix


_PREFIX = click.option(
    "--prefix", envvar="MLPATTERNS_STREAM_PREFIX", default="mlp", show_default=True, callback=_check_prefix,
    help="Topic/group name prefix (env MLPATTERNS_STREAM_PREFIX): <prefix>.events, .control, .dlq, …",
)  # fmt: skip
_BOOTSTRAP = click.option(
    "--bootstrap", envvar="MLPATTERNS_KAFKA_BOOTSTRAP", default=settings.kafka_bootstrap,
    show_default="127.0.0.1:$MLPATTERNS_KAFKA_PORT", help="Kafka bootstrap servers.",
)  # fmt: skip


def _check_date(ctx: click.Context, param: click.Parameter, date: str) -> str:
    """--date as YYYY-MM-DD of 2013: any other day has no flights to replay."""
    if not _DATE.fullmatch(date):
        raise click.BadParameter(f"expected a date as YYYY-MM-DD, got {date!r}")
    try:
        year = dt.date.fromisoformat(date).year
    except ValueError:
        raise click.BadParameter(f"{date} is not a date") from None
    if year != _DATA_YEAR:
        raise click.BadParameter(f"{date} is outside {_DATA_YEAR}, the one year of the data set")
    return date


def _registered(registry: Registry, version: str | None, hint: str = "") -> str:
    """``version`` (latest when None) as ``registry`` has it; a missing one is the caller's mistake.

    The registry raises ``UnknownVersion`` (a ``UserError``) for an unknown version or an empty
    registry: one ``Error:`` line, not a traceback, with ``hint`` added.
    """
    from shared.registry import UnknownVersion

    try:
        return (registry.get(version) if version else registry.latest()).version
    except UnknownVersion as exc:
        raise UserError(f"{exc}{hint}") from None


def _require_kafka(bootstrap: str) -> None:
    """One ``Error:`` line when Kafka cannot be reached, not a client's traceback 30 s later."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        KafkaAdminClient(bootstrap_servers=bootstrap, bootstrap_timeout_ms=5000, client_id="mlp-cli").close()
    except (KafkaError, OSError, ValueError) as exc:
        raise _unreachable(bootstrap, exc) from None


def _unreachable(bootstrap: str, exc: BaseException) -> click.ClickException:
    return click.ClickException(f"Kafka at {bootstrap} does not answer ({exc})")


@click.group(cls=CommandGroup)
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
@click.option("--date", default="2013-06-01", show_default=True, callback=_check_date,
              help="Local date (YYYY-MM-DD, in 2013) whose flights to replay.")  # fmt: skip
@click.option("--days", default=1, show_default=True, type=click.IntRange(min=1),
              help="Number of consecutive days.")  # fmt: skip
@click.option("--partitions", default=3, show_default=True, type=click.IntRange(min=1),
              help="Partitions of the events topic (if new).")  # fmt: skip
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
@click.option("--max-batch", default=500, show_default=True, type=click.IntRange(min=1),
              help="Messages per poll / micro-batch.")  # fmt: skip
@click.option("--idle-exit", type=float, default=None, help="Exit after this many idle seconds.")
@click.option("--no-log", is_flag=True, help="Do not write the prediction log.")
@click.option("--session-timeout", envvar="MLPATTERNS_STREAM_SESSION_TIMEOUT", default=45.0,
              show_default=True, type=click.FloatRange(min=6, max=1800),
              help="Seconds without a heartbeat before the group gives a dead worker's partitions to the "
                   "others (the broker's default bounds: 6 to 1800).")  # fmt: skip
def work(
    prefix: str,
    bootstrap: str,
    version: str | None,
    registry: Path | None,
    cutoff: int | None,
    max_batch: int,
    idle_exit: float | None,
    no_log: bool,
    session_timeout: float,
) -> None:
    """Run one worker of VERSION's consumer group (<prefix>.worker.<version>) until SIGTERM."""
    from patterns.streaming.messages import Topics
    from patterns.streaming.retry import transient_errors
    from patterns.streaming.worker import StreamWorker
    from shared.example.flights import FLIGHT_FEATURES
    from shared.predictor import Predictor
    from shared.predlog import PredictionLog
    from shared.registry import Registry

    models = Registry(registry)
    chosen = _registered(models, version)
    _require_kafka(bootstrap)  # before the model loads; once running, the worker waits outages out
    predictor = Predictor.load(chosen, models, FLIGHT_FEATURES.fingerprint())
    try:
        worker = StreamWorker(
            predictor, bootstrap, Topics(prefix), cutoff=cutoff, max_batch=max_batch,
            predlog=None if no_log else PredictionLog("streaming"), session_timeout_s=session_timeout,
        )  # fmt: skip
    except transient_errors() as exc:  # gone between the check and the worker's clients
        raise _unreachable(bootstrap, exc) from None
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
    from patterns.streaming.retry import transient_errors

    _require_kafka(bootstrap)  # once reading, the reader waits outages out (until --idle-exit)
    try:
        reader = PredictionReader(bootstrap, Topics(prefix))
    except transient_errors() as exc:
        raise _unreachable(bootstrap, exc) from None
    served, idle = 0, time.monotonic()
    try:
        while (limit is None or served < limit) and time.monotonic() - idle < idle_exit:
            batch = reader.poll()
            if batch:
                idle = time.monotonic()
            if limit is not None:
                batch = batch[: limit - served]  # a poll returns up to a whole batch: stop at the limit
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
@click.option("--registry", type=click.Path(path_type=Path), default=None, help="Registry root.")
@click.option("--force", is_flag=True, help="Publish VERSION even if the registry does not have it.")
def switch_(prefix: str, bootstrap: str, version: str | None, registry: Path | None, force: bool) -> None:
    """Publish VERSION as live on the control topic (no VERSION: show the current route).

    This is the raw mechanism; `mlpatterns deploy streaming VERSION` runs it behind the gates.
    VERSION must be registered (a worker of it can exist) unless --force.
    """
    from patterns.streaming.messages import Topics
    from patterns.streaming.reader import Control
    from shared.registry import Registry

    # Every reader follows what is published here, so a name no worker can have is refused first.
    if version and not _VERSION.fullmatch(version):
        raise click.BadParameter(f"expected a model version like v1, got {version!r}", param_hint="'VERSION'")
    if version and not force:
        _registered(Registry(registry), version, hint=" (--force publishes it anyway)")
    control = Control(bootstrap, Topics(prefix))
    route = control.publish(version) if version else control.current()
    click.echo(f"live: {route.version or 'nothing'} (topic {route.topic}, seq {route.seq})")


@stream.command()
@_PREFIX
@_BOOTSTRAP
@click.option("--registry", type=click.Path(path_type=Path), default=None, help="Registry root.")
@click.argument("live")
@click.argument("candidate")
def compare(prefix: str, bootstrap: str, registry: Path | None, live: str, candidate: str) -> None:
    """Shadow comparison of two versions' prediction topics, joined on flight_id; decisions at
    each version's own threshold, as its workers publish them."""
    from patterns.streaming.messages import Topics
    from patterns.streaming.switch import StreamSwitch, compare_table
    from shared.registry import Registry

    models = Registry(registry)
    cuts = (models.get(live).decision_threshold, models.get(candidate).decision_threshold)
    pairs = StreamSwitch(bootstrap, Topics(prefix)).pairs(live, candidate)
    click.echo(compare_table(live, candidate, *pairs, cuts=cuts))
