"""Batch pattern: score flights by day into versioned tables (HBase or SQLite), read via a pointer.

Names load on first use (PEP 562): an HBase writer process imports ``patterns.batch_db.hbase_store``
without pulling in pandas and the scorer, and heavy libraries (onnxruntime, happybase) load only
when a scorer or an HBase store is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patterns.batch_db.inputs import date_range, validate_inputs
    from patterns.batch_db.publishing import PublishResult, publish_run, retain, rollback, validate_run
    from patterns.batch_db.reader import NotPublished, PredictionReader
    from patterns.batch_db.scoring import BatchScorer
    from patterns.batch_db.store import (
        Pointer,
        Prediction,
        PredictionTableStore,
        RunRecord,
        open_store,
        row_key,
    )

_HOME = {
    "publishing": ("PublishResult", "publish_run", "retain", "rollback", "validate_run"),
    "reader": ("NotPublished", "PredictionReader"),
    "inputs": ("date_range", "validate_inputs"),
    "scoring": ("BatchScorer",),
    "store": ("Pointer", "Prediction", "PredictionTableStore", "RunRecord", "open_store", "row_key"),
}
_MODULE_OF = {name: module for module, names in _HOME.items() for name in names}

__all__ = [
    "BatchScorer",
    "NotPublished",
    "Pointer",
    "Prediction",
    "PredictionReader",
    "PredictionTableStore",
    "PublishResult",
    "RunRecord",
    "date_range",
    "open_store",
    "publish_run",
    "retain",
    "rollback",
    "row_key",
    "validate_inputs",
    "validate_run",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'patterns.batch_db' has no attribute {name!r}")
    return getattr(importlib.import_module(f"patterns.batch_db.{module}"), name)
