"""``MicroBatcher`` on the real service and Redis: concurrent callers share batches, at most two
batches wait for the store at once, every caller gets its own flights' answers, and a batch that
fails fails only its own callers."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from patterns.rest_api.batching import MicroBatcher
from patterns.rest_api.metrics import ServiceMetrics
from patterns.rest_api.schemas import InputError, decode_flight
from patterns.rest_api.service import FlightDelayService, StoreUnavailable, build_store
from shared.predictor import Predictor
from shared.registry import ModelVersion

RestStore = Any  # tests/patterns/rest_api/conftest.py: (url, prefix) of the loaded feature state

pytestmark = pytest.mark.servers


class _SlowStore(FlightDelayService):
    """The real service whose store answers 10 ms late, counting the batches out at once."""

    def __init__(self, *args: Any, fail_carrier: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[int] = []
        self.out = self.most_out = 0
        self.fail_carrier = fail_carrier

    async def features_async(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        self.batches.append(len(requests))
        self.out += 1
        self.most_out = max(self.most_out, self.out)
        try:
            await asyncio.sleep(0.01)
            if any(r["carrier"] == self.fail_carrier for r in requests):
                raise StoreUnavailable("feature store error: the test's outage")
            return await super().features_async(requests)
        finally:
            self.out -= 1


def _batcher(
    model: ModelVersion, store: RestStore, fail_carrier: str | None = None, **options: int
) -> tuple[_SlowStore, MicroBatcher]:
    """The slow-store service and a batcher over it (``max_rows`` 256 unless ``options`` say)."""
    redis = build_store("redis", store.url, store.prefix)
    service = _SlowStore(Predictor(model), redis, fail_carrier=fail_carrier)
    metrics = ServiceMetrics(service.version, None)
    return service, MicroBatcher(service, metrics, **({"max_rows": 256} | options))


async def _score_all(batcher: MicroBatcher, bodies: list[dict[str, Any]], jitter_s: float = 0.0) -> list[Any]:
    rng = random.Random(7)

    async def one(body: dict[str, Any]) -> Any:
        await asyncio.sleep(rng.uniform(0, jitter_s))
        return await batcher.score([decode_flight(body)], [body["request_id"]])

    results = await asyncio.gather(*(one(b) for b in bodies), return_exceptions=True)
    await batcher.join()
    return results


def test_callers_arriving_together_go_as_two_batches_with_their_own_answers(
    rest_model: ModelVersion, rest_store: RestStore, rest_requests: list[dict[str, Any]]
) -> None:
    bodies = rest_requests[:16]
    service, batcher = _batcher(rest_model, rest_store)
    results = asyncio.run(_score_all(batcher, bodies))
    # 16 queued flights and two free slots: two batches of 8, out at the same time.
    assert service.batches == [8, 8] and service.most_out == 2
    alone = service.score([decode_flight(b) for b in bodies], [b["request_id"] for b in bodies])
    for body, expected, got in zip(bodies, alone, results, strict=True):
        assert len(got) == 1 and got[0].request_id == body["request_id"]
        assert got[0].probability == expected.probability
        np.testing.assert_array_equal(got[0].features, expected.features)


def test_callers_arriving_over_time_are_batched_never_more_than_two_out(
    rest_model: ModelVersion, rest_store: RestStore, rest_requests: list[dict[str, Any]]
) -> None:
    bodies = rest_requests[:60]
    service, batcher = _batcher(rest_model, rest_store)
    results = asyncio.run(_score_all(batcher, bodies, jitter_s=0.05))
    assert sum(service.batches) == len(bodies) and service.most_out == 2
    assert len(service.batches) < len(bodies) / 2, service.batches  # callers shared store reads
    assert [r[0].request_id for r in results] == [b["request_id"] for b in bodies]


def test_a_failing_batch_fails_only_its_own_callers(
    rest_model: ModelVersion, rest_store: RestStore, rest_requests: list[dict[str, Any]]
) -> None:
    poisoned = rest_requests[0]["carrier"]
    # The poisoned carrier is in the first batch only, so only that batch fails.
    bodies = rest_requests[:8] + [b for b in rest_requests[8:] if b["carrier"] != poisoned][:8]
    assert len(bodies) == 16
    service, batcher = _batcher(rest_model, rest_store, fail_carrier=poisoned)
    results = asyncio.run(_score_all(batcher, bodies))
    assert service.batches == [8, 8]
    assert all(isinstance(r, StoreUnavailable) for r in results[:8])
    assert [r[0].request_id for r in results[8:]] == [b["request_id"] for b in bodies[8:]]


class _RefusesOne(_SlowStore):
    """A hook that refuses one request (flight 99999) as the caller's error, like a bad field."""

    async def features_async(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
        if any(r["flight"] == 99999 for r in requests):
            self.batches.append(len(requests))
            raise InputError("flight", "the test refuses flight 99999")
        return await super().features_async(requests)


def test_a_request_a_hook_refuses_fails_only_its_own_caller(
    rest_model: ModelVersion, rest_store: RestStore, rest_requests: list[dict[str, Any]]
) -> None:
    bodies = [rest_requests[0] | {"flight": 99999}, *rest_requests[1:8]]
    redis = build_store("redis", rest_store.url, rest_store.prefix)
    service = _RefusesOne(Predictor(rest_model), redis)
    batcher = MicroBatcher(service, ServiceMetrics(service.version, None), max_rows=256)
    results = asyncio.run(_score_all(batcher, bodies))
    # Two batches of 4; the one holding the refused request is then scored caller by caller.
    assert sorted(service.batches) == [1, 1, 1, 1, 4, 4]
    assert isinstance(results[0], InputError) and results[0].field == "flight"
    assert [r[0].request_id for r in results[1:]] == [b["request_id"] for b in bodies[1:]]


def test_max_rows_caps_a_batch_but_never_splits_a_request(
    rest_model: ModelVersion, rest_store: RestStore, rest_requests: list[dict[str, Any]]
) -> None:
    service, batcher = _batcher(rest_model, rest_store, max_rows=4, max_in_flight=1)
    flights = [decode_flight(b) for b in rest_requests[:10]]

    async def run() -> list[Any]:
        big = batcher.score(flights[:6], [None] * 6)  # more than max_rows: goes alone, whole
        small = [batcher.score([f], [None]) for f in flights[6:]]
        done = await asyncio.gather(big, *small)
        await batcher.join()
        return done

    results = asyncio.run(run())
    assert service.batches == [6, 4] and service.most_out == 1
    assert [len(r) for r in results] == [6, 1, 1, 1, 1]
