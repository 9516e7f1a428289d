"""``mlpatterns rest``: serve the REST app and materialise its online feature store."""

from __future__ import annotations

import sys
from typing import Any

import click

from shared.cli import CommandGroup

__all__ = ["load_features", "rest", "run_app", "serve"]


@click.group(cls=CommandGroup)
def rest() -> None:
    """REST pattern: FastAPI + onnxruntime with online features from Redis.

    \b
      mlpatterns rest load-features --until 2013-06-01T09:00   # fill Redis from history
      mlpatterns rest serve --version v1 --port 8001 --slot blue
      curl -s localhost:8001/predict -d '{"carrier": "UA", "flight": 1545, "origin": "EWR",
        "dest": "IAH", "distance": 1400, "scheduled_departure": "2013-06-01T08:30:00-04:00"}'
    """


def _redis_url(url: str | None) -> str:
    from shared import settings

    return url or settings.redis_url()


@rest.command()
@click.option(
    "--version",
    "version",
    envvar="MLPATTERNS_MODEL_VERSION",
    default=None,
    help="Model version to serve, e.g. v1 [env MLPATTERNS_MODEL_VERSION; default: latest].",
)
@click.option(
    "--host",
    envvar="MLPATTERNS_REST_HOST",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind [env MLPATTERNS_REST_HOST].",
)
@click.option(
    "--port",
    envvar="MLPATTERNS_REST_PORT",
    default=8001,
    show_default=True,
    type=click.IntRange(1, 65535),
    help="Port to bind [env MLPATTERNS_REST_PORT].",
)
@click.option(
    "--store",
    envvar="MLPATTERNS_REST_STORE",
    default="redis",
    show_default=True,
    type=click.Choice(["redis", "embedded"]),
    help="Online feature store: Redis (shared, filled by load-features or a stream) or "
    "embedded (in-process; see --preload-until) [env MLPATTERNS_REST_STORE].",
)
@click.option(
    "--redis-url",
    envvar="MLPATTERNS_REDIS_URL",
    default=None,
    help="Redis URL [env MLPATTERNS_REDIS_URL; default redis://127.0.0.1:$MLPATTERNS_REDIS_PORT/0].",
)
@click.option(
    "--redis-prefix",
    envvar="MLPATTERNS_REDIS_PREFIX",
    default="mlp",
    show_default=True,
    help="Key prefix of the feature state in Redis [env MLPATTERNS_REDIS_PREFIX].",
)
@click.option(
    "--slot",
    envvar="MLPATTERNS_SLOT",
    default=None,
    help="Blue-green slot (colour) reported by /admin/info and /metrics [env MLPATTERNS_SLOT].",
)
@click.option(
    "--admin-token",
    envvar="MLPATTERNS_ADMIN_TOKEN",
    default=None,
    help="Bearer token for /admin/* (disabled without one) [env MLPATTERNS_ADMIN_TOKEN].",
)
@click.option(
    "--preload-until",
    default=None,
    help="With --store embedded: replay history up to this date-time at start-up, "
    "e.g. 2013-06-01T09:00 (New York time).",
)
@click.option(
    "--max-batch-rows",
    default=256,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest micro-batch of concurrent requests scored together.",
)
@click.option(
    "--log/--no-log",
    "prediction_log",
    default=True,
    show_default=True,
    help="Write every prediction to $MLPATTERNS_HOME/logs/rest_api.",
)
@click.option(
    "--log-level",
    default="warning",
    show_default=True,
    type=click.Choice(["critical", "error", "warning", "info", "debug"]),
    help="uvicorn log level.",
)
def serve(
    version: str | None,
    host: str,
    port: int,
    store: str,
    redis_url: str | None,
    redis_prefix: str,
    slot: str | None,
    admin_token: str | None,
    preload_until: str | None,
    max_batch_rows: int,
    prediction_log: bool,
    log_level: str,
) -> None:
    """Serve one model version with uvicorn (one worker, uvloop + httptools, no access log).

    Endpoints: POST /predict, the Open Inference Protocol under /v2, /metrics, /admin/*, /noop
    (benchmark baseline) and the API docs at /docs.
    """
    from patterns.rest_api.app import create_app
    from patterns.rest_api.service import FlightDelayService
    from shared.features import StreamingExecutor

    if preload_until and store != "embedded":
        raise click.UsageError(
            "--preload-until only applies to --store embedded (use load-features for Redis)"
        )
    until = _until(preload_until, "--preload-until") if preload_until else None  # before the model loads
    service = FlightDelayService.from_config(
        _registered_version(version),
        store=store,
        redis_url=_redis_url(redis_url) if store == "redis" else None,
        redis_prefix=redis_prefix,
        slot=slot,
        log=prediction_log,
    )
    if until is not None:
        from shared.example.data import event_sources

        counts = StreamingExecutor(service.feature_set, service.store).observe_history(event_sources(), until)
        click.echo(f"preloaded {counts}", err=True)
    click.echo(
        f"serving {service.model_name} {service.version} (slot {slot or '-'}) on http://{host}:{port} "
        f"with the {store} store",
        err=True,
    )
    app = create_app(service, admin_token=admin_token, max_batch_rows=max_batch_rows)
    try:
        run_app(app, host, port, log_level)
    finally:
        service.close()


