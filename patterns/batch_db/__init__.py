"""Batch pattern: score flights by day into versioned tables (HBase or SQLite), read via a pointer.

Heavy libraries (onnxruntime, happybase) load only when a scorer or an HBase store is built.
"""

from patterns.batch_db.publishing import PublishResult, publish_run, retain, rollback, validate_run
from patterns.batch_db.reader import NotPublished, PredictionReader
from patterns.batch_db.scoring import BatchScorer, date_range, validate_inputs
from patterns.batch_db.store import Pointer, Prediction, PredictionTableStore, RunRecord, open_store, row_key

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
