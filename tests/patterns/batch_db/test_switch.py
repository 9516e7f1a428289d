"""The batch pattern under the shared deploy core: the pointer is the switch."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from patterns.batch_db import PredictionReader, PredictionTableStore
from patterns.batch_db.cli import batch
from patterns.batch_db.switch import build_target
from shared.deploy import Deployer, SlotState
from shared.deploy import SQLiteStore as DeployStateStore
from shared.registry import Registry

from .conftest import DAY

FID = "20130301-EV4608-EWR-0559"


def test_deploy_switch_and_rollback_through_pointer(
    store: PredictionTableStore, registry: Registry, tmp_path: Path
) -> None:
    target = build_target(store, dates=[DAY], registry=registry)
    deployer = Deployer.for_target(target, DeployStateStore(tmp_path / "deploy.sqlite"))
    reader = PredictionReader(store)

    first = deployer.deploy(target.models("v1"))
    assert first.ok, first.reason
    assert reader.get(FID).model_version == "v1"  # type: ignore[union-attr]
    assert {g.gate for g in first.gates} >= {"readiness", "golden_set", "batch_run"}
    v1_table = store.pointer(DAY).table  # type: ignore[union-attr]

    second = deployer.deploy(target.models("v2"))
    assert second.ok, second.reason
    live = reader.get(FID)
    assert live is not None and live.model_version == "v2"
    assert store.pointer(DAY).history == [v1_table]  # type: ignore[union-attr]

    state = deployer.rollback()
    assert state.live_version == "v1"
    assert state.slots[second.slot].state is SlotState.ROLLED_BACK
    assert reader.get(FID).model_version == "v1"  # type: ignore[union-attr]


def test_deploy_refused_by_run_gate_leaves_pointer(
    store: PredictionTableStore, registry: Registry, tmp_path: Path
) -> None:
    target = build_target(store, dates=[DAY], registry=registry, max_psi=0.0)
    deployer = Deployer.for_target(target, DeployStateStore(tmp_path / "deploy.sqlite"))
    assert deployer.deploy(target.models("v1")).ok
    table = store.pointer(DAY).table  # type: ignore[union-attr]
    result = deployer.deploy(target.models("v2"))
    assert not result.ok and "batch_run" in result.reason and "PSI" in result.reason
    assert store.pointer(DAY).table == table  # type: ignore[union-attr]
    assert PredictionReader(store).get(FID).model_version == "v1"  # type: ignore[union-attr]


def test_cli_score_get_rollback(store_options: dict[str, object]) -> None:
    flags = ["--store", str(store_options["kind"]), "--prefix", str(store_options["prefix"])]
    runner = CliRunner()
    env = (
        {"MLPATTERNS_HBASE_THRIFT_PORT": str(store_options.get("port", ""))}
        if "port" in store_options
        else {}
    )
    out = runner.invoke(batch, ["score", "--date", DAY, "--version", "v1", *flags], env=env)
    assert out.exit_code == 0, out.output
    assert "published" in out.output
    got = runner.invoke(batch, ["get", FID, *flags], env=env)
    assert got.exit_code == 0 and "model=v1" in got.output, got.output
    out = runner.invoke(batch, ["score", "--date", DAY, "--version", "v2", *flags], env=env)
    assert out.exit_code == 0, out.output
    assert "model=v2" in runner.invoke(batch, ["get", FID, *flags], env=env).output
    back = runner.invoke(batch, ["rollback", "--date", DAY, *flags], env=env)
    assert back.exit_code == 0, back.output
    assert "model=v1" in runner.invoke(batch, ["get", FID, *flags], env=env).output
    listing = runner.invoke(batch, ["runs", *flags], env=env)
    assert listing.output.count("published") == 2
