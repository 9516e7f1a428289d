"""One tiny mobile model (January, one epoch) and its exports, shared by the mobile tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from patterns.mobile.model import MobileTrainingConfig, mobile_registry, train_mobile
from shared.registry import ModelVersion

HELDOUT = (10,)


@pytest.fixture(scope="session")
def mobile_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mobile-home")


@pytest.fixture(scope="session")
def mobile_version(mobile_home: Path) -> ModelVersion:
    config = MobileTrainingConfig(train_months=(1,), heldout_months=HELDOUT, epochs=1)
    return train_mobile(config, registry=mobile_registry(mobile_home / "mobile" / "registry"))


@pytest.fixture(scope="session")
def exported(mobile_home: Path, mobile_version: ModelVersion) -> dict:
    from patterns.mobile.export import export_version

    reports = export_version(
        mobile_version.version,
        registry=mobile_registry(mobile_home / "mobile" / "registry"),
        home=mobile_home,
    )
    return {r.format: r for r in reports}
