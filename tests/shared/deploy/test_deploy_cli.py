"""The real ``mlpatterns deploy/rollback/status`` commands, driven on the built-in ``inprocess`` target."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result

from patterns.__main__ import SWITCHES, main
from shared.deploy import SQLiteStore
from shared.deploy.cli import parse_steps


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    state = tmp_path / "deploy.sqlite"
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env={"MLPATTERNS_DEPLOY_STATE": str(state)})

    invoke.state = state  # type: ignore[attr-defined]
    return invoke


def test_status_of_a_fresh_target(run) -> None:  # type: ignore[no-untyped-def]
    result = run("status", "inprocess")
    assert result.exit_code == 0, result.output
    assert "live none" in result.output
    assert "blue   -        empty" in result.output


def test_deploy_canary_then_status_table(run) -> None:  # type: ignore[no-untyped-def]
    assert run("deploy", "inprocess", "v1", "--bake", "0").exit_code == 0
    result = run("deploy", "inprocess", "v2", "--strategy", "canary", "--steps", "25,100", "--bake", "0")
    assert result.exit_code == 0, result.output
    assert "route blue=75% green=25%" in result.output
    assert "v2 is live on inprocess in slot green" in result.output
    status = run("status", "inprocess", "--events", "3").output
    lines = status.splitlines()
    assert lines[0].startswith("target inprocess: live green (v2)")
    assert any(line.split()[:3] == ["blue", "v1", "standby"] for line in lines)
    assert any(line.split()[:5] == ["green", "v2", "live", "<-", "live"] for line in lines)
    assert "last 3 audit events:" in status
    assert any(line.split()[:3] == ["bake", "25%", "guardrails"] for line in lines)
    # what status shows is what the store holds
    store = SQLiteStore(run.state)
    assert store.load("inprocess").live_version == "v2"
    store.close()


def test_failed_gates_exit_nonzero_and_keep_live(run) -> None:  # type: ignore[no-untyped-def]
    assert run("deploy", "inprocess", "v1", "--bake", "0").exit_code == 0
    broken = run("deploy", "inprocess", "v2-broken", "--bake", "0")
    assert broken.exit_code == 1
    assert "v2-broken was not promoted: golden_set gate failed" in broken.output
    errors = run("deploy", "inprocess", "v2-errors", "--strategy", "canary", "--bake", "0")
    assert errors.exit_code == 1 and "error rate" in errors.output
    assert "live blue (v1)" in run("status", "inprocess").output


def test_fingerprint_mismatch_needs_force(run) -> None:  # type: ignore[no-untyped-def]
    refused = run("deploy", "inprocess", "v1-newfeatures", "--bake", "0")
    assert refused.exit_code == 1 and "--force" in refused.output
    assert run("deploy", "inprocess", "v1-newfeatures", "--bake", "0", "--force").exit_code == 0


def test_rollback_command(run) -> None:  # type: ignore[no-untyped-def]
    assert run("rollback", "inprocess").exit_code == 1  # nothing live yet
    run("deploy", "inprocess", "v1", "--bake", "0")
    run("deploy", "inprocess", "v2", "--bake", "0")
    result = run("rollback", "inprocess", "--reason", "pager fired")
    assert result.exit_code == 0, result.output
    assert "live is now v1" in result.output
    assert "pager fired" in run("status", "inprocess").output
    again = run("rollback", "inprocess")
    assert again.exit_code == 1 and "no previous version on standby" in again.output


def test_unknown_pattern_and_pattern_without_switch(run, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    unknown = run("status", "nope")
    assert unknown.exit_code == 2 and "unknown pattern 'nope'" in unknown.output
    monkeypatch.setitem(SWITCHES, "ghost", "patterns.ghost.switch:build_target")
    ghost = run("deploy", "ghost", "v1")
    assert ghost.exit_code == 1
    assert "pattern ghost has no switch yet" in ghost.output
    assert run("status", "ghost").exit_code == 0  # status needs only the durable state


def test_bad_steps_are_rejected(run) -> None:  # type: ignore[no-untyped-def]
    result = run("deploy", "inprocess", "v1", "--strategy", "canary", "--steps", "50,20")
    assert result.exit_code == 2 and "steps must increase" in result.output
    assert parse_steps("10,50") == (0.1, 0.5, 1.0)
    with pytest.raises(click.BadParameter):
        parse_steps("ten")


def test_help_explains_the_commands(run) -> None:  # type: ignore[no-untyped-def]
    text = run("deploy", "--help").output
    for word in ("--strategy", "--steps", "--bake", "--force", "golden set", "inprocess"):
        assert word in text
