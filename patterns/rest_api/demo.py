"""The REST pattern's part of ``make demo``: blue-green through nginx, a switch and a rollback.

``run_demo(("v1", "v2"))`` materialises online features into Redis up to a day, starts blue with v1
behind nginx, asks for a prediction through nginx (JSON, then the same flight with tritonclient's
binary tensors), deploys v2 to green (gates shown), asks again, rolls back, asks again, and stops
every process it started. It expects Redis and nginx up
(``mlpatterns services up redis nginx``) and both versions registered (``mlpatterns train``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from patterns.rest_api.service import build_store
from shared import settings
from shared.deploy import (
    Deployer,
    GoldenSetGate,
    GuardrailGate,
    ReadinessGate,
    ShadowGate,
    Slot,
    SQLiteStore,
    Strategy,
)
from shared.example.data import event_sources, load_flights
from shared.example.flights import FLIGHT_FEATURES
from shared.features import StreamingExecutor

__all__ = ["DEMO_CUTOFF", "materialise", "run_demo", "sample_requests"]

#: Features are materialised up to this moment; requests score flights of the hour before it.
DEMO_CUTOFF = dt.datetime(2013, 1, 2, 15, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))


def materialise(redis_url: str, until: dt.datetime = DEMO_CUTOFF) -> int:
    """Replay the events the features need before ``until`` into Redis; returns events accepted.

    Like a stream worker catching up: afterwards the store answers every flight scheduled in the
    hour before ``until`` exactly as the offline features would.
    """
    executor = StreamingExecutor(FLIGHT_FEATURES, build_store("redis", redis_url))
    return sum(executor.observe_history(event_sources(), int(until.timestamp())).values())


def sample_requests(until: dt.datetime = DEMO_CUTOFF, n: int | None = None) -> list[dict[str, Any]]:
    """Request bodies of the flights scheduled in the hour before ``until`` (exact online features)."""
    end = int(until.timestamp())
    flights = load_flights(months=(until.month,))
    rows = flights[(flights["sched_ts"] >= end - 3600) & (flights["sched_ts"] < end)]
    bodies = [
        {
            "carrier": r.carrier,
            "flight": int(r.flight),
            "origin": r.origin,
            "dest": r.dest,
            "distance": float(r.distance),
            "sched_ts": int(r.sched_ts),
        }
        for r in rows.itertuples()
    ]
    return bodies[:n] if n else bodies


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_demo(versions: tuple[str, str] = ("v1", "v2"), out: Callable[[str], None] = print) -> None:
    from patterns.rest_api.nginx import RestFront
    from patterns.rest_api.switch import ColourConfig, build_target

    old, new = versions
    out(f"== REST pattern: blue-green behind nginx ({old} -> {new}, then rollback)")
    written = materialise(settings.redis_url())
    out(f"materialised {written:,} departure/weather events into Redis up to {DEMO_CUTOFF:%Y-%m-%d %H:%M}")
    body = sample_requests(n=1)[0]
    run_dir = Path(tempfile.mkdtemp(prefix="mlp-rest-demo-"))
    # Free ports and its own conf.d file: the demo never touches a real rest_api deployment.
    # Its traffic is one client, so guardrails judge from 50 requests instead of 100, and the
    # shadow from 150 pairs. v2 is trained on one more month than v1: each at its own cut, the two
    # take the same decision on 49 of the demo's 52 flights (94 %), above the shadow default 85 %.
    ports = {Slot.BLUE: _free_port(), Slot.GREEN: _free_port()}
    config = ColourConfig(ports=ports, run_dir=run_dir / "run")
    target = build_target(
        config=config,
        front=RestFront(port=_free_port(), name="rest_api_demo"),
        gates=[
            ReadinessGate(),
            GoldenSetGate(),
            ShadowGate(min_pairs=150, timeout_s=60),
            # The demo client loops over a few hours of one day, so v1's reference window and v2's
            # bake see different flights: PSI here measures that traffic mix, not the model. Keep
            # the default 0.25 in production, where both windows see the same live population.
            GuardrailGate(min_requests=50, max_psi=2.0),
        ],
    )
    switch = target.switch
    deployer = Deployer.for_target(target, SQLiteStore(run_dir / "deploy.sqlite"))
    strategy = Strategy.all_at_once(bake_s=5.0, poll_s=0.5)
    client = httpx.Client(timeout=10.0)
    url = f"{switch.front.url}/predict"  # type: ignore[attr-defined]

    bodies = sample_requests()
    stop = threading.Event()

    def traffic() -> None:  # live traffic, so the shadow and bake gates have something to judge
        # ~20 requests/s: enough for the gates, and the prediction log stays a plausible population
        # for `mlpatterns check` rather than thousands of repeats of one hour's flights.
        with httpx.Client(timeout=10.0) as c:
            i = 0
            while not stop.wait(0.05):
                with contextlib.suppress(httpx.HTTPError):
                    c.post(url, json=bodies[i % len(bodies)])
                i += 1

    def ask(label: str) -> None:
        answer = client.post(url, json=body).json()
        out(f"  {label}: {body['carrier']}{body['flight']} {body['origin']}->{body['dest']} "
            f"p(delay)={answer['probability']:.4f} from {answer['model_version']}")  # fmt: skip

    def ask_v2() -> None:  # a standard Open Inference Protocol client, with its binary tensors
        import numpy as np
        import tritonclient.http as triton

        from patterns.rest_api.schemas import FIELDS

        inputs = []
        for field in (f for f in FIELDS if f.name in body):  # one tensor per field the body has
            tensor = triton.InferInput(field.name, [1], field.v2_datatype)
            dtype = object if field.v2_datatype == "BYTES" else None
            tensor.set_data_from_numpy(np.array([body[field.name]], dtype=dtype))
            inputs.append(tensor)
        v2 = triton.InferenceServerClient(switch.front.url.removeprefix("http://"))  # type: ignore[attr-defined]
        p = float(v2.infer("flight_delay", inputs).as_numpy("probability")[0])
        v2.close()
        if p != client.post(url, json=body).json()["probability"]:
            raise RuntimeError(f"V2 /infer answered {p}, /predict something else")
        out(f"  through nginx, Open Inference Protocol (tritonclient, binary tensors): p(delay)={p:.4f}")

    def show(result: Any) -> None:
        for gate in result.gates:
            out(f"    [{gate.outcome:4}] {gate.gate:<11} {gate.phase:<9} {gate.detail}")
        slots = result.state.slots
        out("    " + "  ".join(f"{s}={slots[s].version or '-'}({slots[s].state})" for s in slots))
        if not result.ok:
            switch_logs = "\n".join(switch.log_tail(s, 10) for s in Slot)  # type: ignore[attr-defined]
            raise RuntimeError(f"{result.version} was not promoted: {result.reason}\n{switch_logs}")

    background = threading.Thread(target=traffic, daemon=True)
    try:
        started = time.monotonic()
        out(f"deploy {old} to blue (first deployment: nothing to compare with)")
        show(deployer.deploy(target.models(old), strategy))
        ask("through nginx")
        ask_v2()
        background.start()
        out(f"deploy {new} to green: readiness, golden set over HTTP, bake guardrails, then switch")
        show(deployer.deploy(target.models(new), strategy))
        ask("through nginx")
        out("rollback: the standby colour is still warm, nginx points back at it")
        st = deployer.rollback("demo rollback")
        out("    " + "  ".join(f"{s}={i.version or '-'}({i.state})" for s, i in st.slots.items()))
        ask("through nginx")
        out(f"done in {time.monotonic() - started:.1f}s")
    finally:
        stop.set()
        if background.is_alive():
            background.join(10)
        client.close()
        switch.stop_all()  # type: ignore[attr-defined]
        out("stopped blue and green, removed the pattern's nginx file")
