"""Blue-green deployment core shared by the four patterns (see README.md in this folder).

A pattern implements ``Switch`` with its own mechanism; ``Deployer`` drives it through the gates and
keeps the durable state (SQLite or Redis) and the audit log. Heavy libraries are never imported here.
"""

from shared.deploy.deployer import (
    Deployer,
    DeploymentInFlight,
    DeployRefused,
    DeployResult,
    RollbackError,
    Target,
)
from shared.deploy.gates import (
    Candidate,
    Gate,
    GateContext,
    GoldenSetGate,
    GuardrailGate,
    ModelCard,
    ReadinessGate,
    ShadowGate,
    check_fingerprint,
    default_gates,
    registry_cards,
)
from shared.deploy.metrics import agreement_rate, p99, psi
from shared.deploy.state import (
    IN_FLIGHT,
    TRANSITIONS,
    AuditEvent,
    GateResult,
    InvariantError,
    Slot,
    SlotState,
    TargetState,
    TransitionError,
)
from shared.deploy.store import ConflictError, RedisStore, SQLiteStore, StateStore, open_store
from shared.deploy.strategy import Strategy
from shared.deploy.switch import BakeMetrics, InProcessSwitch, Predictor, Switch

__all__ = [
    "IN_FLIGHT",
    "TRANSITIONS",
    "AuditEvent",
    "BakeMetrics",
    "Candidate",
    "ConflictError",
    "DeployRefused",
    "DeployResult",
    "Deployer",
    "DeploymentInFlight",
    "Gate",
    "GateContext",
    "GateResult",
    "GoldenSetGate",
    "GuardrailGate",
    "InProcessSwitch",
    "InvariantError",
    "ModelCard",
    "Predictor",
    "ReadinessGate",
    "RedisStore",
    "RollbackError",
    "SQLiteStore",
    "ShadowGate",
    "Slot",
    "SlotState",
    "StateStore",
    "Strategy",
    "Switch",
    "Target",
    "TargetState",
    "TransitionError",
    "agreement_rate",
    "check_fingerprint",
    "default_gates",
    "open_store",
    "p99",
    "psi",
    "registry_cards",
]
