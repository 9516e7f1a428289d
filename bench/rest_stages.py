"""Where a REST prediction's time goes: the same app with its work switched on stage by stage.

Each stage is the real ``create_app`` served by ``run_app``, exactly as ``mlpatterns rest serve`` does
(uvloop, httptools, one process, logging off), around a ``FlightDelayService`` whose hooks stop
after one stage (or whose store differs), so every stage runs the same handler, batcher and metrics:

* ``no-op``: the app's ``/noop`` (reads the body, answers a constant): the HTTP limit;
* ``no store``: ``POST /predict`` validated and micro-batched, answered with a constant without
  asking the store: what the handler, the batcher and the answer cost;
* ``round trip``: ``POST /predict`` with the request validated and micro-batched, and one minimal
  store read per batch (one as-of lookup), answered with a constant: what any handler that waits
  on a network store pays;
* ``idle store``: ``free features`` below, except that Redis answers the typical read with a
  script that looks nothing up and returns that read's reply: the same bytes both ways, no work in
  Redis. Against ``free features``, it shows what the app loses while Redis runs the lookups;
* ``free features``: the real service, except that its feature code costs (almost) nothing: each
  batch sends Redis the same store read as a typical batch of 7 benchmark flights (so Redis does
  the same work and the same bytes travel), decodes the reply and drops it, and takes each
  flight's feature row from a table filled on first sight: an upper bound for any speed-up of
  the feature code;
* ``features``: the real online features (plan, one Redis script call, assembly), no model;
* ``predict``: the real service (features and onnxruntime);
* ``embedded``: the real service on the in-process store (loaded with the same history) instead of
  Redis: the same features and model with no network store at all, which shows what the store's
  round trip costs.

Throughput is ``wrk -t2 -c16`` straight to the app (no nginx) over real request bodies, in rounds
that interleave the stages (median round shown). The app's CPU per request comes from
``/proc/<pid>/stat`` over the same wrk run: on a machine whose cores are shared with wrk and Redis
it is steadier than requests per second. ``x no-op`` is the throughput ratio to the no-op of the
same round; ``+CPU`` is the CPU a request costs above the no-op's.

    python bench/rest_stages.py [--version v1] [--duration 10] [--rounds 3] [--plot stages.png]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _http import CUTOFF, PREFIX, ROOT, Server, cpu_seconds, ensure_wrk, example, free_port, wrk, wrk_script
from _plot import bar_chart

sys.path.insert(0, str(ROOT))

STAGES = ("no store", "round trip", "idle store", "free features", "features", "predict", "embedded")


def _service(stage: str, version: str, redis_url: str) -> Any:
    """The service of ``stage``: the real one, with later hooks returning constants or another store."""
    from patterns.rest_api.loader import parse_until
    from patterns.rest_api.service import FlightDelayService
    from shared.example.data import event_sources
    from shared.example.flights import FLIGHT_FEATURES
    from shared.features import StreamingExecutor
    from shared.features.stores import LatestQuery, _read_reply

    class NoStore(FlightDelayService):
        async def features_async(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
            return np.zeros((len(requests), len(self.feature_names)))

        def predict(self, features: np.ndarray) -> np.ndarray:
            return np.zeros(len(features))

    class RoundTrip(NoStore):
        async def features_async(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
            first = requests[0]
            at = first["sched_ts"] - FLIGHT_FEATURES.lead_seconds
            weather = LatestQuery("weather", "origin", first["origin"], at)
            await self.store.read_async([], [weather])
            return np.zeros((len(requests), len(self.feature_names)))

    class FeaturesOnly(FlightDelayService):
        def predict(self, features: np.ndarray) -> np.ndarray:
            return np.zeros(len(features))

    class FreeFeatures(FlightDelayService):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.rows: dict[tuple[Any, ...], tuple[Mapping[str, Any], np.ndarray]] = {}
            self.typical_read: tuple[list[Any], list[Any]] | None = None

        async def features_async(self, requests: Sequence[Mapping[str, Any]]) -> np.ndarray:
            new = [r for r in requests if tuple(r.values()) not in self.rows]
            if new:  # the real features, once per flight
                for r, row in zip(new, await super().features_async(new), strict=True):
                    self.rows[tuple(r.values())] = (r, row)
            if self.typical_read is None and len(self.rows) >= 7:
                plan = self.executor._plan([r for r, _ in list(self.rows.values())[:7]])
                self.typical_read = plan.windows, plan.latest
            if self.typical_read is not None:
                await self.send_typical_read(*self.typical_read)
            return np.array([self.rows[tuple(r.values())][1] for r in requests])

        async def send_typical_read(self, windows: list[Any], latest: list[Any]) -> None:
            await self.store.read_async(windows, latest)

    class IdleStore(FreeFeatures):
        canned: tuple[str, str] | None = None  # (sha, source) of a script returning the typical reply

        async def send_typical_read(self, windows: list[Any], latest: list[Any]) -> None:
            # What read_async does (command, script call, reply parse), with the canned script.
            keys, args = self.store._read_command(windows, latest)
            if self.canned is None:
                script = self.store._read_script
                reply = await self.store._async.run_script(script.sha, script.script, keys, args)
                source = "return {" + ",".join(map(json.dumps, reply)) + "}"  # JSON strings are Lua's too
                self.canned = hashlib.sha1(source.encode()).hexdigest(), source
            _read_reply(await self.store._async.run_script(*self.canned, keys, args))

    stages = {
        "no store": NoStore,
        "round trip": RoundTrip,
        "features": FeaturesOnly,
        "idle store": IdleStore,
        "free features": FreeFeatures,
    }
    kind = stages.get(stage, FlightDelayService)
    store = "embedded" if stage == "embedded" else "redis"
    service = kind.from_config(version, store=store, redis_url=redis_url, redis_prefix=PREFIX, log=False)
    if store == "embedded":  # the in-process store starts empty: the same history as Redis holds
        executor = StreamingExecutor(service.feature_set, service.store)
        executor.observe_history(event_sources(), parse_until(CUTOFF))
    return service


def _serve(stage: str, port: int, version: str, redis_url: str) -> None:
    from patterns.rest_api.app import create_app
    from patterns.rest_api.cli import run_app

    run_app(create_app(_service(stage, version, redis_url)), "127.0.0.1", port)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", default=None, help="registered model version (default: latest)")
    ap.add_argument("--duration", type=int, default=10, help="seconds of wrk per stage and round")
    ap.add_argument("--rounds", type=int, default=3, help="rounds (the median is shown)")
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument(
        "--stages",
        nargs="+",
        choices=STAGES,
        default=list(STAGES),
        help="stages beside the no-op (default: all)",
    )
    ap.add_argument("--plot", type=Path, help="also draw each stage's CPU per request to this PNG file")
    ap.add_argument(
        "--serve", nargs=4, metavar=("STAGE", "PORT", "VERSION", "REDIS_URL"), help=argparse.SUPPRESS
    )
    args = ap.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]), args.serve[2], args.serve[3])
        return

    from shared import settings

    wrk_binary = ensure_wrk()
    redis_url, version, bodies = example(args.version)
    tmp = Path(tempfile.mkdtemp(prefix="mlp-bench-stages-"))
    script = wrk_script(bodies, tmp / "post.lua")
    env = os.environ | {"MLPATTERNS_HOME": str(settings.home())}
    servers: dict[str, Server] = {}
    urls: dict[str, str] = {}
    try:
        stages = [s for s in STAGES if s in args.stages]
        for stage in stages:
            port = free_port()
            cmd = [sys.executable, __file__, "--serve", stage, str(port), version, redis_url]
            urls[stage] = f"http://127.0.0.1:{port}/predict"
            ready = f"http://127.0.0.1:{port}/v2/health/ready"
            servers[stage] = Server(stage, cmd, env, ready, tmp, wait=False)
        for server in servers.values():  # they booted side by side; none is measured before all are up
            server.wait_ready()
        # The no-op is served by the last stage's process: same app, same stack.
        servers["no-op"], urls["no-op"] = servers[stages[-1]], urls[stages[-1]].replace("/predict", "/noop")
        order = ["no-op", *stages]
        runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in order}
        for round_ in range(args.rounds):
            for name in order:
                print(f"round {round_ + 1}/{args.rounds}: {name} ...", flush=True)
                pid = servers[name].p.pid
                before = cpu_seconds(pid)
                rps, _, failed, total = wrk(wrk_binary, urls[name], script, args.duration, args.connections)
                if failed:
                    raise RuntimeError(f"{name}: {failed} failed requests (see {servers[name].log})")
                cpu_us = (cpu_seconds(pid) - before) / total * 1e6
                noop_rps = runs["no-op"][-1][0] if name != "no-op" else rps
                runs[name].append((rps, cpu_us, rps / noop_rps))
    finally:
        for server in servers.values():
            server.stop()
    _table(order, runs, version, args)


def _table(
    order: list[str], runs: dict[str, list[tuple[float, float, float]]], version: str, args: Any
) -> None:
    def median(name: str, i: int) -> float:
        return float(np.median([r[i] for r in runs[name]]))

    noop_cpu = median("no-op", 1)
    print(f"\nREST /predict by stage, model {version}, {os.cpu_count()} cores, direct (no nginx); "
          f"wrk -t2 -c{args.connections} -d{args.duration}s, median of {args.rounds} rounds")  # fmt: skip
    print("{:<14}{:>9}{:>14}{:>10}{:>9}".format("stage", "req/s", "CPU us/req", "+CPU us", "x no-op"))
    for name in order:
        cpu = median(name, 1)
        print(f"{name:<14}{median(name, 0):>9.0f}{cpu:>14.0f}{cpu - noop_cpu:>10.0f}{median(name, 2):>9.2f}")
    print(
        f"\n0.5x the no-op needs a prediction to cost at most 2x the no-op's CPU: {2 * noop_cpu:.0f} us "
        f"per request"
    )
    if args.plot:
        bar_chart(
            args.plot,
            f"REST app CPU per request by stage, direct, wrk -c{args.connections}, model {version}",
            [(name, median(name, 1)) for name in order],
            "app process CPU, microseconds per request",
            baselines=("no-op",),
            goals=[("0.5x no-op: 2x its CPU", 2 * noop_cpu)],
        )


if __name__ == "__main__":
    main()
