"""Staged rollout for apps: one JSON manifest per channel, read by every app on start.

``$MLPATTERNS_HOME/mobile/channels/<channel>.json``::

    {"channel": "stable", "format": "tflite_float32", "sequence": 7, "rollout_percent": 10.0,
     "live":      {"version": "v1", "url": "...", "sha256": "...", "bytes": 33984,
                   "min_app_version": "1.0.0", "feature_fingerprint": "..."},
     "candidate": {"version": "v2", ...},
     "previous":  null}

A device runs the candidate when ``bucket(device_id) < rollout_percent`` (buckets 0-99.99 from a
sha256 of channel + device id): stable per device, and monotone, so a device that got v2 at 10 %
keeps it at 50 %. An app older than an entry's ``min_app_version`` stays on live. Artifacts are
copied to ``$MLPATTERNS_HOME/mobile/cdn/<version>/`` (the stand-in for a CDN); the manifest is
replaced atomically (write + rename) so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from shared import settings
from shared.errors import UserError
from shared.registry import sha256_file

__all__ = [
    "DEFAULT_FORMAT",
    "Channel",
    "ChannelNameError",
    "Entry",
    "ManifestError",
    "bucket",
    "cdn_dir",
    "channel_path",
    "choose",
    "default_channel",
    "version_tuple",
]

_BUCKETS = 10_000
#: The format of a new channel when none is asked for.
DEFAULT_FORMAT = "tflite_float32"
#: A channel name is a file name inside the channels folder, never a path.
_CHANNEL_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ManifestError(UserError, RuntimeError):
    """A manifest operation that cannot be done (nothing to roll back, unexported version, ...).

    The caller asked for something the channel's state does not allow: one ``Error:`` line.
    """


class ChannelNameError(UserError, ValueError):
    """A channel name that is not a plain name (``../x``, ``/tmp/x``): it would escape the home."""


@dataclass(frozen=True)
class Entry:
    """One downloadable model in a manifest."""

    version: str
    url: str
    sha256: str
    bytes: int
    min_app_version: str
    feature_fingerprint: str


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.10.2"`` -> ``(1, 10, 2)`` so app versions compare numerically.

    Missing parts count as 0 (trailing zeros are dropped), so ``"2.0"`` equals ``"2.0.0"``; as raw
    tuples ``(2, 0) < (2, 0, 0)`` would keep an app "1.0" off a model for "1.0.0".
    """
    parts = [int(part) for part in version.split(".") if part.isdigit()]
    while parts and parts[-1] == 0:
        parts.pop()
    return tuple(parts)


def bucket(device_id: str, salt: str) -> float:
    """The device's stable position in [0, 100) for this channel (0.01 granularity)."""
    digest = hashlib.sha256(f"{salt}:{device_id}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") % _BUCKETS) / (_BUCKETS / 100)


def channel_path(channel: str, home: Path | None = None) -> Path:
    """Where the manifest of ``channel`` lives; ``ChannelNameError`` unless it is a plain name."""
    if not _CHANNEL_NAME.fullmatch(channel):
        raise ChannelNameError(
            f"channel name {channel!r} is not allowed: use ASCII letters, digits, '_' and '-' "
            "(it names a manifest file under $MLPATTERNS_HOME/mobile/channels)"
        )
    return (home or settings.home()) / "mobile" / "channels" / f"{channel}.json"


def default_channel() -> str:
    """The channel a command manages when none is named: ``$MLPATTERNS_MOBILE_CHANNEL`` or ``stable``."""
    return os.environ.get("MLPATTERNS_MOBILE_CHANNEL") or "stable"


def cdn_dir(home: Path | None = None) -> Path:
    return (home or settings.home()) / "mobile" / "cdn"


