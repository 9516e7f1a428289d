"""The shadow gate on real models and real traffic: the session's v1 and v2 on February's flights.

v1 and v2 are trained on January with other capacities; February is their validation month, where
each picked its own decision threshold (v1 0.195, v2 0.231). All 24,951 February flights are served
by live v1 and mirrored to the candidate, so the numbers below are the month's, not a sample's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from shared.deploy import (
    Deployer,
    DeployResult,
    GateResult,
    GoldenSetGate,
    InProcessSwitch,
    ModelCard,
    ReadinessGate,
    ShadowGate,
    SQLiteStore,
    Strategy,
    registry_cards,
)
from shared.example.flights import FLIGHT_FEATURES
from shared.example.train import feature_table
from shared.predictor import Predictor
from shared.registry import Registry

FINGERPRINT = FLIGHT_FEATURES.fingerprint()
NOW = Strategy.all_at_once(bake_s=0.0, poll_s=0.1)


@pytest.fixture(scope="module")
def february() -> np.ndarray:
    return feature_table((2,))[1].to_numpy(np.float32)


@pytest.fixture
def registry(tmp_path: Path, copy_registry: Callable[[Path], Registry]) -> Registry:
    return copy_registry(tmp_path)


def _deployer(
    registry: Registry, traffic: np.ndarray, shadow: ShadowGate, path: Path
) -> tuple[Deployer, Callable[[str], ModelCard]]:
    """v1 live, and the card lookup; "v1-cut" is v1's model registered again with the cut at 0.5."""
    cards = registry_cards(registry)

    def card(version: str) -> ModelCard:
        if version == "v1-cut":
            return replace(cards("v1"), version=version, decision_threshold=0.5)
        return cards(version)

    def load(version: str) -> Callable[[np.ndarray], np.ndarray]:
        return Predictor(registry.get(version.removesuffix("-cut")), FINGERPRINT).predict_proba

    switch = InProcessSwitch(load)
    gates = [ReadinessGate(), GoldenSetGate(), replace(shadow, min_pairs=len(traffic), poll_s=0.0)]

    def serve(_: float) -> None:  # each wait of the gates: the whole month, once
        switch.serve(traffic)

    deployer = Deployer("real", switch, SQLiteStore(path), FINGERPRINT, gates, sleep=serve, models=card)
    assert deployer.deploy(card("v1"), NOW).ok
    return deployer, card


def _shadow(result: DeployResult) -> GateResult:
    return next(g for g in result.gates if g.gate == "shadow")


def test_a_retrain_passes_at_its_own_cut_and_a_wrong_cut_is_refused(
    registry: Registry, february: np.ndarray, tmp_path: Path
) -> None:
    deployer, card = _deployer(registry, february, ShadowGate(), tmp_path / "own.sqlite")
    cuts = registry.get("v1").decision_threshold, registry.get("v2").decision_threshold
    assert 0.15 < cuts[0] < cuts[1] < 0.3  # best F1 on February: both well below 0.5
    wrong = deployer.deploy(card("v1-cut"), NOW)
    shadow = _shadow(wrong)
    # Same scores as live (mean |diff| 0), but "delayed" for 8 % of flights instead of 43 %.
    assert not wrong.ok and shadow.metrics["mean_abs_diff"] == 0.0
    assert shadow.metrics["agreement"] == pytest.approx(0.646, abs=0.005)
    assert shadow.metrics["pairs"] == len(february) == 24_951
    retrain = deployer.deploy(card("v2"), NOW)
    shadow = _shadow(retrain)
    assert retrain.ok, retrain.reason
    assert (shadow.metrics["live_threshold"], shadow.metrics["candidate_threshold"]) == cuts
    assert shadow.metrics["agreement"] == pytest.approx(0.870, abs=0.005)
    assert shadow.metrics["mean_abs_diff"] == pytest.approx(0.036, abs=0.002)


def test_one_fixed_cut_at_0_5_judges_the_wrong_thing(
    registry: Registry, february: np.ndarray, tmp_path: Path
) -> None:
    # The gate as it was (both at 0.5, 98 %): blind to the wrong cut, and refuses the honest retrain,
    # because at 0.5 only the few flights scored near it can disagree (97.5 % agree).
    old = ShadowGate(threshold=0.5, min_agreement=0.98)
    deployer, card = _deployer(registry, february, old, tmp_path / "fixed.sqlite")
    retrain = deployer.deploy(card("v2"), NOW)
    assert not retrain.ok and _shadow(retrain).metrics["agreement"] == pytest.approx(0.975, abs=0.005)
    wrong = deployer.deploy(card("v1-cut"), NOW)
    assert wrong.ok and _shadow(wrong).metrics["agreement"] == 1.0
