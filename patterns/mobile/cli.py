"""``mlpatterns mobile``: train, export (with parity gates), publish, rollout, rollback, status."""

from __future__ import annotations

from typing import Any

import click

from patterns.mobile.manifest import default_channel
from shared.cli import CommandGroup, months_callback

__all__ = ["mobile"]


def _formats(ctx: click.Context, param: click.Parameter, spec: str) -> list[str]:
    """The comma list of --formats, ``tflite`` expanded to its three variants; unknown ones refused."""
    from patterns.mobile.parity import FORMATS

    wanted: list[str] = []
    for item in (f.strip() for f in spec.split(",") if f.strip()):
        wanted += [f for f in FORMATS if f.startswith("tflite_")] if item == "tflite" else [item]
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise click.BadParameter(
            f"unknown formats {', '.join(unknown)} (known: tflite, {', '.join(FORMATS)})"
        )
    return wanted


def _check_registered(version: str) -> None:
    """A version the mobile registry lacks is the caller's mistake: one line, before any work starts.

    The registry raises ``UnknownVersion``, a ``UserError``: ``CommandGroup`` prints it as one line.
    """
    from patterns.mobile.model import mobile_registry

    mobile_registry().get(version)


@click.group(cls=CommandGroup)
def mobile() -> None:
    """Mobile pattern: an on-device TensorFlow model exported to TFLite / Core ML / ONNX, shipped to
    apps through a per-channel manifest with a staged rollout percentage.

    \b
      mlpatterns mobile train                       # mobile v1 (months 1-9, held out 10-12)
      mlpatterns mobile export v1                   # all formats + parity report
      mlpatterns mobile publish v1                  # first publish: live
      mlpatterns mobile publish v2 --percent 10     # candidate for 10 % of devices
      mlpatterns mobile rollout --percent 50
      mlpatterns mobile rollback
    """


_channel = click.option(
    "--channel", default=default_channel, show_default="stable",
    help="Manifest channel (env MLPATTERNS_MOBILE_CHANNEL).",
)  # fmt: skip


@mobile.command()
@click.option(
    "--train-months",
    default="1-9",
    show_default=True,
    callback=months_callback,
    help="Months to train on, e.g. 1-9.",
)
@click.option(
    "--heldout-months",
    default="10-12",
    show_default=True,
    callback=months_callback,
    help="Held-out months for reports.",
)
@click.option(
    "--epochs",
    default=3,
    show_default=True,
    type=click.IntRange(min=1),
    help="Passes over the training rows.",
)
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(min=0),
    help="Seed of the initial weights, the batch order and the golden-set rows.",
)  # fmt: skip
def train(train_months: tuple[int, ...], heldout_months: tuple[int, ...], epochs: int, seed: int) -> None:
    """Train the TensorFlow mobile model and register it in $MLPATTERNS_HOME/mobile/registry."""
    from patterns.mobile.model import MobileTrainingConfig, train_mobile

    try:  # each option's months are valid; this checks they make a time split
        config = MobileTrainingConfig(train_months, heldout_months, epochs=epochs, seed=seed)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--heldout-months") from None
    mv = train_mobile(config, progress=lambda m: click.echo(f"  {m}"))
    click.echo(f"registered mobile {mv.version}: held-out AUC {mv.metrics['heldout_auc']:.4f}")


