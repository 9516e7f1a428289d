"""Thresholds of the consistency checks: the defaults shipped in ``thresholds.toml``, merged with yours.

A user file only names what it changes; tables merge key by key, so ``[drift] psi = 0.2`` keeps
every other default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DEFAULTS_PATH", "ExportTolerance", "Thresholds", "load_thresholds"]

DEFAULTS_PATH = Path(__file__).with_name("thresholds.toml")


@dataclass(frozen=True)
class ExportTolerance:
    """How far an exported artifact may move from its source model and still pass.

    ``decision_threshold`` None: label agreement is measured at the held-out base rate (share of
    positive labels; the mean reference score without labels).
    """

    max_abs_diff: float = 1e-4
    min_label_agreement: float = 0.999
    max_auc_drop: float = 0.001
    decision_threshold: float | None = None


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Thresholds:
    """Typed access to the merged threshold tables."""

    def __init__(self, data: Mapping[str, Any], source: str = "defaults") -> None:
        self.data = dict(data)
        self.source = source

    def feature(self, name: str) -> dict[str, float]:
        """abs_tol, rel_tol, max_mismatch_rate for one feature (``prediction`` for predictions)."""
        if name == "prediction":
            base = dict(self.data["prediction"])
            base.setdefault("rel_tol", 0.0)
            return base
        section = self.data["features"]
        keys = ("abs_tol", "rel_tol", "max_mismatch_rate")
        return {k: section[k] for k in keys} | section.get("per_feature", {}).get(name, {})

    @property
    def max_examples(self) -> int:
        return int(self.data["features"].get("max_examples", 5))

    def export(self, candidate: str) -> ExportTolerance:
        section = self.data["exports"]
        keys = ("max_abs_diff", "min_label_agreement", "max_auc_drop", "decision_threshold")
        values = {k: section[k] for k in keys if k in section}
        values |= section.get("candidates", {}).get(candidate, {})
        return ExportTolerance(**values)

    def drift(self, name: str) -> dict[str, Any]:
        """psi, js, linf, p_value, small_sample_rows and action for one feature."""
        section = self.data["drift"]
        base = {k: v for k, v in section.items() if k not in ("per_feature", "default_action")}
        base["action"] = section.get("default_action", "fail")
        merged: dict[str, Any] = base | section.get("per_feature", {}).get(name, {})
        if merged["action"] not in ("fail", "warn", "ignore"):
            raise ValueError(f"drift action of {name} must be fail, warn or ignore, got {merged['action']!r}")
        return merged


def load_thresholds(path: Path | str | None = None) -> Thresholds:
    """Defaults merged with ``path`` (or ``$MLPATTERNS_CHECK_CONFIG`` when set)."""
    with open(DEFAULTS_PATH, "rb") as f:
        data = tomllib.load(f)
    path = path or os.environ.get("MLPATTERNS_CHECK_CONFIG") or None
    if path is None:
        return Thresholds(data)
    with open(path, "rb") as f:
        return Thresholds(_merge(data, tomllib.load(f)), source=str(path))
