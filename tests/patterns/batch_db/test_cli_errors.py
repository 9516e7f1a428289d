"""A caller's mistake in ``mlpatterns batch`` is one clear line, found before any work starts.

Each test runs on the real HBase and on the embedded SQLite store, and checks that the store was
left untouched (no run recorded, no pointer moved) where a mistake used to surface mid-run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from patterns.batch_db import PredictionTableStore, RunRecord, open_store
from patterns.batch_db.cli import batch
from patterns.batch_db.store import InvalidPrefix
from shared.errors import UserError

from .conftest import DAY


def _refused(out: Result, text: str, code: int = 2) -> None:
    """``out`` failed with ``code``, said ``text`` and printed no traceback."""
    assert out.exit_code == code, out.output
    assert text in out.output
    assert "Traceback" not in out.output and isinstance(out.exception, SystemExit)


def test_help_has_short_flag() -> None:
    out = CliRunner().invoke(batch, ["-h"])
    assert out.exit_code == 0, out.output
    assert out.output.startswith("Usage:") and "Batch pattern" in out.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["score", "--date", DAY, "--keep", "-1"], "Invalid value for '--keep': -1 is not in the range x>=0"),
        (["score", "--date", DAY, "--chunk", "0"], "Invalid value for '--chunk': 0 is not in the range x>=1"),
        (["score", "--date", DAY, "--chunk", "-1"], "Invalid value for '--chunk': -1 is not in the range"),
        (["score", "--date", DAY, "--batch-size", "0"], "Invalid value for '--batch-size': 0 is not in"),
        (["score", "--date", DAY, "--log-fraction", "1.5"], "Invalid value for '--log-fraction': 1.5 is not"),
        (["score", "--date", DAY, "--log-fraction", "-0.1"], "Invalid value for '--log-fraction': -0.1"),
        (["score", "--date", DAY, "--max-psi", "-1"], "Invalid value for '--max-psi': -1.0 is not in"),
        (["publish", "nosuch", "--max-psi", "-0.5"], "Invalid value for '--max-psi': -0.5 is not in"),
        (["retain", "--keep", "0"], "Invalid value for '--keep': 0 is not in the range x>=1"),
        (["score", "--date", "2013-02-30"], "Invalid value for '--date': '2013-02-30' is not a date"),
        (["score", "--from", "2013-02-30"], "Invalid value for '--from': '2013-02-30' is not a date"),
        (["score", "--from", DAY, "--to", "2013-3-x"], "Invalid value for '--to': '2013-3-x' is not a date"),
        (
            ["score", "--from", "2013-03-05", "--to", "2013-03-01"],
            "Invalid value for '--from' / '--to': the last date 2013-03-01 is before the first date",
        ),
        (["rollback", "--date", "2013-02-30"], "Invalid value for '--date': '2013-02-30' is not a date"),
        (["get", "garbage"], "Invalid value for 'FLIGHT_ID': not a flight id: 'garbage'"),
    ],
)
def test_bad_arguments_are_refused_before_work(
    store: PredictionTableStore, cli: Callable[..., Result], args: list[str], message: str
) -> None:
    _refused(cli(*args), message)
    assert store.runs() == [] and store.tables() == []
    assert store.pointer(DAY) is None


def test_bad_chunk_from_environment_is_refused(
    store: PredictionTableStore, cli: Callable[..., Result]
) -> None:
    _refused(cli("score", "--date", DAY, env_extra={"MLPATTERNS_BATCH_CHUNK": "0"}), "'--chunk': 0 is not")
    assert store.runs() == []


def test_bad_input_csv_names_file_and_columns(
    store: PredictionTableStore, cli: Callable[..., Result], tmp_path: Path
) -> None:
    partial = tmp_path / "partial.csv"
    partial.write_text("flight_id,carrier,origin\n20130301-UA475-EWR-0515,UA,EWR\n")
    out = cli("score", "--date", DAY, "--input", str(partial))
    _refused(out, f"Invalid value for '--input': {partial} has no column(s) year, month, day, hour")
    assert "carrier" not in out.output.split("(needs")[0]  # only the missing ones are listed
    blank = tmp_path / "blank.csv"
    blank.write_text("")
    _refused(cli("score", "--date", DAY, "--input", str(blank)), f"{blank}: not a readable CSV")
    assert store.runs() == []


def test_unknown_model_version(store: PredictionTableStore, cli: Callable[..., Result]) -> None:
    _refused(cli("score", "--date", DAY, "--version", "v9"), "Error: no model version 'v9'", code=1)
    assert store.runs() == []


def test_quarantine_of_unknown_run(store: PredictionTableStore, cli: Callable[..., Result]) -> None:
    _refused(cli("quarantine", "nosuch"), "Error: no run 'nosuch'", code=1)
    # A run that exists lists its rows (and one without any lists nothing, successfully).
    store.save_run(RunRecord("r1", f"{store.prefix}_pred_x", [DAY], "v1", "sha", "fp", status="written"))
    store.quarantine("r1", [("20130301-XX1-EWR-0000", "unknown origin", {"origin": "XYZ"})])
    store.save_run(RunRecord("r2", f"{store.prefix}_pred_y", [DAY], "v1", "sha", "fp", status="written"))
    listed = cli("quarantine", "r1")
    assert listed.exit_code == 0, listed.output
    assert listed.output.split() == ["20130301-XX1-EWR-0000", "unknown", "origin", "{'origin':", "'XYZ'}"]
    none = cli("quarantine", "r2")
    assert (none.exit_code, none.output) == (0, "")


def test_bad_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One rule for every backend (SQL identifiers are the narrowest); HBase refuses before connecting.
    monkeypatch.setenv("MLPATTERNS_HOME", str(tmp_path))
    out = CliRunner().invoke(batch, ["runs", "--store", "sqlite", "--prefix", "a-b"])
    _refused(out, "Invalid value for '--prefix': prefix must be letters, digits and _: 'a-b'")
    with pytest.raises(InvalidPrefix) as caught:
        open_store("sqlite", prefix="a;b", path=tmp_path / "x.sqlite")
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)
    assert open_store("sqlite", prefix="ok_1", path=tmp_path / "x.sqlite").tables() == []
    for bad in ("ns:mlp", "a-b", "", "mlp\n"):
        with pytest.raises(InvalidPrefix, match="letters, digits and _"):
            open_store("hbase", prefix=bad, host="127.0.0.1", port=1)  # nothing listens on port 1
    out = CliRunner().invoke(batch, ["runs", "--store", "hbase", "--prefix", "ns:mlp"])
    _refused(out, "Invalid value for '--prefix': prefix must be letters, digits and _: 'ns:mlp'")
