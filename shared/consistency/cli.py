"""``mlpatterns check``: run the consistency checks, print a table, write JSON + HTML, gate CI."""

from __future__ import annotations

import sys
from pathlib import Path

import click

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
    help="TOML thresholds merged over the defaults (shared/consistency/thresholds.toml).",
)
@click.option(
    "--report-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MLPATTERNS_REPORT_DIR",
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
    no_html: bool,
    no_colour: bool,
) -> None:
    """Train/serve consistency checks; exits 1 when a gate fails.

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
    with tqdm(total=len(checks) + 1, desc="check", unit="step", file=sys.stderr) as bar:

        def progress(message: str) -> None:
            bar.set_description(message)
            if not message.startswith("reading"):
                bar.update(1)

        report = run_checks(
            checks,
            patterns=patterns or None,
            version=version,
            thresholds=load_thresholds(config),
            reports=list(reports) if reports else None,
            scores_files=scores_files,
            recompute_predictions=not no_predictions,
            strict=strict,
            progress=progress,
        )
        bar.set_description("writing reports")
        directory = report_dir or settings.home() / "reports"
        json_path = report.write_json(directory / "consistency.json")
        html_path = None if no_html else report.write_html(directory / "consistency.html")
        bar.update(bar.total - bar.n)
    click.echo(report.summary(colour=not no_colour and sys.stdout.isatty()))
    click.echo(f"JSON report: {json_path}")
    if html_path:
        click.echo(f"HTML report: {html_path}")
    if not report.passed:
        sys.exit(1)
