"""Load a registered ONNX model and predict delay probabilities with onnxruntime.

This is the one inference path the REST, batch and streaming patterns share: checksum and feature
fingerprint are verified when the predictor is built, never per call.
"""

from __future__ import annotations

import numpy as np

from shared.registry import ModelVersion, Registry

__all__ = ["Predictor"]


class Predictor:
    """An onnxruntime session over a registered model version's ``model.onnx``."""

    def __init__(self, model: ModelVersion, running_fingerprint: str | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        if running_fingerprint is not None:
            model.check_fingerprint(running_fingerprint)
        options = ort.SessionOptions()
        # Serving processes run several workers side by side; one thread each avoids oversubscription.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.model = model
        self.version = model.version
        self.feature_fingerprint = model.feature_fingerprint
        self._session = ort.InferenceSession(
            str(model.artifact("model.onnx")), options, providers=["CPUExecutionProvider"]
        )
        self._input = self._session.get_inputs()[0].name
        # The contract of an exported classifier (skl2onnx with zipmap=False): an output named
        # "probabilities" of (n, 2) floats. Checked here, at load, not at the first request.
        outputs = {o.name: o for o in self._session.get_outputs()}
        found = outputs.get("probabilities")
        if (
            found is None
            or len(found.shape) != 2
            or found.shape[1] not in (2, None)
            or "float" not in found.type
        ):
            shapes = ", ".join(f"{o.name} {o.type} {o.shape}" for o in outputs.values())
            raise ValueError(
                f"{model.version}: model.onnx must have an output 'probabilities' of (n, 2) floats "
                f"(skl2onnx: options={{'zipmap': False}}); it has {shapes}"
            )
        self.n_features = len(model.feature_names)
        self.decision_threshold = model.decision_threshold

    @classmethod
    def load(
        cls,
        version: str | None = None,
        registry: Registry | None = None,
        running_fingerprint: str | None = None,
    ) -> Predictor:
        registry = registry or Registry()
        model = registry.get(version) if version else registry.latest()
        return cls(model, running_fingerprint)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Probability of a >= 15 min delay for each row of a (n, n_features) matrix."""
        x = np.ascontiguousarray(features, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected a (n, {self.n_features}) feature matrix, got shape {x.shape}")
        probabilities = self._session.run(["probabilities"], {self._input: x})[0]
        return np.asarray(probabilities[:, 1], dtype=np.float64)
