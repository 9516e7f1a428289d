"""What applications use: the live prediction of a flight, always looked up through the pointer.

The reader resolves the flight's date to the live table on every call (one small read), so a
publish or a rollback is visible to the next ``get`` without restarting anything, and a table
being written is invisible until a pointer names it.
"""

from __future__ import annotations

from patterns.batch_db.store import (
    Prediction,
    PredictionTableStore,
    StoreUnavailable,
    date_of,
    open_store,
    read_timeout_ms,
)

__all__ = ["NotPublished", "PredictionReader", "StoreUnavailable"]


class NotPublished(LookupError):
    """No run is live for the flight's date."""


class PredictionReader:
    """``PredictionReader(store).get("20130101-UA1545-EWR-0515")`` -> ``Prediction`` or None.

    Without ``store`` it opens the default one (``open_store``) with the short reader timeout:
    ``timeout`` seconds, else ``$MLPATTERNS_HBASE_READ_TIMEOUT`` (see ``store.read_timeout_ms``).
    A server that is down or stops answering raises ``StoreUnavailable``; a Thrift restart is
    survived (the HBase store reconnects and retries a read once).
    """

    def __init__(self, store: PredictionTableStore | None = None, *, timeout: float | None = None) -> None:
        self.store = store or open_store(timeout_ms=read_timeout_ms(timeout))

    def table_for(self, date: str) -> str:
        """The live table of an ISO date (raises ``NotPublished``)."""
        pointer = self.store.pointer(date)
        if pointer is None or pointer.table is None:
            raise NotPublished(
                f"no predictions published for {date}: run `mlpatterns batch score --date {date}`"
            )
        return pointer.table

    def get(self, flight_id: str) -> Prediction | None:
        """The live prediction of one flight; None when the day is published but the flight is not
        in it (unknown id, or its input row was quarantined)."""
        return self.store.get_prediction(self.table_for(date_of(flight_id)), flight_id)