class Channel:
    """The manifest of one channel: ``publish``, ``rollout``, ``rollback`` and ``resolve``.

    A channel keeps the format it was created with (``fmt``, default ``DEFAULT_FORMAT``): its URLs
    point at files of that format, so asking an existing channel for another one raises.
    """

    def __init__(self, name: str = "stable", home: Path | None = None, fmt: str | None = None) -> None:
        self.name = name
        self.home = home
        self.path = channel_path(name, home)
        existing = json.loads(self.path.read_text()).get("format") if self.path.exists() else None
        if fmt is not None and existing is not None and fmt != existing:
            raise ManifestError(
                f"channel {name} ships {existing} files, not {fmt}: a channel keeps its format "
                f"(its apps run that kind of file); use another channel for {fmt}"
            )
        self.format: str = existing or fmt or DEFAULT_FORMAT

    # -- reading ---------------------------------------------------------------------------------

    def load(self) -> dict[str, Any]:
        if not self.path.exists():
            return {
                "channel": self.name,
                "format": self.format,
                "sequence": 0,
                "updated": None,
                "rollout_percent": 0.0,
                "live": None,
                "candidate": None,
                "previous": None,
            }
        doc: dict[str, Any] = json.loads(self.path.read_text())
        return doc

    def resolve(self, device_id: str, app_version: str = "999.0.0") -> Entry | None:
        """The entry this device should run (None when nothing is published or the app is too old)."""
        return choose(self.load(), device_id, app_version)

    # -- operations ------------------------------------------------------------------------------

    def upload(self, version: str, artifact: Path, min_app_version: str, fingerprint: str) -> Entry:
        """Copy ``artifact`` to the CDN folder and describe it (sha256 taken from the copy)."""
        target = cdn_dir(self.home) / version / artifact.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(artifact, target)
        digest = sha256_file(target)
        if digest != sha256_file(artifact):
            raise ManifestError(f"upload of {artifact} to {target} is corrupted")
        return Entry(
            version, target.resolve().as_uri(), digest, target.stat().st_size, min_app_version, fingerprint
        )

    def publish(self, entry: Entry, percent: float = 0.0) -> dict[str, Any]:
        """First publish: ``entry`` goes live. Later: it becomes the candidate at ``percent``."""
        doc = self.load()
        if doc["live"] is None:
            doc["live"], doc["rollout_percent"] = asdict(entry), 0.0
        elif doc["live"]["version"] == entry.version:
            raise ManifestError(f"{entry.version} is already live on {self.name}")
        else:
            doc["candidate"], doc["rollout_percent"] = asdict(entry), _check_percent(percent)
        return self._write(doc)

    def rollout(self, percent: float) -> dict[str, Any]:
        """Give the candidate ``percent`` of devices; 100 promotes it to live (old live kept as previous)."""
        doc = self.load()
        if doc["candidate"] is None:
            raise ManifestError(f"{self.name} has no candidate to roll out (publish one first)")
        percent = _check_percent(percent)
        if percent >= 100.0:
            doc["previous"], doc["live"], doc["candidate"] = doc["live"], doc["candidate"], None
            doc["rollout_percent"] = 0.0
        else:
            doc["rollout_percent"] = percent
        return self._write(doc)

    def rollback(self) -> dict[str, Any]:
        """Drop the candidate (every device back on live), or, without one, put the previous live back."""
        doc = self.load()
        if doc["candidate"] is not None:
            doc["candidate"], doc["rollout_percent"] = None, 0.0
        elif doc["previous"] is not None:
            doc["live"], doc["previous"] = doc["previous"], None
        else:
            raise ManifestError(f"{self.name}: no candidate and no previous version to roll back to")
        return self._write(doc)

    def set_state(self, live: Entry | None, candidate: Entry | None, percent: float) -> dict[str, Any]:
        """Write live/candidate/percent as given (the blue-green switch's ``route``)."""
        doc = self.load()
        if live is not None and doc["live"] is not None and doc["live"]["version"] != live.version:
            doc["previous"] = doc["live"]
        doc["live"] = asdict(live) if live else None
        doc["candidate"] = asdict(candidate) if candidate else None
        doc["rollout_percent"] = _check_percent(percent) if candidate else 0.0
        return self._write(doc)

    def _write(self, doc: dict[str, Any]) -> dict[str, Any]:
        if doc.setdefault("format", self.format) != self.format:  # changed on disk since __init__
            raise ManifestError(f"channel {self.name} now ships {doc['format']} files, not {self.format}")
        doc["sequence"] = int(doc.get("sequence", 0)) + 1
        doc["updated"] = time.time()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.name}-", dir=self.path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=2)
        os.replace(tmp, self.path)
        return doc


def choose(doc: dict[str, Any], device_id: str, app_version: str) -> Entry | None:
    """Which entry of manifest ``doc`` a device runs (pure function: what the app implements)."""
    app = version_tuple(app_version)
    cand, live = doc.get("candidate"), doc.get("live")
    if (
        cand is not None
        and bucket(device_id, doc["channel"]) < float(doc.get("rollout_percent", 0.0))
        and app >= version_tuple(cand["min_app_version"])
    ):
        return Entry(**cand)
    if live is not None and app >= version_tuple(live["min_app_version"]):
        return Entry(**live)
    return None


def _check_percent(percent: float) -> float:
    if not 0.0 <= percent <= 100.0:
        raise ManifestError(f"rollout percent must be within 0-100, got {percent}")
    return float(percent)
