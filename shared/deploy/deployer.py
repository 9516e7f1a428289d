"""The orchestrator: drives a pattern's Switch through the gates and persists every step.

Ordering rule (what makes crashes safe): the durable state is written BEFORE the medium is asked to
do something (intent first), and the live pointer only moves in the single commit that ends a
successful bake. A process that dies anywhere therefore leaves the previous version as the
committed live one; ``recover`` (run at the start of every deploy/rollback) re-applies that routing
and marks the interrupted candidate failed or rolled back.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from shared.deploy.gates import Gate, GateContext, ModelCard, check_fingerprint, default_gates
from shared.deploy.state import AuditEvent, GateResult, Slot, SlotState, TargetState
from shared.deploy.store import ConflictError, StateStore, StateStoreError
from shared.deploy.strategy import Strategy
from shared.deploy.switch import Switch

__all__ = [
    "DeployRefused",
    "DeployResult",
    "Deployer",
    "DeploymentInFlight",
    "RollbackError",
    "Target",
]

_S = SlotState
#: Tokens of deployments running in this process (a crashed one is removed by its ``finally``).
_RUNNING: set[str] = set()


class DeployRefused(RuntimeError):
    """The deployment was not started (fingerprint mismatch, already live, strategy not possible)."""


class DeploymentInFlight(DeployRefused):
    """Another live process is deploying to this target."""


class RollbackError(RuntimeError):
    """There is nothing to roll back to."""


class _Aborted(Exception):
    """Another process aborted our deployment (``mlpatterns rollback`` while we bake)."""


@dataclass
class Target:
    """What a pattern's ``build_target()`` returns: its switch plus how to look up model versions."""

    name: str
    switch: Switch
    feature_fingerprint: str  # fingerprint of the feature definitions this pattern runs now
    models: Callable[[str], ModelCard]  # version -> model card (usually the registry)
    gates: Sequence[Gate] | None = None  # None: default_gates()


@dataclass(frozen=True)
class DeployResult:
    ok: bool
    version: str
    slot: Slot
    reason: str
    state: TargetState
    gates: list[GateResult] = field(default_factory=list)


