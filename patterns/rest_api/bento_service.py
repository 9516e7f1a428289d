"""The same model behind BentoML (new-style ``@bentoml.service``), for teams that package with Bento.

It drives the very same ``FlightDelayService`` as the FastAPI app (decode -> online features ->
onnxruntime -> encode, plus the prediction log), so both answer a request with the same
probability; only the HTTP layer differs. BentoML validates the body with the pydantic
``FlightRequest`` (its way, refusing text and booleans for numbers like the app); errors map to 400
(bad field) and 503 (feature store down).

    MLPATTERNS_MODEL_VERSION=v1 bentoml serve patterns.rest_api.bento_service:FlightDelay \\
        --host 127.0.0.1 --port 3000
    curl -XPOST 127.0.0.1:3000/predict -H 'content-type: application/json' \\
        -d '{"carrier": "UA", "flight": 1545, "origin": "EWR", "dest": "IAH", "distance": 1400,
             "scheduled_departure": "2013-01-02T08:30:00-05:00"}'

Settings come from the environment (BentoML owns the command line): MLPATTERNS_MODEL_VERSION
(default: latest), MLPATTERNS_REST_STORE (``redis`` or ``embedded``, as for ``rest serve``),
MLPATTERNS_REDIS_URL,
MLPATTERNS_REDIS_PREFIX, MLPATTERNS_HOME (registry, prediction logs), MLPATTERNS_BENTO_WORKERS
(default 1) and MLPATTERNS_PREDICTION_LOG=0 to switch the prediction log off.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
from bentoml.exceptions import InvalidArgument, ServiceUnavailable
from pydantic import BaseModel, create_model, field_validator

from patterns.rest_api.schemas import FIELDS, FlightRequest, InputError
from patterns.rest_api.service import FlightDelayService, StoreUnavailable
from shared.settings import SettingError, env_int

__all__ = ["FlightDelay"]

# BentoML validates with the model before our decoder runs; pydantic's lax mode would turn "1400"
# into 1400 and true into 1, which the FastAPI app refuses. Its strict mode would refuse 1545.0 for
# an int, which the app accepts. So: lax, but text and booleans are no numbers, as in the app.
_NUMBERS = [f.name for f in FIELDS if f.kind != "str"]


def _no_text_or_bool(value: Any) -> Any:
    if isinstance(value, str | bool):
        raise ValueError(f"expected a number, got {type(value).__name__}")
    return value


BentoFlightRequest: type[BaseModel] = create_model(
    "FlightRequest",
    __base__=FlightRequest,
    __validators__={"numbers": field_validator(*_NUMBERS, mode="before")(_no_text_or_bool)},
)


def _config_from_env() -> dict[str, Any]:
    """``FlightDelayService.from_config`` arguments from the same variables ``rest serve`` reads."""
    store = os.environ.get("MLPATTERNS_REST_STORE", "").strip() or "redis"
    if store not in ("redis", "embedded"):
        raise SettingError(f"MLPATTERNS_REST_STORE={store!r}: expected 'redis' or 'embedded'")
    return {
        "version": os.environ.get("MLPATTERNS_MODEL_VERSION") or None,
        "store": store,
        "redis_url": os.environ.get("MLPATTERNS_REDIS_URL") or None,
        "redis_prefix": os.environ.get("MLPATTERNS_REDIS_PREFIX") or "mlp",
        "slot": "bento",
        "log": os.environ.get("MLPATTERNS_PREDICTION_LOG", "1") != "0",
    }


@bentoml.service(
    name="flight_delay",
    workers=env_int("MLPATTERNS_BENTO_WORKERS", 1, lo=1),
    traffic={"timeout": 10},
)
class FlightDelay:
    """BentoML front of ``FlightDelayService``: ``POST /predict`` (one flight) and ``POST /info``."""

    def __init__(self) -> None:
        self.service = FlightDelayService.from_config(**_config_from_env())

    @bentoml.api(route="/predict", input_spec=BentoFlightRequest)
    def predict(self, **fields: Any) -> dict[str, Any]:
        """Delay probability of one flight (same body and answer as the FastAPI app's /predict)."""
        explain = bool(fields.pop("explain", False))
        payload = {k: v for k, v in fields.items() if v is not None}
        try:
            return self.service.handle(payload, explain=explain)
        except InputError as exc:
            raise InvalidArgument(str(exc)) from None
        except StoreUnavailable as exc:
            raise ServiceUnavailable(str(exc)) from None

    @bentoml.api(route="/info")
    def info(self) -> dict[str, Any]:
        """Model name, version and feature fingerprints of this process."""
        return self.service.info()
