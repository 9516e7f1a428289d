"""The real ``mlpatterns deploy/rollback/status`` commands, driven on the built-in ``inprocess`` target."""

from __future__ import annotations

import re
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


def _create(state: Path) -> None:
    """An existing deploy state in which no target was deployed yet."""
    SQLiteStore(state).close()


def test_status_of_a_fresh_target(run) -> None:  # type: ignore[no-untyped-def]
    _create(run.state)
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
    negative = run("status", "inprocess", "--events", "-1")
    assert negative.exit_code == 2 and "'--events'" in negative.output and "-1" in negative.output
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
    _create(run.state)
    nothing = run("rollback", "inprocess")
    assert nothing.exit_code == 1 and "no deploy state" not in nothing.output  # nothing live yet
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
    _create(run.state)
    assert run("status", "ghost").exit_code == 0  # status needs only the durable state


def test_bad_steps_are_rejected(run) -> None:  # type: ignore[no-untyped-def]
    result = run("deploy", "inprocess", "v1", "--strategy", "canary", "--steps", "50,20")
    assert result.exit_code == 2 and "steps must increase" in result.output
    assert parse_steps("10,50") == (0.1, 0.5, 1.0)
    with pytest.raises(click.BadParameter):
        parse_steps("ten")


@pytest.mark.parametrize("steps", ["150", "0,50", "-10,100", "nan"])
def test_steps_out_of_range_are_told_in_the_percentages_typed(run, steps: str) -> None:  # type: ignore[no-untyped-def]
    result = run("deploy", "inprocess", "v1", "--strategy", "canary", "--steps", steps, "--bake", "0")
    assert result.exit_code == 2
    assert "Invalid value for '--steps': each step is a share of traffic from 0 (excluded) to 100%" in (
        result.output
    )
    assert f"got {steps!r}" in result.output and "(0, 1]" not in result.output
    assert not run.state.exists()  # refused before anything was touched


def test_negative_bake_and_zero_poll_are_usage_errors(run) -> None:  # type: ignore[no-untyped-def]
    bake = run("deploy", "inprocess", "v1", "--bake", "-5")
    assert bake.exit_code == 2 and "Invalid value for '--bake'" in bake.output
    assert "-5.0 is not in the range x>=0" in bake.output
    poll = run("deploy", "inprocess", "v1", "--bake", "1", "--poll", "0")
    assert poll.exit_code == 2 and "Invalid value for '--poll'" in poll.output
    assert "0.0 is not in the range x>0" in poll.output


@pytest.mark.parametrize("command", [("status", "inprocess"), ("rollback", "inprocess")])
def test_read_only_commands_need_an_existing_state(tmp_path: Path, command: tuple[str, ...]) -> None:
    missing = tmp_path / "nonexist" / "dir" / "x.sqlite"
    result = CliRunner().invoke(main, [*command, "--state", str(missing)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: no deploy state at {missing}: nothing was deployed with it")
    assert not (tmp_path / "nonexist").exists()  # and nothing was created


def test_a_mistyped_redis_url_is_refused_not_made_a_file(tmp_path: Path) -> None:
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path) as cwd:
        for command in (("status", "inprocess"), ("deploy", "inprocess", "v1", "--bake", "0")):
            result = runner.invoke(main, [*command, "--state", "redis:/127.0.0.1:6379"])
            assert result.exit_code == 1
            assert result.output.strip() == (
                "Error: deploy state 'redis:/127.0.0.1:6379' is neither a redis://, rediss:// or "
                "unix:// URL nor a SQLite path (a path may not contain ':')"
            )
        assert list(Path(cwd).iterdir()) == []


def test_a_directory_or_an_unreachable_redis_is_one_error_line(tmp_path: Path) -> None:
    runner = CliRunner()
    for command in (("status", "inprocess"), ("deploy", "inprocess", "v1", "--bake", "0")):
        directory = runner.invoke(main, [*command, "--state", str(tmp_path)])
        assert directory.exit_code == 1
        assert (
            directory.output.strip()
            == f"Error: deploy state {tmp_path} is a directory: name a SQLite file in it"
        )
    url = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    down = runner.invoke(main, ["status", "inprocess", "--state", url])
    assert down.exit_code == 1 and isinstance(down.exception, SystemExit)
    assert down.output.startswith(f"Error: cannot reach the deploy state at {url}: ")
    assert len(down.output.strip().splitlines()) == 1
    not_sqlite = tmp_path / "notes.txt"
    not_sqlite.write_text("not a database, " * 100)
    garbage = runner.invoke(main, ["status", "inprocess", "--state", str(not_sqlite)])
    assert garbage.exit_code == 1
    assert (
        garbage.output.strip()
        == f"Error: cannot open the deploy state {not_sqlite} as SQLite: file is not a database"
    )


def test_help_explains_the_commands(run) -> None:  # type: ignore[no-untyped-def]
    text = run("deploy", "--help").output
    for word in ("--strategy", "--steps", "--bake", "--force", "golden set", "inprocess"):
        assert word in text
    for option in ("STRATEGY", "STEPS", "BAKE", "POLL", "STATE"):
        assert f"[env var: MLPATTERNS_DEPLOY_{option}" in " ".join(text.split())


def test_deploy_help_lists_every_variable_the_targets_read(run) -> None:  # type: ignore[no-untyped-def]
    root = Path(__file__).resolve().parents[3]
    sources = [*root.glob("patterns/*/switch.py"), root / "patterns" / "rest_api" / "nginx.py"]
    # Quoted names are read in code; $NAME is how a docstring names one read further down.
    read = {m for f in sources for m in re.findall(r'["$](MLPATTERNS_[A-Z0-9_]+)', f.read_text())}
    read -= {"MLPATTERNS_HOME"}  # the root command's help explains the home
    assert {"MLPATTERNS_BATCH_DATES", "MLPATTERNS_REST_NGINX_PORT", "MLPATTERNS_MOBILE_CHANNEL"} <= read
    lines = run("deploy", "--help").output.splitlines()
    for name in read | {"MLPATTERNS_BATCH_STORE", "MLPATTERNS_KAFKA_BOOTSTRAP"}:
        assert [line for line in lines if line.split()[:1] == [name]], f"{name} is not in deploy --help"
