"""The mobile pattern's part of ``make demo``: export, publish v1, roll v2 out to 10 %, roll back."""

from __future__ import annotations

from collections import Counter

__all__ = ["run_demo"]


def run_demo(versions: tuple[str, str] = ("v1", "v2"), channel: str = "demo", devices: int = 20_000) -> None:
    """Train two mobile versions when missing (months 1-9, held out 10-12), export them with their
    parity tables, publish the first, send the second to 10 % of simulated devices, roll back, and
    try Core ML (refused off macOS: its parity could not run)."""
    import tempfile
    from pathlib import Path

    from patterns.mobile.client import MobileClient
    from patterns.mobile.export import export_version
    from patterns.mobile.manifest import Channel
    from patterns.mobile.model import MobileTrainingConfig, mobile_registry, train_mobile
    from patterns.mobile.parity import render_table
    from patterns.mobile.switch import stage_entry

    registry = mobile_registry()
    known = {v.version for v in registry.list()}
    for seed, version in enumerate(versions):
        while version not in known:
            mv = train_mobile(MobileTrainingConfig(seed=seed, epochs=2 + seed))
            known.add(mv.version)
            print(f"trained mobile {mv.version}: held-out AUC {mv.metrics['heldout_auc']:.4f}")
    for version in versions:
        print(f"\n== parity of {version} exports vs TensorFlow (held-out months)")
        print(render_table(export_version(version)))

    chan = Channel(channel)
    old, new = versions
    chan.path.unlink(missing_ok=True)
    chan.publish(stage_entry(chan, old))
    chan.publish(stage_entry(chan, new), percent=10)
    counts = Counter(
        str(e.version if e else None) for e in (chan.resolve(f"dev-{i}") for i in range(devices))
    )
    print(f"\n== channel {channel}: live {old}, candidate {new} at 10 %")
    print(
        "  "
        + ", ".join(f"{v}: {n} of {devices} devices ({n / devices:.1%})" for v, n in sorted(counts.items()))
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(6):
            client = MobileClient(chan.path, f"dev-{i}", Path(tmp) / f"dev-{i}")
            client.sync()
            p = client.predict([dict(year=2013, month=11, day=27, hour=17, minute=59, carrier="B6",
                                     origin="JFK", dest="BOS", distance=187)])  # fmt: skip
            print(f"  dev-{i}: runs {client.version}, P(late) JFK->BOS 17:59 = {p[0]:.3f}")
    doc = chan.rollback()
    print(f"rollback: candidate {doc['candidate']}, every device back on {doc['live']['version']}")
    # iOS apps get Core ML: its numbers are only measured on macOS, so elsewhere publish refuses it.
    ios = Channel(f"{channel}-ios", fmt="coreml")
    ios.path.unlink(missing_ok=True)
    try:
        ios.publish(stage_entry(ios, old))
        print(f"channel {ios.name}: Core ML {old} live (numeric parity ran on this Mac)")
    except RuntimeError as exc:
        print(f"channel {ios.name}: Core ML {old} not published: {exc}")
