"""The BentoML variant serves the same model through the same service class as the FastAPI app:
``bentoml serve`` in a subprocess must answer every request with the FastAPI app's probability."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared import settings

ROOT = settings.project_root()


@pytest.fixture(scope="module")
def bento(
    tmp_path_factory: pytest.TempPathFactory,
    rest_home: Path,
    rest_model: Any,
    rest_store: Any,
    rest_free_port: Callable[[], int],
) -> Iterator[str]:
    port = rest_free_port()
    log_path = tmp_path_factory.mktemp("bento") / "bento.log"
    env = os.environ | {
        "MLPATTERNS_HOME": str(rest_home),
        "MLPATTERNS_MODEL_VERSION": rest_model.version,
        "MLPATTERNS_REDIS_URL": rest_store.url,
        "MLPATTERNS_REDIS_PREFIX": rest_store.prefix,
        "MLPATTERNS_PREDICTION_LOG": "0",
        "BENTOML_HOME": str(log_path.parent / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
    }
    cmd = [sys.executable, "-m", "bentoml", "serve", "patterns.rest_api.bento_service:FlightDelay",
           "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"bentoml serve exited:\n{log_path.read_text()[-3000:]}", pytrace=False)
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"bentoml serve not ready:\n{log_path.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its worker processes
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_bento_answers_with_the_fastapi_apps_probability(
    bento: str, rest_app: Any, rest_requests: list[dict[str, Any]]
) -> None:
    bodies = rest_requests[:25]
    with httpx.Client(timeout=10) as client:
        ours = [client.post(rest_app.url + "/predict", json=b).json() for b in bodies]
        theirs = [client.post(bento + "/predict", json=b).json() for b in bodies]
    assert [t["model_version"] for t in theirs] == [o["model_version"] for o in ours]
    assert [t["request_id"] for t in theirs] == [b["request_id"] for b in bodies]
    # Same service class, same model, same features from the same Redis: the very same float.
    assert [t["probability"] for t in theirs] == [o["probability"] for o in ours]
    assert len({round(o["probability"], 6) for o in ours}) > 5  # real, varied scores


def test_bento_explains_with_the_same_features(
    bento: str, rest_app: Any, rest_requests: list[dict[str, Any]]
) -> None:
    body = rest_requests[0] | {"explain": True}
    ours = httpx.post(rest_app.url + "/predict", json=body, timeout=10).json()
    theirs = httpx.post(bento + "/predict", json=body, timeout=10).json()
    assert theirs["features"] == ours["features"] and len(ours["features"]) == 25


def test_bento_rejects_a_bad_request_as_a_client_error(
    bento: str, rest_requests: list[dict[str, Any]]
) -> None:
    body = {k: v for k, v in rest_requests[0].items() if k != "carrier"}
    assert httpx.post(bento + "/predict", json=body, timeout=10).status_code == 400
    bad_time = rest_requests[0] | {"scheduled_departure": "not a date"}
    resp = httpx.post(bento + "/predict", json=bad_time, timeout=10)
    assert resp.status_code == 400 and "scheduled_departure" in resp.text


def test_bentofile_names_this_service_and_pinned_packages() -> None:
    from bentoml._internal.bento.build_config import BentoBuildConfig

    with open(ROOT / "patterns/rest_api/bentofile.yaml") as fh:
        config = BentoBuildConfig.from_yaml(fh)
    assert config.service == "patterns.rest_api.bento_service:FlightDelay"
    lock = dict(re.findall(r"^(\S+)==(\S+)", (ROOT / "requirements.lock").read_text(), re.MULTILINE))
    assert config.python is not None and config.python.packages
    for pin in config.python.packages:
        name, version = pin.split("==")
        assert lock.get(name) == version, pin
    # Every third-party module the service's code can import (lazily too) must be in the Bento.
    listed = {pin.split("==")[0].lower() for pin in config.python.packages}
    dists = importlib.metadata.packages_distributions()
    needed = _third_party_imports("patterns.rest_api.bento_service") - _NOT_IN_BENTO
    assert {"hiredis", "redis", "onnxruntime", "numpy", "pandas", "pydantic"} <= needed
    missing = {m for m in needed if not {d.lower() for d in dists.get(m, [m])} & listed}
    assert not missing, f"imported by the service but not in bentofile.yaml: {sorted(missing)}"


#: bentoml: the Bento installs it itself; pyarrow: only the Parquet log reader and ``write_frame``,
#: never on the serving path (the service logs JSON lines through ``write_many``).
_NOT_IN_BENTO = {"bentoml", "pyarrow"}


def _third_party_imports(module: str) -> set[str]:
    """Top-level third-party names imported anywhere (functions included) in ``module`` and in the
    project modules it imports, transitively."""
    seen: set[str] = set()
    todo, found = [module], set()
    while todo:
        name = todo.pop()
        path = ROOT / Path(*name.split("."))
        file = next((f for f in (path.with_suffix(".py"), path / "__init__.py") if f.exists()), None)
        if name in seen or file is None:
            continue
        seen.add(name)
        todo.extend(".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1))
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            else:
                continue
            for imported in names:
                top = imported.split(".")[0]
                if top in ("patterns", "shared"):
                    todo.append(imported)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


@pytest.mark.parametrize(
    "bad", [{"distance": "1400"}, {"flight": "1545"}, {"flight": True}, {"sched_ts": "1357133400"}]
)
def test_bento_refuses_what_the_fastapi_app_refuses(
    bento: str, rest_app: Any, rest_requests: list[dict[str, Any]], bad: dict[str, Any]
) -> None:
    body = rest_requests[0] | bad
    ours = httpx.post(rest_app.url + "/predict", json=body, timeout=10)
    theirs = httpx.post(bento + "/predict", json=body, timeout=10)
    assert ours.status_code == 422 and theirs.status_code == 400, theirs.text
    assert next(iter(bad)) in theirs.text


def test_bento_accepts_integral_floats_like_the_fastapi_app(
    bento: str, rest_app: Any, rest_requests: list[dict[str, Any]]
) -> None:
    body = rest_requests[0] | {"flight": float(rest_requests[0]["flight"])}
    ours = httpx.post(rest_app.url + "/predict", json=body, timeout=10)
    theirs = httpx.post(bento + "/predict", json=body, timeout=10)
    assert ours.status_code == theirs.status_code == 200, theirs.text
    assert theirs.json()["probability"] == ours.json()["probability"]


def test_bento_reads_the_settings_rest_serve_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    from patterns.rest_api.bento_service import _config_from_env
    from shared.settings import SettingError

    for name in ("MLPATTERNS_REST_STORE", "MLPATTERNS_MODEL_VERSION", "MLPATTERNS_REDIS_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    assert (_config_from_env()["store"], _config_from_env()["version"]) == ("redis", None)
    monkeypatch.setenv("MLPATTERNS_REST_STORE", "embedded")
    monkeypatch.setenv("MLPATTERNS_MODEL_VERSION", "v2")
    monkeypatch.setenv("MLPATTERNS_REDIS_PREFIX", "other")
    config = _config_from_env()
    assert (config["store"], config["version"], config["redis_prefix"]) == ("embedded", "v2", "other")
    monkeypatch.setenv("MLPATTERNS_REST_STORE", "redsi")
    with pytest.raises(SettingError, match="MLPATTERNS_REST_STORE='redsi': expected 'redis' or 'embedded'"):
        _config_from_env()
