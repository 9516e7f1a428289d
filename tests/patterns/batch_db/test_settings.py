"""Environment settings of the batch pattern: a malformed value is an error naming the variable."""

from __future__ import annotations

import uuid

import pytest
from click.testing import CliRunner

from patterns.batch_db import PredictionTableStore, open_store
from patterns.batch_db.cli import batch
from patterns.batch_db.switch import BatchSwitch, RunGate, build_target
from shared.registry import Registry
from shared.services import Endpoint
from shared.settings import SettingError

from .conftest import DAY


@pytest.mark.servers
@pytest.mark.parametrize("raw", ["0", "-2", "65", "two"])
def test_hbase_writers_must_be_an_integer_in_range(
    hbase_server: Endpoint, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("MLPATTERNS_HBASE_WRITERS", raw)
    with pytest.raises(
        SettingError, match=f"MLPATTERNS_HBASE_WRITERS='{raw}': expected an integer from 1 to 64"
    ):
        open_store("hbase", prefix="tunused", host=hbase_server.host, port=hbase_server.port)


@pytest.mark.servers
def test_hbase_writers_from_environment(hbase_server: Endpoint, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPATTERNS_HBASE_WRITERS", "3")
    store = open_store(
        "hbase", prefix=f"t{uuid.uuid4().hex[:10]}", host=hbase_server.host, port=hbase_server.port
    )
    try:
        assert store.writers == 3  # type: ignore[attr-defined]
        assert store.tables() == []
    finally:
        store.connection.delete_table(f"{store.prefix}_batch_meta", disable=True)  # type: ignore[attr-defined]
        store.close()


@pytest.mark.servers
def test_cli_bad_hbase_writers_is_one_line(hbase_server: Endpoint) -> None:
    env = {"MLPATTERNS_HBASE_THRIFT_PORT": str(hbase_server.port), "MLPATTERNS_HBASE_WRITERS": "many"}
    out = CliRunner().invoke(batch, ["runs", "--store", "hbase", "--prefix", "tunused"], env=env)
    assert out.exit_code == 1, out.output
    assert out.output.strip() == "Error: MLPATTERNS_HBASE_WRITERS='many': expected an integer from 1 to 64"


def _gate(store: PredictionTableStore, registry: Registry) -> RunGate:
    target = build_target(store, dates=[DAY], registry=registry)
    return next(g for g in target.gates or [] if isinstance(g, RunGate))


@pytest.mark.parametrize("raw", ["high", "-0.1", "nan", "inf"])
def test_max_psi_must_be_a_number_from_zero(
    store: PredictionTableStore, registry: Registry, monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("MLPATTERNS_BATCH_MAX_PSI", raw)
    with pytest.raises(SettingError, match=f"MLPATTERNS_BATCH_MAX_PSI='{raw}': expected a number >= 0"):
        _gate(store, registry)


def test_max_psi_from_environment(
    store: PredictionTableStore, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPATTERNS_BATCH_MAX_PSI", "0.1")
    assert _gate(store, registry).max_psi == 0.1
    monkeypatch.setenv("MLPATTERNS_BATCH_MAX_PSI", "")  # empty means unset
    assert _gate(store, registry).max_psi == 0.25


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("2013-02-30", "MLPATTERNS_BATCH_DATES='2013-02-30': '2013-02-30' is not a date YYYY-MM-DD"),
        ("2013-03-01:03-05", "MLPATTERNS_BATCH_DATES='2013-03-01:03-05': '03-05' is not a date"),
        (":2013-03-01", "MLPATTERNS_BATCH_DATES=':2013-03-01': '' is not a date"),
        (
            "2013-03-05:2013-03-01",
            "MLPATTERNS_BATCH_DATES='2013-03-05:2013-03-01': the last date 2013-03-01 is before the first",
        ),
        ("2014-01-01", "MLPATTERNS_BATCH_DATES='2014-01-01': 2014-01-01 has no flights in the example data"),
    ],
)
def test_batch_dates_errors_name_the_variable(
    store: PredictionTableStore, registry: Registry, monkeypatch: pytest.MonkeyPatch, raw: str, message: str
) -> None:
    monkeypatch.setenv("MLPATTERNS_BATCH_DATES", raw)
    with pytest.raises(SettingError) as caught:
        build_target(store, registry=registry)
    assert str(caught.value).startswith(message), caught.value
    assert "--" not in str(caught.value)  # the deploy command has no --from/--to


@pytest.mark.parametrize(
    ("raw", "dates"),
    [
        ("2013-03-01:2013-03-03", ["2013-03-01", "2013-03-03"]),
        ("2013-03-01", ["2013-03-01", "2013-03-01"]),
        ("", ["2013-12-01", "2013-12-01"]),
    ],
)
def test_batch_dates_from_environment(
    store: PredictionTableStore,
    registry: Registry,
    monkeypatch: pytest.MonkeyPatch,
    raw: str,
    dates: list[str],
) -> None:
    monkeypatch.setenv("MLPATTERNS_BATCH_DATES", raw)
    switch = build_target(store, registry=registry).switch
    assert isinstance(switch, BatchSwitch)
    assert [switch.dates[0], switch.dates[-1]] == dates
