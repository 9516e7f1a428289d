"""The online executor names the field of a request time it cannot use, instead of crashing."""

from __future__ import annotations

import numpy as np
import pytest

from shared.example.flights import FLIGHT_FEATURES
from shared.features import EmbeddedStore, OnlineExecutor, RequestError
from tests.shared.features.flight_requests import flight_request

REQUEST = flight_request(1_370_000_000)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "got nan"),
        (float("inf"), "got inf"),
        (np.float32("-inf"), "got -inf"),
        (2**63, "got an integer of 64 bits"),  # one past int64: numpy would overflow
        (10**5000, "got an integer of 16610 bits"),  # too long to print, too large for a float
    ],
    ids=["nan", "inf", "-inf", "2**63", "10**5000"],
)
def test_a_request_time_with_no_instant_is_a_request_error_naming_the_field(
    value: object, shown: str
) -> None:
    executor = OnlineExecutor(FLIGHT_FEATURES, EmbeddedStore())
    with pytest.raises(RequestError, match=f"expected epoch seconds .*, {shown}$") as caught:
        executor.matrix([REQUEST, REQUEST | {"sched_ts": value}])
    assert caught.value.field == "sched_ts"


def test_any_finite_number_within_int64_is_a_time() -> None:
    executor = OnlineExecutor(FLIGHT_FEATURES, EmbeddedStore())
    rows = executor.matrix(
        [REQUEST, REQUEST | {"sched_ts": 1_370_000_000.7}, REQUEST | {"sched_ts": np.int64(0)}]
    )
    assert rows.shape == (3, len(FLIGHT_FEATURES.names)) and np.isfinite(rows[:, 0]).all()
