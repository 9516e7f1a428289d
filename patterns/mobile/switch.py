"""Blue-green for apps: the deploy core's ``Switch`` whose medium is the channel manifest.

``stage`` uploads a version's export in the channel's format (only if its parity gate ran and
passed, and it was trained on this code's ``MOBILE_FEATURES``) to the CDN folder;
``route(weights)`` rewrites the manifest: the slot that is live in the manifest stays live and the
other one becomes the candidate at ``weight x 100`` percent of devices, a single slot at 1.0
becomes live. ``predict`` runs the uploaded file itself (sha256 checked), so the deploy
core's golden-set gate judges exactly the bytes phones will download.

Phones send no telemetry here, so ``observe`` reports no requests and the bake guardrails have
nothing to judge: the gates that matter are export parity (at export) and the golden set.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from patterns.mobile.export import FILES, export_dir, load_export, load_reports, run_artifact
from patterns.mobile.inputs import MOBILE_FEATURES
from patterns.mobile.manifest import Channel, Entry, default_channel
from patterns.mobile.model import mobile_registry
from shared.deploy import BakeMetrics, GoldenSetGate, ReadinessGate, Slot, Switch, Target, registry_cards
from shared.deploy.state import SlotState, TargetState
from shared.registry import FingerprintMismatch, Registry, sha256_file

__all__ = ["ManifestSwitch", "build_target", "stage_entry"]


def stage_entry(
    channel: Channel, version: str, min_app_version: str = "1.0.0", allow_unverified: bool = False
) -> Entry:
    """Upload ``version``'s export in the channel's format, refusing one that failed its parity gate,
    one whose parity could not run (unless ``allow_unverified``) and one trained on other inputs."""
    fmt = channel.format
    fingerprint = str(load_export(version, channel.home).get("feature_fingerprint"))
    if fingerprint != MOBILE_FEATURES.fingerprint():
        raise FingerprintMismatch(
            f"{version} was exported for inputs {fingerprint} but this code encodes "
            f"{MOBILE_FEATURES.fingerprint()}: apps would feed it inputs it never learned; retrain it"
        )
    report = load_reports(version, channel.home).get(fmt)
    if report is None:
        raise RuntimeError(f"{version} has no {fmt} export: run `mlpatterns mobile export {version}`")
    if report.failures:
        raise RuntimeError(f"{version}: {fmt} failed its parity gate ({'; '.join(report.failures)})")
    if not report.ran and not allow_unverified:
        raise RuntimeError(
            f"{version}: {fmt} numeric parity was not run ({report.note}), so its numbers are "
            "unverified; export it where it can run, or publish with --allow-unverified"
        )
    path = export_dir(version, channel.home) / FILES[fmt]
    if sha256_file(path) != report.sha256:
        raise RuntimeError(f"{version}: {path} changed since its parity report; re-export it")
    return channel.upload(version, path, min_app_version, fingerprint)


def _local(url: str) -> Path:
    return Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))


class ManifestSwitch(Switch):
    """Two slots, each an uploaded model; routing = the manifest's live / candidate / percent."""

    supports_weights = True

    def __init__(self, channel: Channel, min_app_version: str = "1.0.0") -> None:
        self.channel = channel
        self.min_app_version = min_app_version
        self.slots: dict[Slot, Entry] = {}

    def stage(self, slot: Slot, version: str) -> None:
        self.slots[slot] = stage_entry(self.channel, version, self.min_app_version)

    def ready(self, slot: Slot) -> bool:
        entry = self.slots.get(slot)
        return (
            entry is not None
            and _local(entry.url).exists()
            and sha256_file(_local(entry.url)) == entry.sha256
        )

    def predict(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        if not self.ready(slot):
            raise RuntimeError(f"slot {slot} holds no intact model")
        raw = np.rint(np.asarray(X, dtype=np.float64)).astype(np.int32)
        return run_artifact(self.channel.format, _local(self.slots[slot].url), raw)

    def route(self, weights: Mapping[Slot, float]) -> None:
        active = {Slot(s): float(w) for s, w in weights.items() if w > 0}
        for slot in active:
            if slot not in self.slots:
                raise RuntimeError(f"cannot route to empty slot {slot}")
        if not active:
            self.channel.set_state(self._current_live(), None, 0.0)
            return
        live_version = (self.channel.load().get("live") or {}).get("version")
        ordered = sorted(active, key=lambda s: (self.slots[s].version != live_version, -active[s]))
        live = ordered[0]
        if len(ordered) == 1:
            self.channel.set_state(self.slots[live], None, 0.0)
        else:
            cand = ordered[1]
            self.channel.set_state(self.slots[live], self.slots[cand], 100.0 * active[cand])

    def observe(self, slot: Slot) -> BakeMetrics:
        return BakeMetrics()

    def retire(self, slot: Slot) -> None:
        self.slots.pop(slot, None)

    def attach(self, state: TargetState) -> None:
        for slot, info in state.slots.items():
            keep = info.state not in (SlotState.EMPTY, SlotState.RETIRED)
            if keep and info.version and (slot not in self.slots or self.slots[slot].version != info.version):
                self.stage(slot, info.version)

    def _current_live(self) -> Entry | None:
        live = self.channel.load().get("live")
        return Entry(**live) if live else None


def build_target(
    channel: str | Channel | None = None,
    registry: Registry | None = None,
    home: Path | None = None,
    fmt: str | None = None,
    **_: object,
) -> Target:
    """The ``mobile`` deploy target: a manifest switch over the mobile registry's versions
    (``channel`` None: ``$MLPATTERNS_MOBILE_CHANNEL`` or ``stable``, as the ``mobile`` commands;
    ``fmt`` None: the channel's own format, ``tflite_float32`` for a new channel)."""
    reg = registry or mobile_registry(home / "mobile" / "registry" if home else None)
    chan = channel if isinstance(channel, Channel) else Channel(channel or default_channel(), home, fmt)
    gates = [ReadinessGate(timeout_s=5.0), GoldenSetGate(atol=1e-4)]
    return Target("mobile", ManifestSwitch(chan), MOBILE_FEATURES.fingerprint(), registry_cards(reg), gates)