def run_app(app: Any, host: str, port: int, log_level: str = "warning") -> None:
    """Serve an ASGI app as ``rest serve`` does: one uvicorn process, uvloop + httptools, no access log."""
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        workers=1,
        access_log=False,
        log_level=log_level,
        backlog=4096,
        timeout_graceful_shutdown=5,
    )


def _registered_version(version: str | None) -> str:
    """``version`` (latest when None) as the registry has it; a missing one is the caller's mistake.

    The registry raises ``UnknownVersion`` (a ``UserError``) for an unknown version or an empty
    registry: one ``Error:`` line, not a traceback.
    """
    from shared.registry import Registry

    registry = Registry()
    return (registry.get(version) if version else registry.latest()).version


def _until(text: str, option: str) -> int:
    from patterns.rest_api.loader import parse_until

    try:
        return parse_until(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


@rest.command("load-features")
@click.option(
    "--until",
    "until_text",
    required=True,
    help="Cut-off: replay events before this date or ISO date-time (New York time unless an "
    "offset is given), e.g. 2013-06-01 or 2013-06-01T09:00.",
)
@click.option(
    "--since",
    "since_text",
    default=None,
    # Written out, not derived: FLIGHT_FEATURES costs a second to import on every CLI start;
    # tests/patterns/rest_api/test_cli.py checks the hours against retention_seconds.
    help="Replay events from here on [default: what the features still need, 26 h for departures, "
    "5 h for weather].",
)
@click.option(
    "--redis-url", envvar="MLPATTERNS_REDIS_URL", default=None, help="Redis URL [env MLPATTERNS_REDIS_URL]."
)
@click.option(
    "--redis-prefix",
    envvar="MLPATTERNS_REDIS_PREFIX",
    default="mlp",
    show_default=True,
    help="Key prefix of the feature state [env MLPATTERNS_REDIS_PREFIX].",
)
@click.option("--clear", is_flag=True, help="Delete the prefix's feature state first.")
def load_features(
    until_text: str, since_text: str | None, redis_url: str | None, redis_prefix: str, clear: bool
) -> None:
    """Materialise the online store in Redis from history (departures + weather before --until).

    Events go through the streaming executor, which applies the late-event policy and evicts state
    no request can need; flights scheduled from an hour before --until to an hour after it then get
    exactly the features training computed offline (they are read as of an hour before departure).
    """
    from tqdm import tqdm

    from patterns.rest_api.service import build_store
    from shared.example.data import event_sources
    from shared.example.flights import FLIGHT_FEATURES

    until = _until(until_text, "--until")
    since = _until(since_text, "--since") if since_text else None
    if since is not None and since >= until:
        # An empty window loads nothing, and with --clear it would only wipe the prefix.
        raise click.UsageError(f"--since {since_text} must be before --until {until_text}")
    store = build_store("redis", _redis_url(redis_url), redis_prefix)
    try:
        store.ping()
    except Exception as exc:
        raise click.ClickException(f"Redis at {_redis_url(redis_url)} does not answer: {exc}") from None
    if clear:
        store.clear()
    from shared.features import StreamingExecutor

    executor = StreamingExecutor(FLIGHT_FEATURES, store)
    events = executor.history_window(event_sources(), until, since)
    total = sum(len(window) for window in events.values())
    with tqdm(total=total, unit="event", desc="load-features", file=sys.stderr) as bar:

        def progress(source: str, n: int) -> None:
            bar.set_postfix_str(source)
            bar.update(n)

        counts = executor.observe_history(events, until, since, progress=progress)
    click.echo(
        "loaded "
        + ", ".join(f"{n:,} {s}" for s, n in counts.items())
        + f" events into {redis_prefix}:* (watermarks {executor.watermarks})"
    )
