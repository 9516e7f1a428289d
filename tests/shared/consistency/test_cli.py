"""``mlpatterns check``: exit status, terminal table, JSON and HTML reports, config overrides."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from patterns.__main__ import main
from shared.example.flights import FLIGHT_FEATURES


def test_clean_traffic_passes_all_checks_and_writes_both_reports(world, serve, home) -> None:  # type: ignore[no-untyped-def]
    serve(np.arange(len(world.requests)), pattern="rest_api")
    result = CliRunner().invoke(main, ["check", "all"])
    assert result.exit_code == 0, result.output
    assert "consistency gate: PASSED" in result.output
    assert f"HTML report: {home / 'reports' / 'consistency.html'}" in result.output
    doc = json.loads((home / "reports" / "consistency.json").read_text())
    assert doc["passed"] is True
    assert [c["check"] for c in doc["checks"]] == ["features", "exports", "drift"]
    assert doc["context"]["model_version"] == world.model.version
    page = (home / "reports" / "consistency.html").read_text()
    assert page.count("data:image/png;base64,") >= 2  # drift histograms and export scatter
    # No mobile export report here: said plainly, and --strict refuses to call that a pass.
    exports = doc["checks"][1]
    assert any(f["status"] == "not_run" and "mobile" in f["name"] for f in exports["findings"])
    strict = CliRunner().invoke(main, ["check", "exports", "--strict", "--no-html"])
    assert strict.exit_code == 1
    assert "consistency gate: FAILED" in strict.output
    # Unless the rows not run are accepted on purpose (Core ML on a Linux CI, say), by name.
    mobile = next(f["name"] for f in exports["findings"] if f["status"] == "not_run")
    accepted = CliRunner().invoke(
        main, ["check", "exports", "--strict", "--no-html", "--accept-unverified", mobile.split()[0]]
    )
    assert accepted.exit_code == 0, accepted.output
    assert f"accepted unverified (strict): rows naming {mobile.split()[0]}" in accepted.output
    other = CliRunner().invoke(
        main, ["check", "exports", "--strict", "--no-html", "--accept-unverified", "coreml"]
    )
    assert other.exit_code == 1  # accepting another row does not accept this one


def test_skewed_feature_fails_the_gate_unless_the_config_allows_it(world, serve, home) -> None:  # type: ignore[no-untyped-def]
    rows = world.rows(world.requests["day"] == 31)
    km = world.served[rows].copy()
    km[:, FLIGHT_FEATURES.names.index("distance")] *= 1.609344
    serve(rows, km, pattern="batch_db")
    report_dir = home / "ci"
    failed = CliRunner().invoke(
        main, ["check", "features", "--pattern", "batch_db", "--report-dir", str(report_dir), "--no-html"]
    )
    assert failed.exit_code == 1
    assert "distance" in failed.output and "FAILED" in failed.output
    doc = json.loads((report_dir / "consistency.json").read_text())
    assert doc["checks"][0]["flagged"] == ["distance"]
    assert not (report_dir / "consistency.html").exists()

    config = home / "thresholds.toml"
    config.write_text("[features.per_feature.distance]\nmax_mismatch_rate = 1.0\n")
    allowed = CliRunner().invoke(main, ["check", "features", "--config", str(config), "--no-html"])
    assert allowed.exit_code == 0, allowed.output
    doc = json.loads((home / "reports" / "consistency.json").read_text())
    assert doc["context"]["thresholds"] == str(config)


def test_a_gate_that_checked_nothing_fails_and_says_where_it_looked(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    home = tmp_path / "mlpatterns-hom"  # a typo: no logs, no models
    monkeypatch.setenv("MLPATTERNS_HOME", str(home))
    for args in (["features"], ["all"], ["drift", "--pattern", "rest_api"]):
        result = CliRunner().invoke(main, ["check", *args, "--no-html", "--no-colour"])
        assert result.exit_code == 1, result.output
        assert "consistency gate: FAILED" in result.output
        assert (
            "nothing was checked: no selected check could run (see above), so the gate fails."
            in result.output
        )
        logs = home / "logs" / "rest_api" if "--pattern" in args else home / "logs"
        assert f"MLPATTERNS_HOME is {home}; prediction logs were read from {logs};" in result.output
        doc = json.loads((home / "reports" / "consistency.json").read_text())
        assert doc["passed"] is False and doc["context"]["nothing_checked"] is True


def test_a_check_that_ran_still_passes_beside_ones_that_could_not(
    tmp_path, monkeypatch, copy_registry
) -> None:  # type: ignore[no-untyped-def]
    copy_registry(tmp_path)  # a model, but no prediction logs: only the exports check can run
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path))
    result = CliRunner().invoke(main, ["check", "all", "--no-html", "--no-colour"])
    assert result.exit_code == 0, result.output
    assert "== features: NOT_RUN" in result.output and "== drift: NOT_RUN" in result.output
    assert "consistency gate: PASSED" in result.output and "nothing was checked" not in result.output
    strict = CliRunner().invoke(main, ["check", "all", "--no-html", "--strict"])
    assert strict.exit_code == 1 and "nothing was checked" not in strict.output


def test_a_bad_thresholds_file_is_one_error_line_naming_it(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path))
    typo = tmp_path / "typo.toml"
    typo.write_text("[exports]\nmax_abs_dif = 0.1\n")
    result = CliRunner().invoke(main, ["check", "exports", "--config", str(typo)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: --config {typo}: unknown threshold key(s) exports.max_abs_dif"
    broken = tmp_path / "broken.toml"
    broken.write_text("[exports\n")
    result = CliRunner().invoke(main, ["check", "exports", "--config", str(broken)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"Error: --config {broken} is not valid TOML: ")
    assert not (tmp_path / "reports").exists()  # refused before any check ran