class Deployer:
    """Blue-green deployments of one target: ``deploy``, ``rollback``, ``recover``, ``state``."""

    def __init__(
        self,
        target: str,
        switch: Switch,
        store: StateStore,
        feature_fingerprint: str,
        gates: Sequence[Gate] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        on_event: Callable[[AuditEvent], None] | None = None,
        models: Callable[[str], ModelCard] | None = None,
        on_bake: Callable[[float], None] | None = None,
    ) -> None:
        self.target = target
        self.switch = switch
        self.store = store
        self.feature_fingerprint = feature_fingerprint
        self.gates = list(default_gates() if gates is None else gates)
        self._clock = clock
        self._sleep = sleep
        self._on_event = on_event  # called with each audit event once it is durable (CLI progress)
        self._models = models  # version -> card, for the live version's decision threshold
        # Called with each wait of the bake (not of the gates' polling): what a progress bar counts.
        self._on_bake = on_bake
        self._events: list[AuditEvent] = []

    @classmethod
    def for_target(cls, target: Target, store: StateStore, **kwargs: object) -> Deployer:
        kwargs.setdefault("models", target.models)
        return cls(target.name, target.switch, store, target.feature_fingerprint, target.gates, **kwargs)  # type: ignore[arg-type]

    def state(self) -> TargetState:
        return self.store.load(self.target)

    # -- public operations -------------------------------------------------------------------------

    def recover(self, abort_running: bool = False) -> TargetState:
        """Make medium and durable state agree; abort a deployment whose process is gone."""
        st = self.store.load(self.target)
        self.switch.attach(st)
        if st.deployment is not None:
            if not abort_running and _owner_alive(st.owner):
                raise DeploymentInFlight(f"{self.target}: deployment {st.deployment} is running ({st.owner})")
            cand = st.candidate
            state = st.slots[cand].state if cand else "?"
            return self._abort(
                st.deployment, f"recovered: deployment {st.deployment} interrupted while {state}"
            )
        if st.live is not None or any(info.state is _S.ROLLED_BACK for info in st.slots.values()):
            # Once traffic was routed, re-assert it ("none" too): a route() racing an abort may last.
            self.switch.route(st.weights)
        return st

    def deploy(self, model: ModelCard, strategy: Strategy | None = None, force: bool = False) -> DeployResult:
        """Stage ``model`` in the idle slot, verify, shift traffic per ``strategy``, bake, promote."""
        strategy = strategy or Strategy()
        st = self.recover()
        version = model.version
        fp = check_fingerprint(model.feature_fingerprint, self.feature_fingerprint, force)
        refusal = None if fp.passed else fp.detail
        if refusal is None and st.live_version == version:
            refusal = f"{version} is already live"
        if refusal is None and len(strategy.steps) > 1 and not self.switch.supports_weights:
            refusal = f"{type(self.switch).__name__} cannot split traffic; use all-at-once"
        if refusal is not None:
            self._event(st, "refused", refusal, version=version, gate=None if fp.passed else "fingerprint")
            self._commit(st)
            raise DeployRefused(refusal)

        live = st.live
        cand = live.other if live else Slot.BLUE
        dep = uuid.uuid4().hex[:8]
        token = f"{socket.gethostname()}:{os.getpid()}:{dep}"
        held = st.slots[cand].state not in (_S.EMPTY, _S.RETIRED)
        if held:
            self._move(st, cand, _S.RETIRED, "freed for the next deployment")
        st.deployment, st.owner, st.gates = dep, token, [fp]
        self._move(st, cand, _S.STAGED, f"deploy {version} ({strategy.name})", version=version)
        st = self._commit(st)
        _RUNNING.add(token)
        try:
            return self._run(st, cand, model, strategy, held)
        except _Aborted:
            # Our last route() may have landed after the aborting process's: re-assert its routing.
            current = self.state()
            self.switch.route(current.weights)  # {} too: an aborted first deployment serves nothing
            return DeployResult(False, version, cand, "aborted by another process", current)
        except Exception as exc:
            source = "deploy state" if isinstance(exc, StateStoreError) else "switch"
            reason = f"{source} error: {type(exc).__name__}: {exc}"
            try:
                st = self._abort(dep, reason)
            except StateStoreError as down:
                # The store is away (the likely cause of ``exc`` too), and _abort routes only what
                # it can load. Users must not stay on an unpromoted version: route back from what
                # this process knows, and leave the closing of the deployment to `rollback`.
                self.switch.route({live: 1.0} if live is not None else {})
                raise StateStoreError(
                    f"{self.target}: deployment {dep} of {version} failed ({reason}); traffic is "
                    f"routed back to {live or 'nothing'}, but {down} - run `mlpatterns rollback "
                    f"{self.target}` once it answers, to close the deployment"
                ) from exc
            return DeployResult(False, version, cand, reason, st, list(st.gates))
        finally:
            _RUNNING.discard(token)

    def rollback(self, reason: str = "operator rollback") -> TargetState:
        """Abort the in-flight deployment, or put the standby (previous) version back live."""
        st = self.store.load(self.target)
        self.switch.attach(st)
        if st.deployment is not None:
            return self._abort(st.deployment, f"{reason}: deployment {st.deployment} aborted")
        if st.live is None:
            raise RollbackError(f"{self.target}: nothing is live")
        prev, cur = st.live.other, st.live
        if st.slots[prev].state is not _S.STANDBY:
            raise RollbackError(
                f"{self.target}: no previous version on standby ({prev} is {st.slots[prev].state})"
            )
        if not self.switch.ready(prev):
            raise RollbackError(f"{self.target}: standby slot {prev} is not ready")
        self.switch.route({prev: 1.0})
        self._move(st, cur, _S.ROLLED_BACK, reason)
        self._move(st, prev, _S.LIVE, reason)
        st.weights = {prev: 1.0}
        return self._commit(st)

    # -- the deployment itself ---------------------------------------------------------------------

    def _run(
        self, st: TargetState, cand: Slot, model: ModelCard, strategy: Strategy, held: bool
    ) -> DeployResult:
        if held:
            self.switch.retire(cand)
        self.switch.stage(cand, model.version)
        self._move(st, cand, _S.VERIFYING, "staged")
        st = self._commit(st)
        ctx = GateContext(self.switch, cand, st.live, model, "verify", clock=self._clock, sleep=self._sleep)
        ctx.live_model = self._live_card(st)
        failed = self._gates(st, ctx, "verify")
        if failed is None and any(g.phase == "shadow" for g in self.gates):
            self._move(st, cand, _S.VERIFIED, "verification passed")
            self._move(st, cand, _S.SHADOW, "mirroring live traffic")
            st = self._commit(st)
            ctx.phase = "shadow"
            failed = self._gates(st, ctx, "shadow")
        if failed is not None:
            return self._failed(st, cand, model, failed)
        if st.slots[cand].state is _S.VERIFYING:
            self._move(st, cand, _S.VERIFIED, "verification passed")

        live = st.live
        seen: list[np.ndarray] = []  # live predictions served during this deployment: the PSI reference
        steps = strategy.steps if live is not None else (1.0,)  # nothing to split with on a first deploy
        for share in steps:
            weights = {cand: 1.0} if live is None or share >= 1.0 else {cand: share, live: 1.0 - share}
            st.weights = weights
            self._move(st, cand, _S.CANARY, "route " + _fmt(weights))
            st = self._commit(st)
            if live is not None:  # route() starts new observation windows: keep what live served
                seen.append(np.asarray(self.switch.observe(live).predictions, dtype=np.float64))
                ctx.reference = np.concatenate(seen)
            self.switch.route(weights)
            ctx.phase = f"bake {share:.0%}"
            failed = self._bake(st, ctx, strategy)
            if failed is not None:
                return self._failed(st, cand, model, failed)
        if live is not None:
            self._move(st, live, _S.STANDBY, f"replaced by {model.version}")
        self._move(st, cand, _S.LIVE, "bake passed; promoted")
        st.weights, st.deployment, st.owner = {cand: 1.0}, None, None
        st = self._commit(st)
        return DeployResult(True, model.version, cand, "live", st, list(st.gates))

    def _live_card(self, st: TargetState) -> ModelCard | None:
        if self._models is None or st.live_version is None:
            return None
        try:
            return self._models(st.live_version)
        except KeyError:  # the live version left the registry: gates fall back to the candidate's view
            return None

    def _gates(self, st: TargetState, ctx: GateContext, phase: str) -> GateResult | None:
        for gate in (g for g in self.gates if g.phase == phase):
            result = gate.check(ctx)
            st.gates.append(result)
            if not result.passed:
                return result
        return None

    def _bake(self, st: TargetState, ctx: GateContext, strategy: Strategy) -> GateResult | None:
        gates = [g for g in self.gates if g.phase == "bake"]
        end = self._clock() + strategy.bake_s
        while True:
            results = [g.check(ctx) for g in gates]
            failed = next((r for r in results if not r.passed), None)
            if failed is not None or self._clock() >= end:
                st.gates.extend(results)  # only the last evaluation of each step is kept
                return failed
            wait = min(strategy.poll_s, max(0.0, end - self._clock()))
            self._sleep(wait)
            if self._on_bake is not None:
                self._on_bake(wait)
            try:
                if self.store.load(self.target).deployment != st.deployment:
                    raise _Aborted
            except StateStoreError:
                pass  # a blip: look again at the next poll; promoting needs the store anyway

    def _failed(self, st: TargetState, cand: Slot, model: ModelCard, gate: GateResult) -> DeployResult:
        reason = f"{gate.gate} gate failed ({gate.phase}): {gate.detail}"
        dep = st.deployment
        self._commit(st)  # persist the gate results first, then close the deployment
        st = self._abort(dep, reason, gate=gate.gate)
        return DeployResult(False, model.version, cand, reason, st, list(st.gates))

    def _abort(self, dep: str | None, reason: str, gate: str | None = None) -> TargetState:
        """Route everything back to the committed live slot and close the deployment ``dep``."""
        self._events.clear()
        for _ in range(3):
            st = self.store.load(self.target)
            cand = st.candidate
            if st.deployment != dep or cand is None:
                return st  # someone else already closed it
            with contextlib.suppress(Exception):
                self.switch.shadow(None)
            weights = {st.live: 1.0} if st.live is not None else {}
            if st.live is not None or st.slots[cand].state is _S.CANARY:
                self.switch.route(weights)  # if this raises, the deployment stays open for recover()
            to = _S.ROLLED_BACK if st.slots[cand].state is _S.CANARY else _S.FAILED
            self._move(st, cand, to, reason, gate=gate)
            st.weights, st.deployment, st.owner = weights, None, None
            try:
                return self._commit(st)
            except ConflictError:
                self._events.clear()
        raise ConflictError(f"{self.target}: could not close deployment {dep}")

    # -- durable writes ----------------------------------------------------------------------------

    def _move(
        self,
        st: TargetState,
        slot: Slot,
        to: SlotState,
        reason: str,
        *,
        version: str | None = None,
        gate: str | None = None,
    ) -> None:
        old = st.transition(slot, to, version=version)
        self._event(
            st, to.value, reason, slot=slot, version=st.slots[slot].version, frm=old, to=to, gate=gate
        )

    def _event(
        self,
        st: TargetState,
        action: str,
        reason: str,
        *,
        slot: Slot | None = None,
        version: str | None = None,
        frm: SlotState | None = None,
        to: SlotState | None = None,
        gate: str | None = None,
    ) -> None:
        self._events.append(
            AuditEvent(
                self.target,
                action,
                reason,
                slot=slot.value if slot else None,
                version=version,
                from_state=frm.value if frm else None,
                to_state=to.value if to else None,
                gate=gate,
                deployment=st.deployment,
            )
        )

    def _commit(self, st: TargetState) -> TargetState:
        events, self._events = self._events, []
        try:
            committed = self.store.commit(st, events)
        except ConflictError:
            current = self.store.load(self.target)
            if st.deployment is not None and current.deployment != st.deployment:
                raise _Aborted from None
            raise
        if self._on_event is not None:
            for event in events:
                self._on_event(event)
        return committed


def _fmt(weights: dict[Slot, float]) -> str:
    return " ".join(f"{s}={w:.0%}" for s, w in sorted(weights.items())) or "nothing"


def _owner_alive(owner: str | None) -> bool:
    """Whether the process that started a deployment may still be running it."""
    if not owner:
        return False
    host, pid, _ = owner.split(":", 2)
    if host != socket.gethostname():
        return True  # cannot tell from here; the operator aborts with `rollback`
    if int(pid) == os.getpid():
        return owner in _RUNNING
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
