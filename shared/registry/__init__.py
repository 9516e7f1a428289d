"""A file-based model registry: versions with checksummed artifacts, fingerprints and metrics.

Layout: ``<root>/<version>/manifest.json`` plus the artifact files it lists. A version directory is
written under a temporary name and renamed into place, so a reader never sees half a version. Every
artifact is checked against its sha256 before it is used; a mismatch is refused, never loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared import settings
from shared.errors import UserError

__all__ = [
    "FingerprintMismatch",
    "IntegrityError",
    "InvalidVersion",
    "ModelVersion",
    "Registry",
    "UnknownVersion",
    "sha256_file",
]

#: A version is a directory name the registry chose itself: ``v`` and a number, nothing else, so a
#: name can never point outside the registry (``../x``, ``/abs``) nor be a stray copy (``v1.bak``).
_VERSION = re.compile(r"v[0-9]+")


class IntegrityError(RuntimeError):
    """An artifact's bytes, or a manifest, do not match what was recorded when it was registered."""


class UnknownVersion(UserError, KeyError):
    """No such model version (or an empty registry). Still a ``KeyError``: callers catch that."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InvalidVersion(UnknownVersion):
    """A name that cannot be a version at all (``v1.bak``, ``../x``): no version has it."""


class FingerprintMismatch(RuntimeError):
    """A model was trained on other feature definitions than the ones the caller runs."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class ModelVersion:
    """One registered version, as described by its manifest."""

    version: str
    path: Path
    created: float
    feature_set: str
    feature_fingerprint: str
    feature_names: list[str]
    training: dict[str, Any]
    metrics: dict[str, float]
    data_fingerprint: str
    artifacts: dict[str, dict[str, Any]]
    extra: dict[str, Any] = field(default_factory=dict)

    def artifact(self, name: str) -> Path:
        """Path of an artifact after checking its sha256 (raises ``IntegrityError`` on mismatch)."""
        if name not in self.artifacts:
            raise KeyError(
                f"{self.version} has no artifact {name!r} (has: {', '.join(sorted(self.artifacts))})"
            )
        path = self.path / name
        if not path.exists():
            raise IntegrityError(f"{self.version}: artifact {name} is missing from {self.path}")
        actual = sha256_file(path)
        expected = self.artifacts[name]["sha256"]
        if actual != expected:
            raise IntegrityError(
                f"{self.version}: artifact {name} is corrupted (sha256 {actual[:12]}…, registered "
                f"{expected[:12]}…); refusing to load it. Re-register or retrain the version."
            )
        return path

    def verify(self) -> None:
        """Check every artifact's checksum."""
        for name in self.artifacts:
            self.artifact(name)

    def check_fingerprint(self, running: str) -> None:
        if running != self.feature_fingerprint:
            raise FingerprintMismatch(
                f"{self.version} was trained on features {self.feature_fingerprint} but this code runs "
                f"{running}: retrain, or deploy the code the model was trained with."
            )

    @property
    def decision_threshold(self) -> float:
        """The yes/no cut chosen at training (best F1 on validation); 0.5 for a model that records none."""
        return float(self.metrics.get("decision_threshold", 0.5))

    def golden_set(self) -> tuple[np.ndarray, np.ndarray]:
        """(inputs float32, expected probabilities) recorded at training, for the deploy gates."""
        with np.load(self.artifact("golden.npz")) as data:
            return data["inputs"], data["outputs"]

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in self._manifest().items() if k != "feature_names"}

    def _manifest(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "created": self.created,
            "feature_set": self.feature_set,
            "feature_fingerprint": self.feature_fingerprint,
            "feature_names": self.feature_names,
            "training": self.training,
            "metrics": self.metrics,
            "data_fingerprint": self.data_fingerprint,
            "artifacts": self.artifacts,
            "extra": self.extra,
        }


