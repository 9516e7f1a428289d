"""``mlpatterns check``: run the consistency checks, print a table, write JSON + HTML, gate CI."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from shared.consistency.report import CheckResult, ConsistencyReport

__all__ = ["check"]

_PATTERNS = ("rest_api", "batch_db", "streaming")


@click.command()
@click.argument("which", type=click.Choice(["all", "features", "exports", "drift"]), default="all")
@click.option(
    "--pattern",
    "patterns",
    multiple=True,
    type=click.Choice(_PATTERNS),
    help="Prediction logs to read (repeatable). Default: every pattern that logged.",
)
@click.option("--version", default=None, help="Model version (default: the one most traffic was served by).")
@click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    envvar="MLPATTERNS_CHECK_CONFIG",
    show_envvar=True,
    help="TOML thresholds merged over the defaults (shared/consistency/thresholds.toml).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MLPATTERNS_REPORT_DIR",
    show_envvar=True,
    help="Where consistency.json and consistency.html go. Default: $MLPATTERNS_HOME/reports.",
)
@click.option(
    "--mobile-report",
    "reports",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Export parity report JSON to judge, repeatable "
    "(default: every $MLPATTERNS_HOME/mobile/exports/<version>/export.json).",
)
@click.option(
    "--scores",
    "scores_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Scores file (.npz from shared.consistency.write_scores) of exported artifacts to compare.",
)
@click.option("--no-predictions", is_flag=True, help="Do not recompute predictions with the registry model.")
@click.option("--strict", is_flag=True, help="Fail the gate when a check could not run, too.")
@click.option(
    "--accept-unverified",
    "accepted",
    multiple=True,
    metavar="TEXT",
    help="Under --strict, accept the rows not run whose name contains TEXT, on purpose (repeatable; "
    "e.g. coreml: Core ML predicts only on macOS, so its parity cannot run on Linux CI).",
)
@click.option("--no-html", is_flag=True, help="Skip the HTML report (plots take a few seconds).")
@click.option("--no-colour", is_flag=True, help="Plain terminal output.")
def check(
    which: str,
    patterns: tuple[str, ...],
    version: str | None,
    config: Path | None,
    report_dir: Path | None,
    reports: tuple[Path, ...],
    scores_files: tuple[Path, ...],
    no_predictions: bool,
    strict: bool,
    accepted: tuple[str, ...],
    no_html: bool,
    no_colour: bool,
) -> None:
    """Train/serve consistency checks; exits 1 when a gate fails, or when nothing could be checked.

    \b
    features  per-example feature skew: every logged request's features recomputed offline for the
              same key and time, compared with what serving used (and the logged prediction with
              the registry model)
    exports   export skew: scikit-learn vs ONNX on held-out months, plus the mobile pattern's
              TensorFlow vs TFLite / Core ML / ONNX parity report
    drift     distribution skew: training-window features vs serving features (PSI, Jensen-Shannon,
              L-infinity; KS / chi-squared for <= 1000 serving rows)
    all       the three (default)
    """
    from tqdm import tqdm

    from shared import settings
    from shared.consistency.config import load_thresholds
    from shared.consistency.run import CHECKS, run_checks

    checks = CHECKS if which == "all" else (which,)
    thresholds = load_thresholds(config)  # a bad file fails before any work starts
    with tqdm(total=len(checks) + 1, desc="check", unit="step", file=sys.stderr) as bar:

        def progress(message: str) -> None:
            bar.set_description(message)
            if not message.startswith("reading"):
                bar.update(1)

        report = run_checks(
            checks,
            patterns=patterns or None,
            version=version,
            thresholds=thresholds,
            reports=list(reports) if reports else None,
            scores_files=scores_files,
            recompute_predictions=not no_predictions,
            strict=strict,
            progress=progress,
        )
        report.accept_unverified = accepted
        nothing_checked = _fail_if_nothing_checked(report)
        bar.set_description("writing reports")
        directory = report_dir or settings.home() / "reports"
        json_path = report.write_json(directory / "consistency.json")
        html_path = None if no_html else report.write_html(directory / "consistency.html")
        bar.update(bar.total - bar.n)
    click.echo(report.summary(colour=not no_colour and sys.stdout.isatty()))
    if nothing_checked:
        click.echo(_nothing_checked_message(patterns))
    click.echo(f"JSON report: {json_path}")
    if html_path:
        click.echo(f"HTML report: {html_path}")
    if not report.passed:
        sys.exit(1)


def _ran_nothing(result: CheckResult) -> bool:
    """The whole check, or every row of it, could not run (no logs, no model, no report...)."""
    if result.status == "not_run":
        return True
    return bool(result.findings) and all(f.status == "not_run" for f in result.findings)


def _fail_if_nothing_checked(report: ConsistencyReport) -> bool:
    """True when no selected check ran; the report then fails like ``--strict`` (JSON included).

    A gate that checked nothing must not pass: a mistyped MLPATTERNS_HOME finds no logs and no
    model, and would otherwise turn CI green. When at least one check ran, a check that could not
    run still fails only under ``--strict``.
    """
    if not report.checks or not all(_ran_nothing(c) for c in report.checks):
        return False
    report.strict = True
    report.context["nothing_checked"] = True
    return True


def _nothing_checked_message(patterns: Sequence[str]) -> str:
    from shared import settings
    from shared.predlog import log_dir

    home = settings.home()
    logs = ", ".join(str(log_dir(p)) for p in patterns) if patterns else str(home / "logs")
    return (
        "nothing was checked: no selected check could run (see above), so the gate fails.\n"
        f"MLPATTERNS_HOME is {home}; prediction logs were read from {logs}; "
        f"models from {home / 'registry'}"
    )
