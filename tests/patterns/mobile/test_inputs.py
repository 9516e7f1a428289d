import numpy as np

from patterns.mobile.inputs import N_RAW, RAW_COLUMNS, encode, pack_codes, vocabulary_codes
from shared.example.data import load_flights
from shared.example.flights import CARRIERS, DESTS, FLIGHT_FEATURES, ORIGINS
from shared.features.definitions import category_codes


def test_encode_layout_and_ascii_codes() -> None:
    raw = encode([dict(year=2013, month=1, day=1, hour=5, minute=15, carrier="UA", origin="EWR", dest="IAH",
                       distance=1400.0)])  # fmt: skip
    assert raw.dtype == np.int32 and raw.shape == (1, N_RAW) == (1, len(RAW_COLUMNS))
    # 2013-01-01 was a Tuesday (Monday = 0).
    assert raw[0].tolist() == [5, 15, 1, 1, 1400, ord("U"), ord("A"), *b"EWR", *b"IAH"]


def test_in_graph_vocabularies_match_the_server_codes() -> None:
    """The packed codes the graph compares against index the same vocabularies as FLIGHT_FEATURES."""
    flights = load_flights(months=(2,)).head(3000)
    raw = encode(flights)
    for field, vocab, cols in (
        ("carrier", CARRIERS, (5, 7)),
        ("origin", ORIGINS, (7, 10)),
        ("dest", DESTS, (10, 13)),
    ):
        codes = vocabulary_codes(field)
        packed = pack_codes(raw[:, cols[0] : cols[1]])
        hits = packed[:, None] == codes[None, :]
        graph_code = np.where(hits.any(axis=1), hits.argmax(axis=1), -1)
        server_code = category_codes(flights[field].to_numpy(), vocab)
        np.testing.assert_array_equal(graph_code, server_code)
    weekday = next(f for f in FLIGHT_FEATURES.features if f.name == "weekday")
    np.testing.assert_array_equal(
        raw[:, 2], weekday.fn({k: flights[k].to_numpy() for k in ("year", "month", "day")})
    )


def test_unknown_code_encodes_to_no_vocabulary_entry() -> None:
    raw = encode([dict(year=2013, month=3, day=4, hour=9, minute=0, carrier="ZZ", origin="BOS", dest="XXX",
                       distance=200)])  # fmt: skip
    assert not np.isin(pack_codes(raw[:, 5:7]), vocabulary_codes("carrier")).any()
    assert not np.isin(pack_codes(raw[:, 10:13]), vocabulary_codes("dest")).any()
