"""POM files and config templates shipped as package data in ``shared/services/resources``."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["resource_path", "resource_text"]


def resource_text(name: str) -> str:
    return resources.files("shared.services").joinpath("resources", name).read_text(encoding="utf-8")


def resource_path(name: str) -> Path:
    # The package is installed editable or from a wheel unpacked on disk, so files are real paths.
    return Path(str(resources.files("shared.services").joinpath("resources", name)))