class Registry:
    """Model versions under ``root`` (default ``$MLPATTERNS_HOME/registry``), named v1, v2, …"""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else settings.home() / "registry"
        self.root.mkdir(parents=True, exist_ok=True)

    def register(
        self,
        artifacts: Mapping[str, Path | bytes],
        *,
        feature_set: str,
        feature_fingerprint: str,
        feature_names: list[str],
        training: dict[str, Any],
        metrics: dict[str, float],
        data_fingerprint: str,
        golden_inputs: np.ndarray,
        golden_outputs: np.ndarray,
        extra: dict[str, Any] | None = None,
    ) -> ModelVersion:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            for name, content in artifacts.items():
                target = staging / name
                if isinstance(content, bytes):
                    target.write_bytes(content)
                else:
                    shutil.copyfile(content, target)
            np.savez(staging / "golden.npz", inputs=golden_inputs.astype(np.float32), outputs=golden_outputs)
            files = {
                p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
                for p in sorted(staging.iterdir())
            }
            version = ModelVersion(
                "",
                staging,
                time.time(),
                feature_set,
                feature_fingerprint,
                feature_names,
                training,
                metrics,
                data_fingerprint,
                files,
                extra or {},
            )
            return self._publish(staging, version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _publish(self, staging: Path, version: ModelVersion) -> ModelVersion:
        while True:
            name = f"v{self._next_number()}"
            version.version, version.path = name, self.root / name
            (staging / "manifest.json").write_text(json.dumps(version._manifest(), indent=2, default=str))
            try:
                os.rename(staging, version.path)  # atomic; fails if another writer took the name
                return version
            except OSError:
                if not version.path.exists():
                    raise

    def _next_number(self) -> int:
        # Every version-named directory counts, even one without a manifest: its name is taken.
        taken = [_number(p.name) for p in self.root.iterdir() if _VERSION.fullmatch(p.name)]
        return max(taken, default=0) + 1

    def names(self) -> list[str]:
        """Names of the published versions, in order; anything else in the root is not a version."""
        names = [p.name for p in self.root.iterdir() if _VERSION.fullmatch(p.name)]
        return sorted((n for n in names if (self.root / n / "manifest.json").exists()), key=_number)

    def list(self) -> list[ModelVersion]:
        return [self.get(name) for name in self.names()]

    def get(self, version: str) -> ModelVersion:
        """The manifest of ``version``; ``IntegrityError`` when it claims to be another version."""
        if not _VERSION.fullmatch(version):
            raise InvalidVersion(f"model version must look like v1, v2, ..., got {version!r}")
        manifest = self.root / version / "manifest.json"
        if not manifest.exists():
            known = ", ".join(self.names()) or "none; run `mlpatterns train`"
            raise UnknownVersion(f"no model version {version!r} in {self.root} (known: {known})")
        try:
            data = json.loads(manifest.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise IntegrityError(f"{manifest}: not a readable manifest ({exc}); refusing it") from None
        if not isinstance(data, dict):
            raise IntegrityError(f"{manifest}: a manifest is a JSON object, got {type(data).__name__}")
        if data.get("version") != version:
            # A copied or edited directory: serving it would report one version and run another.
            raise IntegrityError(
                f"{manifest.parent}: the manifest says version {data.get('version')!r} but the "
                f"directory is {version}; refusing to load it (copied or tampered with)"
            )
        missing = [key for key in _MANIFEST_KEYS if key not in data]
        if missing:
            raise IntegrityError(f"{manifest}: the manifest lacks {', '.join(missing)}; refusing to load it")
        return ModelVersion(
            path=manifest.parent, extra=data.get("extra", {}), **{key: data[key] for key in _MANIFEST_KEYS}
        )

    def latest(self) -> ModelVersion:
        # Only the newest manifest is read: a damaged older version does not stop the others.
        names = self.names()
        if not names:
            raise UnknownVersion(f"the registry at {self.root} is empty: run `mlpatterns train` first")
        return self.get(names[-1])


_MANIFEST_KEYS = (
    "version",
    "created",
    "feature_set",
    "feature_fingerprint",
    "feature_names",
    "training",
    "metrics",
    "data_fingerprint",
    "artifacts",
)


def _number(name: str) -> int:
    return int(name[1:])
