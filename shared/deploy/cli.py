"""Click commands ``deploy``, ``rollback`` and ``status``, built around a resolver.

The resolver turns a pattern name into a ``Target`` (its switch, running feature fingerprint and
model lookup); ``patterns/deploy_cli.py`` supplies it, so this module never imports a pattern.
``status`` reads only the durable state and never builds a switch.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import click

from shared.deploy.deployer import Deployer, DeployRefused, RollbackError, Target
from shared.deploy.state import AuditEvent, Slot, TargetState
from shared.deploy.store import StateStore, open_store
from shared.deploy.strategy import Strategy

__all__ = ["build_commands", "parse_steps", "render_status"]

Resolver = Callable[[str], Target]

_STATE_HELP = (
    "Deploy state: a SQLite file or a redis://, rediss:// or unix:// URL "
    "(default <MLPATTERNS_HOME>/deploy.sqlite; status and rollback need it to exist)."
)


#: Settings each target reads from the environment when ``deploy`` / ``rollback`` build it.
_TARGET_ENV_HELP = """\b
Environment variables the targets read [default]:
  MLPATTERNS_REST_BLUE_PORT       rest_api blue colour port [8101]
  MLPATTERNS_REST_GREEN_PORT      rest_api green colour port [8102]
  MLPATTERNS_REST_NGINX_PORT      rest_api nginx front port [8000]
  MLPATTERNS_REST_SHADOW_TIMEOUT  rest_api shadow wait, s [120; 0: none]
  MLPATTERNS_ADMIN_TOKEN          rest_api admin token [a file in home]
  MLPATTERNS_BATCH_DATES          batch_db days: DAY or FROM:TO [2013-12-01]
  MLPATTERNS_BATCH_STORE          batch_db store: sqlite or hbase [sqlite]
  MLPATTERNS_BATCH_PREFIX         batch_db table prefix [mlp]
  MLPATTERNS_BATCH_MAX_PSI        batch_db prediction PSI limit [0.25]
  MLPATTERNS_KAFKA_BOOTSTRAP      streaming Kafka servers [127.0.0.1:9092]
  MLPATTERNS_STREAM_PREFIX        streaming topic prefix [mlp]
  MLPATTERNS_STREAM_WORKERS       streaming worker processes per slot [1]
  MLPATTERNS_MOBILE_CHANNEL       mobile manifest channel [stable]
