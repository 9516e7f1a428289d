"""REST pattern: on-the-fly flight-delay predictions with online features, FastAPI + onnxruntime.

The predictor glue (``FlightDelayService``) has no web framework in it, so the FastAPI app
(``create_app``) and the BentoML variant share it. Heavy imports stay in the submodules.
"""

from patterns.rest_api.service import (
    MODEL_NAME,
    FlightDelayService,
    Prediction,
    StoreUnavailable,
    build_store,
)

__all__ = ["MODEL_NAME", "FlightDelayService", "Prediction", "StoreUnavailable", "build_store"]
