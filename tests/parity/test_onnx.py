"""scikit-learn vs ONNX on a month the model never saw (trained on January, validated on February)."""

from __future__ import annotations

import numpy as np

from shared.consistency import check_exports
from shared.example.train import TrainingConfig, feature_table, train
from shared.registry import Registry


def test_onnx_matches_sklearn_on_a_held_out_month(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = train(
        TrainingConfig(train_months=(1,), valid_months=(2,), max_iter=50), registry=Registry(tmp_path)
    )
    flights, table = feature_table((3,))
    result = check_exports(
        model, holdout=(table.to_numpy(np.float32), flights["label"].to_numpy()), max_rows=10**6
    )
    row = result.finding("sklearn vs onnx")
    assert row.status == "pass", row.message
    assert row.metrics["n"] == len(flights)
    assert row.metrics["max_abs_diff"] < 1e-4
    assert row.metrics["label_agreement"] >= 0.999
    assert abs(row.metrics["auc_reference"] - row.metrics["auc_candidate"]) < 1e-3
    assert row.metrics["auc_reference"] > 0.6  # a real model, not a constant