"""


def parse_steps(text: str) -> tuple[float, ...]:
    """``"10,50,100"`` -> ``(0.1, 0.5, 1.0)``; a missing final 100 is added.

    Errors quote the percentages as typed, never the fractions the deployer works in.
    """
    try:
        percents = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise click.BadParameter(f"expected percentages like 10,50,100, got {text!r}") from exc
    if any(not 0 < p <= 100 for p in percents):  # also refuses nan
        raise click.BadParameter(f"each step is a share of traffic from 0 (excluded) to 100%, got {text!r}")
    if not percents or percents[-1] < 100:
        percents.append(100.0)
    if any(b <= a for a, b in itertools.pairwise(percents)):
        raise click.BadParameter(f"steps must increase up to 100, got {text!r}")
    return tuple(p / 100.0 for p in percents)


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[["-" if c is None else str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def render_status(state: TargetState, events: Sequence[AuditEvent]) -> str:
    """The ``mlpatterns status`` text: slots, live pointer, last gate results, recent audit events."""
    live = f"{state.live} ({state.live_version})" if state.live else "none"
    flight = f"{state.deployment} (by {state.owner})" if state.deployment else "none"
    out = [
        f"target {state.target}: live {live}, deployment in flight: {flight}, revision {state.revision}",
        "",
    ]
    slots = [
        (s.value, info.version, info.state.value, "<- live" if state.live is s else "", _pct(state, s))
        for s, info in state.slots.items()
    ]
    out.append(_table(["slot", "version", "state", "pointer", "traffic"], slots))
    if state.gates:
        out += ["", "last gate results:"]
        gate_rows: list[Sequence[Any]] = [(g.phase, g.gate, g.outcome, g.detail) for g in state.gates]
        out.append(_table(["phase", "gate", "result", "detail"], gate_rows))
    if events:
        out += ["", f"last {len(events)} audit events:"]
        rows = [(_when(e.at), e.slot, e.version, _move(e), e.gate, e.reason) for e in events]
        out.append(_table(["when", "slot", "version", "transition", "gate", "reason"], rows))
    return "\n".join(out)


def _pct(state: TargetState, slot: Slot) -> str:
    return f"{state.weights.get(slot, 0.0):.0%}"


def _move(e: AuditEvent) -> str:
    return f"{e.from_state} -> {e.to_state}" if e.to_state else e.action


def _echo_event(e: AuditEvent) -> None:
    click.echo(f"  {e.slot or '-':5} {e.version or '-':12} {_move(e):24} {e.reason}")


def build_commands(
    resolver: Resolver, patterns: Callable[[], Iterable[str]] | None = None
) -> tuple[click.Command, click.Command, click.Command]:
    """The ``deploy``, ``rollback`` and ``status`` commands for ``resolver``; ``patterns()`` (called
    when a command runs) lists the valid names, so a typo fails before anything is touched."""

    def _check(pattern: str) -> None:
        known = list(patterns()) if patterns is not None else []
        if known and pattern not in known:
            raise click.BadParameter(f"unknown pattern {pattern!r} (choose from {', '.join(known)})")

    def _open(state: str | None, must_exist: bool = False) -> StateStore:
        return open_store(state, must_exist=must_exist)

    state_opt = click.option(
        "--state", envvar="MLPATTERNS_DEPLOY_STATE", show_envvar=True, default=None, help=_STATE_HELP
    )

    @click.command("deploy", epilog=_TARGET_ENV_HELP)
    @click.argument("pattern")
    @click.argument("version")
    @click.option(
        "--strategy",
        type=click.Choice(["all-at-once", "canary"]),
        default="all-at-once",
        show_default=True,
        envvar="MLPATTERNS_DEPLOY_STRATEGY",
        show_envvar=True,
        help="Switch all traffic at once, or in canary steps (needs a medium that can split traffic).",
    )
    @click.option(
        "--steps",
        default="10,50,100",
        show_default=True,
        envvar="MLPATTERNS_DEPLOY_STEPS",
        show_envvar=True,
        help="Canary traffic percentages for the new version, one bake each.",
    )
    @click.option(
        "--bake",
        type=click.FloatRange(min=0),
        default=60.0,
        show_default=True,
        envvar="MLPATTERNS_DEPLOY_BAKE",
        show_envvar=True,
        help="Seconds each traffic step is watched by the guardrails before the next one.",
    )
    @click.option(
        "--poll",
        type=click.FloatRange(min=0, min_open=True),
        default=5.0,
        show_default=True,
        envvar="MLPATTERNS_DEPLOY_POLL",
        show_envvar=True,
        help="Seconds between guardrail checks during a bake.",
    )
    @click.option("--force", is_flag=True, help="Deploy even if the model's feature fingerprint differs.")
    @state_opt
    def deploy(
        pattern: str,
        version: str,
        strategy: str,
        steps: str,
        bake: float,
        poll: float,
        force: bool,
        state: str | None,
    ) -> None:
        """Blue-green deploy VERSION to PATTERN: stage it in the idle slot, verify it (readiness,
        golden set, shadow traffic), shift traffic (all at once or canary steps) while guardrails
        watch error rate, p99 latency and prediction PSI, then promote it. Any failed gate routes
        everything back to the live version and records why (see `mlpatterns status PATTERN`).

        PATTERN is rest_api, batch_db, streaming, mobile, or `inprocess` (a built-in demo whose
        versions v1, v2, ... may carry -broken, -errors or -newfeatures to show the gates).
        """
        _check(pattern)
        plan = Strategy.all_at_once(bake, poll) if strategy == "all-at-once" else None
        if plan is None:
            try:
                plan = Strategy.canary(parse_steps(steps), bake, poll)
            except click.BadParameter as exc:  # parsed here, not by click: only a canary uses --steps
                raise click.BadParameter(exc.message, param_hint="'--steps'") from None
        target = resolver(pattern)
        store = _open(state)
        progress = _BakeProgress(plan)
        try:
            deployer = Deployer.for_target(target, store, on_bake=progress.advance, on_event=_echo_event)
            click.echo(f"deploying {version} to {pattern} ({plan.name}, bake {bake:g}s per step)")
            try:
                result = deployer.deploy(target.models(version), plan, force=force)
            except (DeployRefused, KeyError) as exc:
                raise click.ClickException(str(exc).strip("'\"")) from exc
        finally:
            progress.close()
            store.close()
        if not result.ok:
            raise click.ClickException(f"{version} was not promoted: {result.reason}")
        click.echo(f"{version} is live on {pattern} in slot {result.slot}")

    @click.command("rollback", epilog=_TARGET_ENV_HELP)
    @click.argument("pattern")
    @click.option(
        "--reason", default="operator rollback", show_default=True, help="Recorded in the audit log."
    )
    @state_opt
    def rollback(pattern: str, reason: str, state: str | None) -> None:
        """Move PATTERN's live pointer back to the previous version (kept warm on standby), or
        abort a deployment that is still in flight (even one run by another process)."""
        _check(pattern)
        store = _open(state, must_exist=True)  # before building the target: nothing to roll back
        try:
            target = resolver(pattern)
            deployer = Deployer.for_target(target, store, on_event=_echo_event)
            try:
                st = deployer.rollback(reason)
            except RollbackError as exc:
                raise click.ClickException(str(exc)) from exc
        finally:
            store.close()
        click.echo(f"{pattern}: live is now {st.live_version or 'nothing'}")

    @click.command("status")
    @click.argument("pattern")
    @click.option(
        "--events",
        type=click.IntRange(min=0),
        default=10,
        show_default=True,
        help="How many audit events to show.",
    )
    @state_opt
    def status(pattern: str, events: int, state: str | None) -> None:
        """Show PATTERN's slots (version, state, traffic share), the live pointer, the last gate
        results and the latest audit events. Reads the deploy state only."""
        _check(pattern)
        store = _open(state, must_exist=True)
        try:
            click.echo(render_status(store.load(pattern), store.audit(pattern, events)))
        finally:
            store.close()

    return deploy, rollback, status


class _BakeProgress:
    """A tqdm bar over the total bake time, advanced by the bake's waits; no bar when stderr is
    not a tty."""

    def __init__(self, plan: Strategy) -> None:
        self._total = plan.bake_s * len(plan.steps)
        self._bar: Any = None

    def advance(self, seconds: float) -> None:
        if self._bar is None and self._total > 0:
            from tqdm import tqdm

            self._bar = tqdm(total=self._total, unit="s", desc="bake", leave=False, disable=None)
        if self._bar is not None:
            self._bar.update(min(seconds, max(0.0, self._total - self._bar.n)))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
