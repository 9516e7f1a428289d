"""The manifest switch driven by the shared Deployer: golden-set gate on the uploaded bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from patterns.mobile.manifest import Channel
from patterns.mobile.model import mobile_registry
from patterns.mobile.switch import build_target
from shared.deploy import Deployer, GoldenSetGate, Slot, SQLiteStore
from shared.registry import ModelVersion


def test_deploy_publishes_and_canary_sets_rollout(
    exported: dict, mobile_home: Path, mobile_version: ModelVersion, tmp_path: Path
) -> None:
    reg = mobile_registry(mobile_home / "mobile" / "registry")
    chan = Channel("deploy", mobile_home)
    target = build_target(chan, registry=reg)
    deployer = Deployer.for_target(target, SQLiteStore(tmp_path / "state.db"))
    result = deployer.deploy(target.models(mobile_version.version))
    assert result.ok, result.reason
    assert chan.load()["live"]["version"] == mobile_version.version
    assert any(g.gate == "golden_set" and g.passed for g in result.gates)
    # route(weights) = rollout percentage: a 30 % share for the other slot.
    switch = target.switch
    switch.slots[Slot.GREEN] = switch.slots[Slot.BLUE]
    switch.route({Slot.BLUE: 0.7, Slot.GREEN: 0.3})
    assert chan.load()["rollout_percent"] == 30.0
    switch.route({Slot.BLUE: 1.0})
    assert chan.load()["candidate"] is None
    # The uploaded bytes reproduce the golden outputs recorded at training, within the gate's tolerance.
    golden_atol = next(g for g in target.gates if isinstance(g, GoldenSetGate)).atol
    inputs, outputs = mobile_version.golden_set()
    np.testing.assert_allclose(switch.predict(Slot.BLUE, inputs), outputs, rtol=0, atol=golden_atol)


def test_deploy_manages_the_channel_the_mobile_commands_do(
    exported: dict,
    mobile_home: Path,
    mobile_version: ModelVersion,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `mlpatterns deploy mobile` builds its target without arguments: it must publish to the channel
    # `mlpatterns mobile status` shows, which follows $MLPATTERNS_MOBILE_CHANNEL, not always `stable`.
    monkeypatch.setenv("MLPATTERNS_MOBILE_CHANNEL", "beta-testers")
    reg = mobile_registry(mobile_home / "mobile" / "registry")
    stable = Channel("stable", mobile_home).path
    stable_before = stable.read_bytes() if stable.exists() else None  # other tests may publish it
    target = build_target(registry=reg, home=mobile_home)
    result = Deployer.for_target(target, SQLiteStore(tmp_path / "state.db")).deploy(
        target.models(mobile_version.version)
    )
    assert result.ok, result.reason
    assert Channel("beta-testers", mobile_home).load()["live"]["version"] == mobile_version.version
    assert (stable.read_bytes() if stable.exists() else None) == stable_before
