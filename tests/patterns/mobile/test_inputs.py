import numpy as np
import pandas as pd

from patterns.mobile.inputs import N_RAW, RAW_COLUMNS, encode, pack_codes, vocabulary_codes
from shared.example.data import load_flights
from shared.example.flights import CARRIERS, DESTS, FLIGHT_FEATURES, ORIGINS
from shared.features.definitions import category_codes

#: field, server vocabulary, its columns of ``raw``
_CODE_FIELDS = (("carrier", CARRIERS, (5, 7)), ("origin", ORIGINS, (7, 10)), ("dest", DESTS, (10, 13)))


def test_encode_layout_and_ascii_codes() -> None:
    raw = encode([dict(year=2013, month=1, day=1, hour=5, minute=15, carrier="UA", origin="EWR", dest="IAH",
                       distance=1400.0)])  # fmt: skip
    assert raw.dtype == np.int32 and raw.shape == (1, N_RAW) == (1, len(RAW_COLUMNS))
    # 2013-01-01 was a Tuesday (Monday = 0).
    assert raw[0].tolist() == [5, 15, 1, 1, 1400, ord("U"), ord("A"), *b"EWR", *b"IAH"]


def test_in_graph_vocabularies_match_the_server_codes() -> None:
    """The packed codes the graph compares against index the same vocabularies as FLIGHT_FEATURES."""
    year = load_flights()
    # A few thousand ordinary rows plus the first flight of every carrier, origin and destination of
    # the year: every vocabulary entry is compared, not only the busy ones.
    firsts = [year.drop_duplicates(field) for field in ("carrier", "origin", "dest")]
    flights = pd.concat([year.head(3000), *firsts], ignore_index=True)
    raw = encode(flights)
    for field, vocab, cols in _CODE_FIELDS:
        codes = vocabulary_codes(field)
        packed = pack_codes(raw[:, cols[0] : cols[1]])
        hits = packed[:, None] == codes[None, :]
        graph_code = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
        server_code = category_codes(flights[field].to_numpy(), vocab)
        np.testing.assert_array_equal(graph_code, server_code)
        assert set(graph_code.tolist()) == set(range(len(vocab))), f"{field}: not every entry compared"
    weekday = next(f for f in FLIGHT_FEATURES.features if f.name == "weekday")
    np.testing.assert_array_equal(
        raw[:, 2], weekday.fn({k: flights[k].to_numpy() for k in ("year", "month", "day")})
    )


def test_unknown_code_encodes_to_no_vocabulary_entry() -> None:
    # "UAL" and "BOSX" would be "UA" and "BOS" if cut to their width: too long is unknown.
    rows = [dict(carrier="ZZ", origin="BOS", dest="XXX"), dict(carrier="UAL", origin="EWRX", dest="BOSX")]
    requests = [dict(year=2013, month=3, day=4, hour=9, minute=0, distance=200, **r) for r in rows]
    raw = encode(requests)
    for field, vocab, cols in _CODE_FIELDS:
        assert (category_codes(np.array([r[field] for r in rows]), vocab) == -1).all()  # the server's
        assert not np.isin(pack_codes(raw[:, cols[0] : cols[1]]), vocabulary_codes(field)).any(), field
    assert raw[1, 5:].tolist() == [0] * 8  # too long: all zeros, not a truncated code
