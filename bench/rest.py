"""REST benchmark: same model, same machine, same run, five ways of answering POST /predict.

* ``rest app (nginx)``: the pattern as deployed, FastAPI app behind the blue-green nginx front;
* ``rest app (direct)``: the same process without nginx;
* ``bentoml``: the BentoML variant (same service class, BentoML's HTTP layer);
* ``bare fastapi+sklearn``: what one writes first: pydantic body, the same online features from
  the same Redis, ``model.pkl`` (loaded through the registry's verified ``artifact()``);
* ``no-op (nginx)`` and ``no-op (direct)``: the app's ``/noop`` (reads the body, answers a
  constant) through the same two paths: the HTTP limit of each.

For each: p50/p99 of sequential requests (one keep-alive client) and throughput with 16 concurrent
connections measured by ``wrk`` (Debian package; installed with apt-get if missing) cycling through
real request bodies with a Lua script, in rounds that interleave the endpoints (the median round is
shown). Prediction logging is off everywhere (the bare endpoint has none). Ratios are to BentoML
and to the no-op on the same path (nginx or direct) of the same run.

    python bench/rest.py [--version v1] [--duration 10] [--rounds 3] [--sequential 400] [--only NAMES]
                         [--plot rest.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _http import PREFIX, ROOT, Server, ensure_wrk, example, free_port, wrk, wrk_script
from _plot import bar_chart
from pydantic import BaseModel

sys.path.insert(0, str(ROOT))


class Flight(BaseModel):
    """The bare baseline's request body (module level: FastAPI resolves annotations by name)."""

    carrier: str
    flight: int
    origin: str
    dest: str
    distance: float
    sched_ts: int


# --- the bare baseline (run in a child process: `python bench/rest.py --serve-bare PORT VERSION`) ---


def _serve_bare(port: int, version: str, redis_url: str) -> None:
    import pickle

    import uvicorn
    from fastapi import FastAPI

    from patterns.rest_api.schemas import local_fields
    from shared.example.flights import FLIGHT_FEATURES
    from shared.features import OnlineExecutor, RedisStore
    from shared.registry import Registry

    with open(Registry().get(version).artifact("model.pkl"), "rb") as fh:
        model = pickle.load(fh)
    executor = OnlineExecutor(FLIGHT_FEATURES, RedisStore(redis_url, prefix=PREFIX))
    app = FastAPI()

    @app.post("/predict")
    def predict(flight: Flight) -> dict[str, Any]:
        request = flight.model_dump() | local_fields(flight.sched_ts)
        x = executor.matrix([request]).astype(np.float32)
        return {"model_version": version, "probability": float(model.predict_proba(x)[0, 1])}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# --- measurements ------------------------------------------------------------------------------------


