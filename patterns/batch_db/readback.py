"""Read-back check: a sample of a run's rows, scored again from scratch, must equal what the store holds.

The publish gate's counts and PSI see only the set of stored scores: a run that wrote every score
against the wrong flight (an off-by-one between chunks, a reordered writer) passes them all. So
after the writes, the scorer picks a few dates of the run and some flights of each, recomputes
their scores without the chunked pipeline (features of just those rows, one inference call per
date) and reads the stored rows back through the store's reader path. Any difference, or a row
the store cannot find, fails the run at publish time, whatever ``--force`` says.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from patterns.batch_db.store import PredictionTableStore

__all__ = ["read_back"]

DATES = 8
ROWS_PER_DATE = 25
#: Scores are stored as their exact float text; the tolerance only absorbs a store that rounds.
TOLERANCE = 1e-9


def read_back(
    store: PredictionTableStore,
    table: str,
    rows: pd.DataFrame,
    recompute: Callable[[pd.DataFrame], np.ndarray],
    seed: str,
) -> dict[str, Any]:
    """``{"rows": checked, "mismatched": n, "example": text}`` for a sample of ``rows`` in ``table``.

    ``seed`` (the run id) makes the sample the same on a rerun of the same run.
    """
    if rows.empty:
        return {"rows": 0, "mismatched": 0, "example": ""}
    rng = np.random.default_rng(int(hashlib.sha256(seed.encode()).hexdigest()[:12], 16))
    ids = rows["flight_id"].astype(str)
    # The id's YYYYMMDD prefix is its date (the scorer quarantined every id without one); sliced in
    # one vectorised call, where date_of per row cost a quarter of a second for a year.
    dates = ids.str.slice(0, 8).to_numpy()
    every = np.unique(dates)
    chosen = rng.choice(every, size=min(DATES, len(every)), replace=False)
    checked = mismatched = 0
    example = ""
    for date in sorted(chosen):
        on_date = np.flatnonzero(dates == date)
        pick = np.sort(rng.choice(on_date, size=min(ROWS_PER_DATE, len(on_date)), replace=False))
        expected = recompute(rows.iloc[pick].reset_index(drop=True))
        for fid, want in zip(ids.iloc[pick], expected.tolist(), strict=True):
            stored = store.get_prediction(table, fid)
            checked += 1
            if stored is None or not abs(stored.score - want) <= TOLERANCE:
                mismatched += 1
                got = "no row" if stored is None else repr(stored.score)
                example = example or f"{fid}: stored {got}, recomputed {want!r}"
    return {"rows": checked, "mismatched": mismatched, "example": example}
