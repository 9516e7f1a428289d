"""The reference client: what the app does, in Python (ai-edge-litert only, no TensorFlow).

1. read the channel manifest, 2. pick live or candidate by the device's bucket and app version,
3. download the model (here: copy from a ``file://`` URL) to a temporary name, 4. verify its
sha256 against the manifest and refuse it on mismatch (the previous model stays in use),
5. atomically move it into the cache and run it with the TFLite interpreter.
"""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from patterns.mobile.inputs import encode
from patterns.mobile.manifest import Entry, choose
from shared.registry import sha256_file

__all__ = ["MobileClient", "TamperedModel", "run_interpreter"]


class TamperedModel(RuntimeError):
    """The downloaded model's sha256 differs from the manifest's: it is never loaded."""


def run_interpreter(interp: Any, raw: np.ndarray) -> np.ndarray:
    """Probabilities from a LiteRT interpreter for int32 ``raw [N, 13]`` rows (any batch size)."""
    raw = np.ascontiguousarray(raw, dtype=np.int32)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], raw.shape)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], raw)
    interp.invoke()
    return np.asarray(interp.get_tensor(out["index"]), np.float64).ravel()


class MobileClient:
    """One simulated device: ``sync()`` follows the manifest, ``predict()`` runs the local model."""

    def __init__(self, manifest_url: str | Path, device_id: str, cache_dir: Path, app_version: str = "1.0.0"):
        self.manifest_url = str(manifest_url)
        self.device_id = device_id
        self.app_version = app_version
        self.cache_dir = Path(cache_dir)
        self.entry: Entry | None = None
        self._interpreter: Any = None

    @property
    def version(self) -> str | None:
        return self.entry.version if self.entry else None

    def sync(self) -> Entry | None:
        """Fetch the manifest; download and verify the chosen model if it changed. Returns it."""
        doc = json.loads(_read(self.manifest_url))
        wanted = choose(doc, self.device_id, self.app_version)
        if wanted is None or (self.entry is not None and wanted.sha256 == self.entry.sha256):
            return self.entry if wanted is not None else None
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        final = self.cache_dir / f"{wanted.version}-{wanted.sha256[:12]}.tflite"
        partial = final.with_suffix(".part")
        with open(partial, "wb") as out:
            out.write(_read_bytes(wanted.url))
        actual = sha256_file(partial)
        if actual != wanted.sha256:
            partial.unlink()
            raise TamperedModel(
                f"{wanted.version} from {wanted.url}: sha256 {actual[:12]}… != manifest "
                f"{wanted.sha256[:12]}…; refusing it, still running {self.version or 'nothing'}"
            )
        os.replace(partial, final)
        self._interpreter = _load(final)
        self.entry = wanted
        return wanted

    def predict_raw(self, raw: np.ndarray) -> np.ndarray:
        """Probabilities for int32 ``raw [N, 13]`` rows (see ``patterns.mobile.inputs``)."""
        if self._interpreter is None:
            raise RuntimeError("no model yet: call sync() first")
        return run_interpreter(self._interpreter, raw)

    def predict(self, requests: Iterable[Mapping[str, Any]]) -> np.ndarray:
        """Probabilities for raw request dicts (year, month, day, hour, minute, carrier, origin, dest,
        distance), encoded exactly as the app would."""
        return self.predict_raw(encode(list(requests)))


def _load(path: Path) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path), num_threads=1)


def _read_bytes(url: str) -> bytes:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme in ("", "file"):
        return Path(urllib.request.url2pathname(parsed.path) if parsed.scheme else url).read_bytes()
    with urllib.request.urlopen(url, timeout=30) as resp:
        return bytes(resp.read())


def _read(url: str) -> str:
    return _read_bytes(url).decode()
