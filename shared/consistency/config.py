"""Thresholds of the consistency checks: the defaults shipped in ``thresholds.toml``, merged with yours.

A user file only names what it changes; tables merge key by key, so ``[drift] psi = 0.2`` keeps
every other default.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from shared.errors import UserError

__all__ = ["DEFAULTS_PATH", "ExportTolerance", "Thresholds", "ThresholdsError", "load_thresholds"]

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


class ThresholdsError(UserError, ValueError):
    """A thresholds file that cannot be read, or names a key no check reads; says which file and key."""


_FEATURE_KEYS = frozenset({"abs_tol", "rel_tol", "max_mismatch_rate"})
_EXPORT_KEYS = frozenset(f.name for f in fields(ExportTolerance))
_DRIFT_KEYS = frozenset(
    {"small_sample_rows", "psi", "js", "linf", "share_ratio", "min_share", "max_missing_diff"}
    | {"p_value", "action", "missing_action"}
)
_DRIFT_ACTIONS = ("fail", "warn", "ignore")

#: section -> (its own keys, its free-form sub-table or None, the keys of each entry of that table).
#: The sub-tables are keyed by names the checks define (features, export candidates), so only
#: the keys inside each entry can be checked.
_SCHEMA: dict[str, tuple[frozenset[str], str | None, frozenset[str]]] = {
    "features": (_FEATURE_KEYS | {"max_examples"}, "per_feature", _FEATURE_KEYS),
    "prediction": (_FEATURE_KEYS, None, frozenset()),
    "exports": (_EXPORT_KEYS, "candidates", _EXPORT_KEYS),
    "drift": (
        (_DRIFT_KEYS - {"action", "missing_action"}) | {"default_action", "default_missing_action"},
        "per_feature",
        _DRIFT_KEYS,
    ),
}


def _unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """Dotted names of the keys (or non-tables where a table belongs) that no check reads."""
    problems = [f"{name} (no such section)" for name in data if name not in _SCHEMA]
    for name, (keys, free_form, entry_keys) in _SCHEMA.items():
        section = data.get(name, {})
        if not isinstance(section, Mapping):
            problems.append(f"{name} (must be a table)")
            continue
        problems += [f"{name}.{k}" for k in section if k not in keys and k != free_form]
        entries = section.get(free_form, {}) if free_form else {}
        if not isinstance(entries, Mapping):
            problems.append(f"{name}.{free_form} (must be a table)")
            continue
        for entry, values in entries.items():
            if not isinstance(values, Mapping):
                problems.append(f"{name}.{free_form}.{entry} (must be a table)")
            else:
                problems += [f"{name}.{free_form}.{entry}.{k}" for k in values if k not in entry_keys]
    return problems


def _bad_actions(drift: Mapping[str, Any]) -> list[str]:
    """``key = value`` of every drift action that is not fail, warn or ignore."""
    actions = {f"drift.{k}": drift.get(k, "fail") for k in ("default_action", "default_missing_action")}
    for name, values in drift.get("per_feature", {}).items():
        for key in ("action", "missing_action"):
            if key in values:
                actions[f"drift.per_feature.{name}.{key}"] = values[key]
    return [f"{key} = {value!r}" for key, value in actions.items() if value not in _DRIFT_ACTIONS]


def _validate(data: Mapping[str, Any], source: str) -> None:
    """Refuse a merged configuration a check would silently ignore (a typo) or choke on later."""
    unknown = _unknown_keys(data)
    if unknown:
        raise ThresholdsError(f"{source}: unknown threshold key(s) {', '.join(unknown)}")
    actions = _bad_actions(data.get("drift", {}))
    if actions:
        raise ThresholdsError(f"{source}: drift actions must be fail, warn or ignore: {', '.join(actions)}")


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
        """psi, js, linf, share_ratio, min_share, max_missing_diff, p_value, small_sample_rows,
        action (of the distances) and missing_action (of the missing share) for one feature."""
        section = self.data["drift"]
        defaults = ("per_feature", "default_action", "default_missing_action")
        base = {k: v for k, v in section.items() if k not in defaults}
        base["action"] = section.get("default_action", "fail")
        base["missing_action"] = section.get("default_missing_action", "fail")
        merged: dict[str, Any] = base | section.get("per_feature", {}).get(name, {})
        for key in ("action", "missing_action"):
            if merged[key] not in _DRIFT_ACTIONS:
                raise ValueError(f"drift {key} of {name} must be fail, warn or ignore, got {merged[key]!r}")
        return merged


def load_thresholds(path: Path | str | None = None) -> Thresholds:
    """Defaults merged with ``path`` (or ``$MLPATTERNS_CHECK_CONFIG`` when set).

    Raises ``ThresholdsError`` for a file that is not TOML, or names a key or drift action no check
    knows: a typo must not leave the default gate in place without a word.
    """
    with open(DEFAULTS_PATH, "rb") as f:
        data = tomllib.load(f)
    path = path or os.environ.get("MLPATTERNS_CHECK_CONFIG") or None
    if path is None:
        _validate(data, str(DEFAULTS_PATH))
        return Thresholds(data)
    source = f"--config {path}"
    try:
        with open(path, "rb") as f:
            override = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ThresholdsError(f"{source} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ThresholdsError(f"{source} cannot be read: {exc.strerror}") from None
    merged = _merge(data, override)
    _validate(merged, source)
    return Thresholds(merged, source=str(path))
