"""Blue-green for the REST pattern: two app processes (blue, green) behind one nginx upstream.

``stage`` starts the idle colour with the new version on its own port (the live one keeps
serving); the gates talk to that colour over HTTP (readiness, golden set through its token-guarded
``/admin/score``); the shadow phase replays a sample of live traffic (the live colour's prediction
log) on it; ``route`` rewrites the nginx upstream (``weight=N`` for a canary) and reloads
gracefully after ``nginx -t``; ``observe`` reads the bake window each colour keeps next to its
``/metrics`` (requests, 5xx errors, p99 latency, scores since the last ``route``), which the
guardrails judge (error rate, p99, PSI against the previous version). The previous colour stays
up (standby) for an instant rollback until the next deployment retires it.

The durable truth (which colour runs which version, what is live) is the deploy core's state
store; this switch only keeps what its medium needs: pid files and logs of the colour processes.

    mlpatterns deploy rest_api v2            # builds the target below, runs the gates, switches
    mlpatterns rollback rest_api             # puts the standby colour back in nginx
    mlpatterns status rest_api               # colours, versions, gates
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httpx
import numpy as np
import psutil

from patterns.rest_api.nginx import RestFront
from shared import settings
from shared.deploy import (
    BakeMetrics,
    Slot,
    SlotState,
    Switch,
    Target,
    TargetState,
    default_gates,
    registry_cards,
)
from shared.deploy.gates import Gate, ShadowGate
from shared.example.flights import FLIGHT_FEATURES
from shared.registry import Registry
from shared.services._process import port_free

__all__ = ["ColourConfig", "RestSwitch", "admin_token", "build_target", "default_rest_gates"]

#: Where the admin endpoints read their token from (the app and this switch agree on it).
TOKEN_ENV = "MLPATTERNS_ADMIN_TOKEN"
_TOKEN_HEADER = "x-admin-token"


def admin_token() -> str:
    """MLPATTERNS_ADMIN_TOKEN, else a random token kept (mode 600) in ``$MLPATTERNS_HOME/rest_api``."""
    token = os.environ.get(TOKEN_ENV)
    if token:
        return token
    path = settings.home() / "rest_api" / "admin_token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(24))
    return path.read_text().strip()


@dataclass(frozen=True)
class ColourConfig:
    """Ports and settings of the two colour processes (env defaults: MLPATTERNS_REST_{BLUE,GREEN}_PORT)."""

    ports: Mapping[Slot, int] = field(
        default_factory=lambda: {
            Slot.BLUE: settings.env_int("MLPATTERNS_REST_BLUE_PORT", 8101, 1, 65535),
            Slot.GREEN: settings.env_int("MLPATTERNS_REST_GREEN_PORT", 8102, 1, 65535),
        }
    )
    store: str = "redis"
    shadow_sample: float = 0.5  # share of live requests replayed on a shadow candidate
    args: tuple[str, ...] = ()  # extra ``mlpatterns rest serve`` options, e.g. ("--no-log",)
    token: str = ""
    run_dir: Path | None = None  # pid files and logs; default $MLPATTERNS_HOME/rest_api/run
    start_timeout_s: float = 60.0
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment for the app processes


class RestSwitch(Switch):
    """nginx upstream switch over two app processes. Hooks are idempotent (the deployer may repeat them)."""

    supports_weights: ClassVar[bool] = True
    supports_shadow: ClassVar[bool] = True

    def __init__(self, config: ColourConfig | None = None, front: RestFront | None = None) -> None:
        self.config = config or ColourConfig()
        self.token = self.config.token or admin_token()
        self.front = front or RestFront()
        self.run_dir = self.config.run_dir or settings.home() / "rest_api" / "run"
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._http = httpx.Client(timeout=10.0, headers={_TOKEN_HEADER: self.token})
        self._weights: dict[Slot, float] = {}
        self._shadow: tuple[Slot, float] | None = None
        self._pairs: tuple[list[float], list[float]] = ([], [])
        self._offsets: dict[Path, int] = {}

    # -- the Switch hooks --------------------------------------------------------------------------

    def stage(self, slot: Slot, version: str) -> None:
        if self._running_version(slot) == version:
            return
        self._stop(slot)
        port = self.config.ports[slot]
        if not port_free(port):
            raise RuntimeError(f"port {port} for {slot} is taken by another process")
        cmd = [sys.executable, "-m", "patterns", "rest", "serve", "--version", version,
               "--port", str(port), "--store", self.config.store, "--slot", slot.value,
               *self.config.args]  # fmt: skip
        env = {**os.environ, **self.config.env, TOKEN_ENV: self.token}
        log = (self.run_dir / f"{slot}.log").open("ab")
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
            cwd=settings.project_root(),
        )  # fmt: skip
        log.close()
        (self.run_dir / f"{slot}.pid").write_text(f"{proc.pid} {version} {port}\n")

    def ready(self, slot: Slot) -> bool:
        if self._pid(slot) is None:
            raise RuntimeError(f"{slot} process is not running:\n{self.log_tail(slot)}")
        if self._http.get(self.url(slot) + "/v2/health/ready").status_code != 200:
            return False
        info = self._admin("GET", slot, "/admin/info")
        return bool(info["ready"]) and info["model_version"] == self._expected_version(slot)

    def predict(self, slot: Slot, X: np.ndarray) -> np.ndarray:
        """The golden set goes through the colour's own HTTP endpoint (``/admin/score``)."""
        X = np.asarray(X, dtype=np.float32)
        # Missing features are NaN; strict JSON has no NaN, so they travel as null.
        rows = [[None if v != v else v for v in row] for row in X.tolist()]  # v != v: NaN
        body = {"features": rows}
        return np.asarray(self._admin("POST", slot, "/admin/score", body)["probabilities"], dtype=np.float64)

    def route(self, weights: Mapping[Slot, float]) -> None:
        backends = {self.config.ports[Slot(s)]: float(w) for s, w in weights.items() if w > 0}
        for slot in (Slot(s) for s, w in weights.items() if w > 0):
            if self._pid(slot) is None:
                raise RuntimeError(f"cannot route to {slot}: its process is not running")
        self.front.apply(backends)
        self._weights = {Slot(s): float(w) for s, w in weights.items() if w > 0}
        # The bake window starts now: each running colour forgets what it served before.
        for slot in Slot:
            if self._pid(slot) is not None:
                with contextlib.suppress(httpx.HTTPError, RuntimeError):
                    self._admin("POST", slot, "/admin/window/reset")

    def observe(self, slot: Slot) -> BakeMetrics:
        """Requests, 5xx errors, p99 and scores the colour itself recorded since the last ``route``."""
        if self._pid(slot) is None:
            return BakeMetrics()
        try:
            w = self._admin("GET", slot, "/admin/window")
        except (httpx.HTTPError, RuntimeError):
            return BakeMetrics()
        preds = np.asarray(w["predictions"], dtype=np.float64)
        return BakeMetrics(int(w["requests"]), int(w["errors"]), float(w["p99_ms"]), preds)

    def shadow(self, slot: Slot | None) -> None:
        """Shadow = live traffic replayed on ``slot``: see ``shadow_pairs``."""
        self._shadow = None if slot is None else (slot, time.time())
        self._pairs = ([], [])
        self._offsets = {}

    def shadow_pairs(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(live score, candidate score) for a sample of the requests live served since ``shadow``.

        The live colour logs every prediction with the feature row it used; those rows are scored
        by the candidate through its HTTP admin endpoint. The candidate never sits on the live
        request path (a slow or failing shadow cannot hurt users) and its answers are not logged
        as served predictions, which an nginx ``mirror`` of ``/predict`` would do.
        """
        if self._shadow is None:
            return None
        slot, since = self._shadow
        live = next((s for s in self._weights if s != slot), None)
        if live is None or (live_version := self._running_version(live)) is None:
            return None
        with contextlib.suppress(httpx.HTTPError, RuntimeError):
            self._admin("POST", live, "/admin/flush-log")  # the log is written by a background thread
        scores, logged = [], []
        for rec in self._new_records(since):
            if rec.get("model_version") != live_version or rec.get("prediction") is None:
                continue
            if zlib.crc32(str(rec.get("request_id")).encode()) / 2**32 >= self.config.shadow_sample:
                continue
            scores.append(float(rec["prediction"]))
            logged.append(rec["features"])
        if logged:
            # Rows go to the candidate in its own model's column order, whatever order the log holds.
            names = self._admin("GET", slot, "/admin/info")["feature_names"]
            rows = [[np.nan if f.get(n) is None else f[n] for n in names] for f in logged]
            got = self.predict(slot, np.asarray(rows, dtype=np.float32))
            self._pairs[0].extend(scores)
            self._pairs[1].extend(got.tolist())
        return np.asarray(self._pairs[0]), np.asarray(self._pairs[1])

    def retire(self, slot: Slot) -> None:
        if slot in self._weights:
            raise RuntimeError(f"refusing to retire {slot}: it still receives traffic")
        self._stop(slot)

    def attach(self, state: TargetState) -> None:
        """After a restart of the deploy CLI: make processes and nginx match the durable state."""
        keep = {SlotState.LIVE, SlotState.STANDBY, SlotState.CANARY}
        for slot, info in state.slots.items():
            if info.state in keep and info.version and self._running_version(slot) != info.version:
                self.stage(slot, info.version)
        for slot in (s for s, i in state.slots.items() if i.state in keep):
            _wait(lambda s=slot: self._safe_ready(s), self.config.start_timeout_s)
        if state.weights:
            self._weights = dict(state.weights)
            if not self.front.conf_file.exists():
                self.front.apply({self.config.ports[s]: w for s, w in state.weights.items()})

    # -- helpers for operators, tests and the demo -------------------------------------------------

    def url(self, slot: Slot) -> str:
        return f"http://127.0.0.1:{self.config.ports[slot]}"

    def log_tail(self, slot: Slot, lines: int = 30) -> str:
        path = self.run_dir / f"{slot}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def running(self) -> dict[Slot, str]:
        """Colour -> version of the app processes alive now."""
        return {s: v for s in Slot if (v := self._running_version(s)) is not None}

    def stop_all(self) -> None:
        """Stop both colours and take the pattern out of nginx (demo and test clean-up)."""
        self.front.remove()
        for slot in Slot:
            self._stop(slot)
        self._weights = {}

    def close(self) -> None:
        self._http.close()

    # -- private -----------------------------------------------------------------------------------

    def _new_records(self, since: float, limit: int = 5000) -> list[dict[str, Any]]:
        """Prediction-log records written at or after ``since`` not returned before (up to ``limit``)."""
        home = Path(self.config.env.get("MLPATTERNS_HOME") or settings.home())
        out: list[dict[str, Any]] = []
        for path in sorted((home / "logs" / "rest_api").glob("predictions-*.jsonl")):
            if path.stat().st_mtime < since or len(out) >= limit:
                continue
            with path.open("rb") as fh:
                fh.seek(self._offsets.get(path, 0))
                while len(out) < limit:
                    line = fh.readline()
                    if not line.endswith(b"\n"):
                        break  # nothing more, or a line still being written: read it next time
                    self._offsets[path] = fh.tell()
                    rec = json.loads(line)
                    if rec.get("ts", 0) >= since:
                        out.append(rec)
        return out

    def _admin(self, method: str, slot: Slot, path: str, body: Any = None) -> Any:
        resp = self._http.request(method, self.url(slot) + path, json=body)
        if resp.status_code != 200:
            raise RuntimeError(f"{slot} {method} {path}: HTTP {resp.status_code} {resp.text[:200]}")
        return resp.json()

    def _safe_ready(self, slot: Slot) -> bool:
        try:
            return self.ready(slot)
        except (RuntimeError, httpx.HTTPError):
            return False

    def _record(self, slot: Slot) -> tuple[int, str, int] | None:
        path = self.run_dir / f"{slot}.pid"
        if not path.exists():
            return None
        pid, version, port = path.read_text().split()
        return int(pid), version, int(port)

    def _pid(self, slot: Slot) -> int | None:
        rec = self._record(slot)
        if rec is None:
            return None
        pid, _, port = rec
        with contextlib.suppress(psutil.Error):
            proc = psutil.Process(pid)
            cmd = " ".join(proc.cmdline())
            if proc.status() != psutil.STATUS_ZOMBIE and f"--slot {slot}" in cmd and f"--port {port}" in cmd:
                return pid
        return None

    def _running_version(self, slot: Slot) -> str | None:
        """The version the colour's process serves, if it is alive on the configured port."""
        rec = self._record(slot)
        if rec is None or rec[2] != self.config.ports[slot] or self._pid(slot) is None:
            return None
        return rec[1]

    def _expected_version(self, slot: Slot) -> str | None:
        rec = self._record(slot)
        return rec[1] if rec else None

    def _stop(self, slot: Slot, timeout: float = 15.0) -> None:
        pid = self._pid(slot)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)  # the app's own session: uvicorn and its workers
            if not _wait(lambda: self._pid(slot) is None, timeout):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error, ChildProcessError):
                psutil.Process(pid).wait(1)
        (self.run_dir / f"{slot}.pid").unlink(missing_ok=True)


def _wait(predicate: Any, timeout: float, poll: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return bool(predicate())


def default_rest_gates() -> list[Gate]:
    """The core's gates; the shadow phase waits at most MLPATTERNS_REST_SHADOW_TIMEOUT seconds
    (default 120) for live traffic to replay, and is left out when it is 0 (no traffic to judge)."""
    timeout = settings.env_float("MLPATTERNS_REST_SHADOW_TIMEOUT", 120.0, lo=0)
    gates = [g for g in default_gates() if not isinstance(g, ShadowGate)]
    if timeout > 0:
        gates.insert(2, ShadowGate(timeout_s=timeout))
    return gates


def build_target(
    registry: Registry | None = None,
    config: ColourConfig | None = None,
    front: RestFront | None = None,
    gates: list[Gate] | None = None,
) -> Target:
    """The ``rest_api`` deploy target: this switch, the running feature fingerprint, the registry."""
    reg = registry or Registry()
    switch = RestSwitch(config, front)
    return Target(
        "rest_api",
        switch,
        FLIGHT_FEATURES.fingerprint(),
        registry_cards(reg),
        default_rest_gates() if gates is None else gates,
    )
