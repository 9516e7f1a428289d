"""The gate, the pointer move, rollback and retention: how a written run becomes (or stops being) live.

``publish_run`` = ``validate_run`` (row count equals the valid input count and inputs are fully
accounted for, at least one row for every date, a sample of rows scored again equal to the stored ones
(``readback``), no missing score, PSI of the score distribution against what is
live now for the same dates below ``max_psi``) followed by ONE atomic pointer write for all of the
run's dates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from patterns.batch_db.store import Pointer, PredictionTableStore, RunRecord
from shared.deploy.metrics import psi

__all__ = ["DEFAULT_MAX_PSI", "Check", "PublishResult", "publish_run", "retain", "rollback", "validate_run"]

#: Above 0.25 a score distribution is usually read as a large shift.
DEFAULT_MAX_PSI = 0.25


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str
    value: float | None = None


@dataclass
class PublishResult:
    ok: bool
    run: RunRecord
    checks: list[Check]
    pointers: dict[str, Pointer] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        return "; ".join(c.detail for c in self.checks if not c.passed) or "published"


def validate_run(
    store: PredictionTableStore, run: RunRecord, max_psi: float = DEFAULT_MAX_PSI
) -> tuple[list[Check], np.ndarray]:
    """Every check of the publish gate (all evaluated, for the report) and the run's scores."""
    checks: list[Check] = []
    if run.status not in ("written", "published", "rejected") or run.table not in store.tables():
        checks.append(Check("complete", False, f"run {run.run_id} is {run.status}, not completely written"))
        return checks, np.empty(0)
    by_date = store.scores_by_date(run.table)
    scores = np.concatenate(list(by_date.values())) if by_date else np.empty(0)
    n = len(scores)
    accounted = run.rows + run.quarantined == run.inputs
    checks.append(
        Check(
            "row_count",
            n == run.rows and accounted,
            f"{n} rows stored for {run.rows} valid inputs ({run.quarantined} quarantined of {run.inputs})",
            float(n),
        )
    )
    checks.append(_non_empty(run, {date: len(s) for date, s in by_date.items()}))
    checks.append(_read_back(run))
    missing = int(np.count_nonzero(~np.isfinite(scores)))
    checks.append(Check("missing_scores", missing == 0, f"{missing} rows without a score", float(missing)))
    checks.append(_psi(store, run, scores, max_psi))
    return checks, scores


def _non_empty(run: RunRecord, stored: Mapping[str, int]) -> Check:
    """Publish moves the pointer of every date of the run: a date the table holds no row for (the
    input lacked it, or all of its rows were quarantined) would have every live prediction vanish,
    so such a run is never published (not even with ``force``). ``stored``: rows per date."""
    total = sum(stored.values())
    empty = [d for d in run.dates if stored.get(d, 0) == 0]
    if run.rows > 0 and not empty:
        return Check("non_empty", True, f"{total} predictions to publish", float(total))
    if run.inputs == 0:
        why = "no input rows for these dates"
    elif run.quarantined == run.inputs:
        why = f"all {run.inputs} input rows were quarantined"
    elif total == 0:
        why = "no rows stored"
    else:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        why = f"no rows stored for {len(empty)} of {len(run.dates)} dates ({shown})"
    return Check("non_empty", False, f"{why}: publishing would serve no predictions", float(total))


def _read_back(run: RunRecord) -> Check:
    """Sampled rows scored again from scratch equal the stored ones (``readback``); never forced."""
    checked, bad = int(run.read_back.get("rows", 0)), int(run.read_back.get("mismatched", 0))
    if checked == 0:
        return Check("read_back", False, "no rows were read back and checked (re-score the run)", 0.0)
    if bad:
        example = run.read_back.get("example", "")
        return Check("read_back", False, f"{bad} of {checked} sampled rows differ ({example})", float(bad))
    return Check("read_back", True, f"{checked} sampled rows scored again equal the stored rows", 0.0)


def _psi(store: PredictionTableStore, run: RunRecord, scores: np.ndarray, max_psi: float) -> Check:
    """Score PSI against what is live now for the run's dates; never passes without scores."""
    finite = scores[np.isfinite(scores)]
    if len(finite) == 0:
        return Check("psi", False, "no scores to compare")
    reference = _live_scores(store, run)
    if reference is None:
        return Check("psi", True, "no live run for these dates: nothing to compare with")
    if len(reference) == 0:
        return Check("psi", False, "the live table holds no scores for these dates to compare with")
    value = psi(reference, finite)
    return Check("psi", value <= max_psi, f"score PSI {value:.4f} vs live (max {max_psi})", value)


def publish_run(
    store: PredictionTableStore, run: RunRecord, max_psi: float = DEFAULT_MAX_PSI, force: bool = False
) -> PublishResult:
    """Gate, then move every date's pointer to the run's table in one atomic write.

    ``force`` publishes despite a failed PSI check (never despite missing rows or scores, nor a
    date without rows).
    """
    checks, _ = validate_run(store, run, max_psi)
    blocking = [c for c in checks if not c.passed and not (force and c.name == "psi")]
    if blocking:
        if run.status == "written":
            run.status, run.detail = "rejected", "; ".join(c.detail for c in blocking)
            store.save_run(run)
        return PublishResult(False, run, checks)
    pointers = store.publish(run.table, run.dates)
    run.status, run.detail = "published", ""
    store.save_run(run)
    return PublishResult(True, run, checks, pointers)


def rollback(store: PredictionTableStore, dates: Sequence[str]) -> dict[str, Pointer]:
    """Point ``dates`` back at the previously live tables (one atomic write)."""
    return store.rollback(dates)


def retain(store: PredictionTableStore, keep: int) -> list[str]:
    """Drop all but the ``keep`` newest prediction tables; a table a pointer names is never dropped."""
    if keep < 1:
        raise ValueError("keep must be >= 1")
    runs = {r.table: r for r in store.runs()}
    live = store.live_tables()
    # Newest first by run creation; tables without a run record (foreign or orphaned) count as oldest.
    ordered = sorted(store.tables(), key=lambda t: runs[t].created if t in runs else 0.0, reverse=True)
    dropped = []
    for table in ordered[keep:]:
        if table in live:
            continue
        store.drop_table(table)
        dropped.append(table)
        if table in runs:
            record = runs[table]
            record.status, record.detail = "dropped", f"dropped by retention (keep {keep})"
            store.save_run(record)
    return dropped


def _live_scores(store: PredictionTableStore, run: RunRecord) -> np.ndarray | None:
    """Scores currently served for the run's dates (from whichever tables are live), or None."""
    by_table: dict[str, list[str]] = {}
    for date, pointer in store.pointers(run.dates).items():
        if pointer.table and pointer.table != run.table:
            by_table.setdefault(pointer.table, []).append(date)
    if not by_table:
        return None
    covered = {r.table: set(r.dates) for r in store.runs()}
    parts = []
    existing = set(store.tables())
    for table, dates in by_table.items():
        if table not in existing:
            continue
        # A whole-table scan is one request; per-date prefix scans only when the table covers more.
        whole = covered.get(table) is not None and covered[table] <= set(dates)
        parts.append(store.scores(table, None if whole else dates))
    return np.concatenate(parts) if parts else None
