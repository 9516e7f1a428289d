"""Wiring for ``mlpatterns deploy/rollback/status``: pattern name -> that pattern's deploy target.

Each pattern's target is built by the ``module:factory`` named in ``patterns.__main__.SWITCHES``,
imported only when used; ``inprocess`` is the built-in demo target of ``shared.deploy.demo``.
"""

from __future__ import annotations

import importlib

import click

from shared.deploy.cli import build_commands
from shared.deploy.deployer import Target

__all__ = ["deploy", "names", "resolve", "rollback", "status"]

DEMO = "inprocess"


def _switches() -> dict[str, str]:
    from patterns.__main__ import SWITCHES  # read at call time so tests and plug-ins can extend it

    return SWITCHES


def resolve(pattern: str) -> Target:
    """Build ``pattern``'s deploy target (switch, running feature fingerprint, model lookup)."""
    if pattern == DEMO:
        from shared.deploy.demo import demo_target

        return demo_target()
    switches = _switches()
    if pattern not in switches:
        raise click.BadParameter(f"unknown pattern {pattern!r} (choose from {', '.join(names())})")
    module, _, attr = switches[pattern].partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as exc:
        if not exc.name or not module.startswith(exc.name):
            raise
        raise click.ClickException(f"pattern {pattern} has no switch yet ({module} does not exist)") from exc
    except AttributeError as exc:
        raise click.ClickException(f"pattern {pattern} has no switch yet ({module} has no {attr})") from exc
    target: Target = factory()
    return target


def names() -> list[str]:
    """Pattern names the commands accept."""
    return [*_switches(), DEMO]


deploy, rollback, status = build_commands(resolve, names)