def _sequential(url: str, bodies: list[dict[str, Any]], n: int) -> tuple[float, float]:
    lat = []
    with httpx.Client(timeout=10) as client:
        for i in range(n + 20):
            t = time.perf_counter()
            resp = client.post(url, json=bodies[i % len(bodies)])
            dt = time.perf_counter() - t
            if resp.status_code != 200:
                raise RuntimeError(f"{url}: HTTP {resp.status_code} {resp.text[:200]}")
            if i >= 20:  # warm-up excluded
                lat.append(dt * 1000)
    return float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--version", default=None, help="registered model version (default: latest; trained if none)"
    )
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per endpoint and round")
    ap.add_argument("--rounds", type=int, default=3, help="load rounds per endpoint (the median is shown)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--sequential", type=int, default=400, help="sequential requests per endpoint")
    ap.add_argument(
        "--only",
        default="",
        help="comma-separated subset to measure, e.g. 'rest app (nginx),no-op (nginx)' (default: all)",
    )
    ap.add_argument("--plot", type=Path, help="also draw the throughput of each endpoint to this PNG file")
    ap.add_argument("--serve-bare", nargs=3, metavar=("PORT", "VERSION", "REDIS_URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_bare:
        _serve_bare(int(args.serve_bare[0]), args.serve_bare[1], args.serve_bare[2])
        return

    from patterns.rest_api.nginx import RestFront
    from shared import services, settings

    wrk_binary = ensure_wrk()
    redis_url, version, bodies = example(args.version)
    services.get("nginx").up()
    tmp = Path(tempfile.mkdtemp(prefix="mlp-bench-rest-"))
    script = wrk_script(bodies, tmp / "post.lua")
    env = os.environ | {"MLPATTERNS_HOME": str(settings.home()), "BENTOML_DO_NOT_TRACK": "true",
                        "MLPATTERNS_REDIS_URL": redis_url, "MLPATTERNS_REDIS_PREFIX": PREFIX,
                        "MLPATTERNS_MODEL_VERSION": version, "MLPATTERNS_PREDICTION_LOG": "0"}  # fmt: skip
    ports = {k: free_port() for k in ("app", "bento", "bare", "front")}
    front = RestFront(port=ports["front"], name="rest_api_bench")
    procs: list[Server] = []
    rows: list[tuple[str, float, float, float, float, int]] = []
    wanted = {t.strip() for t in args.only.split(",") if t.strip()}
    try:
        py = sys.executable
        app_cmd = [py, "-m", "patterns", "rest", "serve", "--version", version, "--port", str(ports["app"]),
                   "--redis-url", redis_url, "--redis-prefix", PREFIX, "--no-log"]  # fmt: skip
        app = f"http://127.0.0.1:{ports['app']}"
        procs.append(Server("rest app", app_cmd, env, app + "/v2/health/ready", tmp, wait=False))
        bento = f"http://127.0.0.1:{ports['bento']}"
        bento_cmd = [py, "-m", "bentoml", "serve", "patterns.rest_api.bento_service:FlightDelay",
                     "--host", "127.0.0.1", "--port", str(ports["bento"])]  # fmt: skip
        if not wanted or "bentoml" in wanted:
            procs.append(Server("bentoml", bento_cmd, env, bento + "/readyz", tmp, wait=False))
        bare = f"http://127.0.0.1:{ports['bare']}"
        bare_cmd = [py, __file__, "--serve-bare", str(ports["bare"]), version, redis_url]
        if not wanted or "bare fastapi+sklearn" in wanted:
            procs.append(Server("bare", bare_cmd, env, bare + "/docs", tmp, wait=False))
        for server in procs:  # booted side by side; each is measured alone once all are up
            server.wait_ready()
        front.apply({ports["app"]: 1.0})
        targets = [
            ("rest app (nginx)", front.url + "/predict"),
            ("rest app (direct)", app + "/predict"),
            ("bentoml", bento + "/predict"),
            ("bare fastapi+sklearn", bare + "/predict"),
            ("no-op (nginx)", front.url + "/noop"),
            ("no-op (direct)", app + "/noop"),
        ]
        chosen = [(name, url) for name, url in targets if not wanted or name in wanted]
        sequential = {}
        for name, url in chosen:
            print(f"measuring {name}: sequential ...", flush=True)
            sequential[name] = _sequential(url, bodies, args.sequential)
        # Rounds interleave the endpoints, so a slow spell of a shared machine hits all of them;
        # each row reports its median round.
        loads: dict[str, list[tuple[float, float, int, int]]] = {name: [] for name, _ in chosen}
        for round_ in range(args.rounds):
            for name, url in chosen:
                print(f"round {round_ + 1}/{args.rounds}: {name} under load ...", flush=True)
                loads[name].append(wrk(wrk_binary, url, script, args.duration, args.connections))
        for name, _ in chosen:
            runs = sorted(loads[name])
            rps, p99_load, _, _ = runs[len(runs) // 2]
            rows.append((name, *sequential[name], rps, p99_load, sum(r[2] for r in runs)))
    finally:
        for proc in procs:
            proc.stop()
        front.remove()
        front.access_log.unlink(missing_ok=True)
    _table(rows, version, args)


def _table(rows: list[tuple[str, float, float, float, float, int]], version: str, args: Any) -> None:
    nan = float("nan")
    by = {r[0]: r for r in rows}
    missing = ("", nan, nan, nan, nan, 0)  # a target left out with --only
    bento = by.get("bentoml", missing)

    def noop_of(name: str) -> tuple[str, float, float, float, float, int]:
        return by.get("no-op (nginx)" if "nginx" in name else "no-op (direct)", missing)

    print(f"\nREST /predict, model {version}, {os.cpu_count()} cores; sequential: {args.sequential} "
          f"requests, 1 client; load: wrk -t2 -c{args.connections} -d{args.duration}s, "
          f"median of {args.rounds} interleaved rounds")  # fmt: skip
    head = ("endpoint", "p50 ms", "p99 ms", "req/s", "p99@16", "failed", "x bentoml", "x no-op")
    print("{:<22}{:>8}{:>8}{:>9}{:>9}{:>8}{:>11}{:>9}".format(*head))
    for name, p50, p99, rps, p99l, failed in rows:
        print(f"{name:<22}{p50:>8.2f}{p99:>8.2f}{rps:>9.0f}{p99l:>9.1f}{failed:>8}"
              f"{rps / bento[3]:>11.2f}{rps / noop_of(name)[3]:>9.2f}")  # fmt: skip
    ours, noop = by.get("rest app (nginx)", missing), by.get("no-op (nginx)", missing)

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"\ngoals, rest app through nginx: >= 2x bentoml throughput: {ours[3] / bento[3]:.2f}x "
          f"({verdict(ours[3] >= 2 * bento[3])}); p99 under load <= bentoml's: {ours[4]:.1f} vs "
          f"{bento[4]:.1f} ms ({verdict(ours[4] <= bento[4])}); sequential p99 {ours[2]:.1f} vs "
          f"{bento[2]:.1f} ms ({verdict(ours[2] <= bento[2])}); >= 0.5x no-op (nginx) throughput: "
          f"{ours[3] / noop[3]:.2f}x ({verdict(ours[3] >= 0.5 * noop[3])})")  # fmt: skip
    if args.plot:
        goals = [("2x bentoml", 2 * bento[3]), ("0.5x no-op (nginx)", 0.5 * noop[3])]
        bar_chart(
            args.plot,
            f"REST /predict throughput, wrk -c{args.connections}, model {version} (grey: baselines)",
            [(name, rps) for name, _, _, rps, _, _ in rows],
            "requests per second",
            baselines=("bentoml", "bare fastapi+sklearn", "no-op (nginx)", "no-op (direct)"),
            goals=[(label, value) for label, value in goals if value == value],  # NaN: left out by --only
        )


if __name__ == "__main__":
    main()
