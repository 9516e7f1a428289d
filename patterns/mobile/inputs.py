"""What the app passes to the model: 13 raw integers per flight, no lookup table of its own.

Strings are a trap on device: TFLite's StringLookup needs hash-table ops (Flex) and Core ML has no
string type at all. So the app sends each IATA code as its ASCII character codes (``"UA"`` ->
``85, 65``; ``"EWR"`` -> ``69, 87, 82``) in one int32 tensor ``raw`` of shape ``[N, 13]``:

====  ==============================================  ======================
col   field                                           example
====  ==============================================  ======================
0     scheduled local hour (0-23)                     ``5``
1     scheduled local minute (0-59)                   ``15``
2     weekday of the local date, Monday = 0           ``1``
3     month (1-12)                                    ``1``
4     distance in whole miles                         ``1400``
5-6   carrier, 2 ASCII codes                          ``85, 65`` (UA)
7-9   origin, 3 ASCII codes                           ``69, 87, 82`` (EWR)
10-12 destination, 3 ASCII codes                      ``73, 65, 72`` (IAH)
====  ==============================================  ======================

Inside the graph the codes are packed into one integer and compared with constant vocabularies
(the same ``CARRIERS``/``ORIGINS``/``DESTS`` the server uses): an unknown code gives an all-zero
one-hot, like the server's code -1. The row features reused from ``FLIGHT_FEATURES`` (hour, weekday,
month, carrier, origin, dest, distance) plus the minute define ``MOBILE_FEATURES``, whose fingerprint
is stamped on every mobile model and export.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from shared.example.flights import CARRIERS, DESTS, FLIGHT_FEATURES, ORIGINS
from shared.features.definitions import FeatureSet, RowFeature

__all__ = [
    "CODE_WIDTHS",
    "INPUT_NAME",
    "MOBILE_FEATURES",
    "N_RAW",
    "OUTPUT_NAME",
    "RAW_COLUMNS",
    "VOCABULARIES",
    "encode",
    "pack_codes",
    "vocabulary_codes",
]

INPUT_NAME = "raw"
OUTPUT_NAME = "delay_probability"
#: Character width of each code field; shorter codes are padded with 0, longer ones are all 0.
CODE_WIDTHS = {"carrier": 2, "origin": 3, "dest": 3}
VOCABULARIES: dict[str, tuple[str, ...]] = {"carrier": CARRIERS, "origin": ORIGINS, "dest": DESTS}
RAW_COLUMNS: tuple[str, ...] = (
    "hour",
    "minute",
    "weekday",
    "month",
    "distance",
    *(f"{field}_{i}" for field, width in CODE_WIDTHS.items() for i in range(width)),
)
N_RAW = len(RAW_COLUMNS)

_ROW_NAMES = ("hour", "weekday", "month", "carrier", "origin", "dest", "distance")


def _minute(c: Mapping[str, np.ndarray]) -> np.ndarray:
    return np.asarray(c["minute"], dtype=np.float64)


def _mobile_features() -> FeatureSet:
    rows = [f for f in FLIGHT_FEATURES.features if isinstance(f, RowFeature) and f.name in _ROW_NAMES]
    if [f.name for f in rows] != list(_ROW_NAMES):
        raise RuntimeError(f"FLIGHT_FEATURES lost row features the mobile model needs: {_ROW_NAMES}")
    rows.append(RowFeature("minute", "int64", ("minute",), _minute, doc="scheduled local minute"))
    return FeatureSet(
        name="flight_delay_mobile",
        request_time="sched_ts",
        sources=(),
        features=tuple(rows),
        request_fields=("year", "month", "day", "hour", "minute", "carrier", "origin", "dest", "distance"),
    )


#: Row features of the server's FLIGHT_FEATURES (same code, same vocabularies) plus the minute.
MOBILE_FEATURES = _mobile_features()


def pack_codes(codes: np.ndarray) -> np.ndarray:
    """``c0*256^(w-1) + ... + c_{w-1}``: one integer per code, what the graph compares against."""
    codes = np.asarray(codes, dtype=np.int64)
    weights = 256 ** np.arange(codes.shape[-1] - 1, -1, -1, dtype=np.int64)
    return codes @ weights


def _chars(values: Iterable[Any], width: int) -> np.ndarray:
    out = np.zeros((0, width), dtype=np.int32)
    rows = []
    for v in values:
        b = str(v).encode("ascii", errors="replace")
        # Cut to ``width``, "UAL" would read as "UA"; all zeros matches no entry, like the server's -1.
        rows.append([0] * width if len(b) > width else list(b) + [0] * (width - len(b)))
    return np.asarray(rows, dtype=np.int32).reshape(-1, width) if rows else out


def vocabulary_codes(field: str) -> np.ndarray:
    """Packed codes of a field's vocabulary, in vocabulary order (the one-hot column order)."""
    return pack_codes(_chars(VOCABULARIES[field], CODE_WIDTHS[field]))


def encode(requests: pd.DataFrame | Iterable[Mapping[str, Any]]) -> np.ndarray:
    """Raw request fields (year, month, day, hour, minute, carrier, origin, dest, distance) -> int32 [N, 13].

    This is what the app does before calling the model; the weekday comes from the shared row
    feature so phone and server agree on the calendar.
    """
    df = requests if isinstance(requests, pd.DataFrame) else pd.DataFrame(list(requests))
    weekday = next(f for f in MOBILE_FEATURES.features if f.name == "weekday")
    cols = {k: df[k].to_numpy() for k in ("year", "month", "day")}
    numeric = np.column_stack(
        [
            df["hour"].to_numpy(np.int64),
            df["minute"].to_numpy(np.int64),
            np.asarray(weekday.fn(cols), dtype=np.int64),  # type: ignore[union-attr]
            df["month"].to_numpy(np.int64),
            np.rint(df["distance"].to_numpy(np.float64)).astype(np.int64),
        ]
    )
    parts = [numeric.astype(np.int32)]
    parts += [_chars(df[field].to_numpy(), width) for field, width in CODE_WIDTHS.items()]
    return np.concatenate(parts, axis=1).astype(np.int32)