@mobile.command()
@click.argument("version")
@click.option(
    "--formats", default="tflite,coreml,onnx", show_default=True, callback=_formats,
    help="Comma list: tflite (= float32, dynamic int8, full int8), tflite_float32, tflite_dynamic_int8, "
    "tflite_int8, coreml, onnx.",
)  # fmt: skip
@click.option(
    "--heldout-months", default=None, callback=months_callback,
    help="Override the version's held-out months, e.g. 10-12.",
)  # fmt: skip
def export(version: str, formats: list[str], heldout_months: tuple[int, ...] | None) -> None:
    """Export VERSION and gate each format on parity with the TensorFlow source (exit 1 on failure)."""
    from tqdm import tqdm

    from patterns.mobile.export import export_version
    from patterns.mobile.parity import ParityError, render_table

    _check_registered(version)  # before the progress bar: an error must not follow a started export
    bar = tqdm(total=2 * len(formats), desc=f"export {version}", unit="step")

    def step(message: str) -> None:
        bar.set_postfix_str(message.split(": ", 1)[-1][:40])
        bar.update(1)

    try:
        reports = export_version(version, formats, heldout_months=heldout_months, progress=step)
    except ParityError as exc:
        bar.close()
        from patterns.mobile.export import load_reports

        click.echo(render_table(list(load_reports(version).values())))
        raise click.ClickException(str(exc)) from None
    bar.close()
    click.echo(render_table(reports))


@mobile.command()
@click.argument("version")
@_channel
@click.option("--percent", default=0.0, show_default=True, type=float, help="Rollout % if a version is live.")
@click.option("--min-app-version", default="1.0.0", show_default=True, help="Older apps keep the live model.")
@click.option(
    "--format", "fmt", default=None,
    help="Which export apps get. Default: the channel's format (tflite_float32 for a new channel); "
    "a channel never changes format.",
)  # fmt: skip
@click.option(
    "--allow-unverified", is_flag=True,
    help="Publish a format whose numeric parity could not run here (Core ML off macOS). Without it, refused.",
)  # fmt: skip
def publish(
    version: str, channel: str, percent: float, min_app_version: str, fmt: str | None, allow_unverified: bool
) -> None:
    """Upload VERSION's export (must have passed parity) and publish it: live if none, else candidate."""
    from patterns.mobile.manifest import Channel
    from patterns.mobile.switch import stage_entry

    try:
        chan = Channel(channel, fmt=fmt)
        doc = chan.publish(stage_entry(chan, version, min_app_version, allow_unverified), percent)
    except (RuntimeError, FileNotFoundError) as exc:  # refusals (ManifestError, parity, fingerprint)
        raise click.ClickException(str(exc)) from None
    _show(doc)


@mobile.command()
@_channel
@click.option(
    "--percent", required=True, type=click.FloatRange(0, 100),
    help="Share of devices on the candidate; 100 promotes.",
)  # fmt: skip
def rollout(channel: str, percent: float) -> None:
    """Set the candidate's rollout percentage (100 makes it live, the old live becomes 'previous')."""
    from patterns.mobile.manifest import Channel

    _show(Channel(channel).rollout(percent))


@mobile.command()
@_channel
def rollback(channel: str) -> None:
    """Drop the candidate; without one, put the previous live version back."""
    from patterns.mobile.manifest import Channel

    _show(Channel(channel).rollback())


@mobile.command()
@_channel
@click.option(
    "--devices", default=0, type=click.IntRange(min=0),
    help="Also simulate this many devices and count versions.",
)  # fmt: skip
def status(channel: str, devices: int) -> None:
    """Show the channel manifest (and which version simulated devices would get)."""
    from patterns.mobile.manifest import Channel

    chan = Channel(channel)
    _show(chan.load())
    if devices:
        from collections import Counter

        counts = Counter(
            (e.version if e else "none") for e in (chan.resolve(f"d{i}") for i in range(devices))
        )
        for version, n in sorted(counts.items()):
            click.echo(f"  {version}: {n} devices ({n / devices:.1%})")


def _show(doc: dict[str, Any]) -> None:
    def name(entry: Any) -> str:
        return str(entry["version"]) if isinstance(entry, dict) else "-"

    click.echo(
        f"channel {doc['channel']} (seq {doc['sequence']}, {doc['format']}): live {name(doc['live'])}, "
        f"candidate {name(doc['candidate'])} at {float(doc['rollout_percent']):g}%, "
        f"previous {name(doc['previous'])}"
    )
