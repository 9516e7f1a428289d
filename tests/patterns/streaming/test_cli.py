"""The ``stream`` commands and settings refuse a caller's mistake in one line, naming what was wrong,
before anything reaches Kafka: a bad route on the control topic would break every reader."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from click.testing import CliRunner, Result

from patterns.streaming.cli import stream
from patterns.streaming.messages import TopicNameError, Topics, ensure_topics, producer
from patterns.streaming.reader import Control
from patterns.streaming.switch import build_target
from shared.errors import UserError
from shared.registry import Registry
from shared.settings import SettingError


def _run(*args: str) -> Result:
    return CliRunner().invoke(stream, list(args))


@pytest.mark.parametrize("prefix", ["../x", "a/b", "x y", "", "é"])
def test_topics_refuse_a_prefix_kafka_cannot_name_a_topic_with(prefix: str) -> None:
    with pytest.raises(TopicNameError, match=re.escape(f"topic prefix {prefix!r} is not allowed")) as caught:
        Topics(prefix)
    assert isinstance(caught.value, UserError) and isinstance(caught.value, ValueError)


def test_topics_take_letters_digits_dots_dashes_and_underscores() -> None:
    assert Topics("Team-1.prod_a").predictions("v2") == "Team-1.prod_a.predictions.v2"


def test_a_bad_prefix_is_refused_naming_the_option() -> None:
    result = _run("read", "--prefix", "a/b", "--bootstrap", "127.0.0.1:1")
    assert result.exit_code == 2, result.output
    assert "Invalid value for '--prefix': topic prefix 'a/b' is not allowed" in result.output


def test_switch_refuses_a_version_the_registry_lacks_unless_forced(
    bootstrap: str, topics: Topics, registry: Registry
) -> None:
    common = ("--prefix", topics.prefix, "--bootstrap", bootstrap)
    refused = _run("switch", *common, "v9")
    assert refused.exit_code == 1, refused.output
    assert refused.output.startswith("Error: no model version 'v9' in "), refused.output
    assert "(known: v1, v2) (--force publishes it anyway)" in refused.output
    assert Control(bootstrap, topics).current().version is None  # nothing was published
    forced = _run("switch", *common, "--force", "v9")
    assert forced.exit_code == 0, forced.output
    assert f"live: v9 (topic {topics.prefix}.predictions.v9, seq 1)" in forced.output
    live = _run("switch", *common, "v1")
    assert live.exit_code == 0 and f"live: v1 (topic {topics.prefix}.predictions.v1, seq 2)" in live.output


@pytest.mark.parametrize("version", ["../x", "v1.bak", "V1", "latest"])
def test_switch_refuses_a_name_that_is_no_version_even_forced(
    bootstrap: str, topics: Topics, registry: Registry, version: str
) -> None:
    for extra in ((), ("--force",)):
        result = _run("switch", "--prefix", topics.prefix, "--bootstrap", bootstrap, *extra, version)
        assert result.exit_code == 2, result.output
        assert (
            f"Invalid value for 'VERSION': expected a model version like v1, got {version!r}" in result.output
        )
    assert Control(bootstrap, topics).current().version is None


def test_work_with_an_unknown_version_is_one_error_line(
    registry: Registry,
    topics: Topics,
) -> None:
    result = _run("work", "--prefix", topics.prefix, "--bootstrap", "127.0.0.1:1", "--version", "v9")
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: no model version 'v9' in "), result.output
    assert "(known: v1, v2)" in result.output and "Traceback" not in result.output


def test_work_with_an_empty_registry_is_one_error_line(tmp_path: Any, topics: Topics) -> None:
    result = _run(
        "work", "--prefix", topics.prefix, "--bootstrap", "127.0.0.1:1", "--registry", str(tmp_path)
    )
    assert result.exit_code == 1, result.output
    assert result.output == f"Error: the registry at {tmp_path} is empty: run `mlpatterns train` first\n"


@pytest.mark.parametrize(
    ("date", "message"),
    [
        ("2013-02-30", "2013-02-30 is not a date"),
        ("2014-06-01", "2014-06-01 is outside 2013, the one year of the data set"),
        ("06/01/2013", "expected a date as YYYY-MM-DD, got '06/01/2013'"),
        ("20130601", "expected a date as YYYY-MM-DD, got '20130601'"),
    ],
)
def test_replay_refuses_a_date_outside_the_data_naming_the_option(
    bootstrap: str, topics: Topics, date: str, message: str
) -> None:
    result = _run("replay", "--prefix", topics.prefix, "--bootstrap", bootstrap, "--date", date)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '--date': {message}" in result.output


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("replay", "--partitions", "0"), "--partitions"),
        (("replay", "--days", "0"), "--days"),
        (("work", "--max-batch", "0"), "--max-batch"),
    ],
)
def test_counts_below_one_are_refused_naming_the_option(
    bootstrap: str, topics: Topics, registry: Registry, args: tuple[str, ...], option: str
) -> None:
    result = _run(*args, "--prefix", topics.prefix, "--bootstrap", bootstrap)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': 0 is not in the range x>=1" in result.output


def test_the_worker_count_from_the_environment_is_checked(
    bootstrap: str, topics: Topics, registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLPATTERNS_STREAM_WORKERS", "0")
    with pytest.raises(SettingError, match=r"^MLPATTERNS_STREAM_WORKERS='0': expected an integer >= 1$"):
        build_target(bootstrap=bootstrap, prefix=topics.prefix, registry=registry)
    monkeypatch.setenv("MLPATTERNS_STREAM_WORKERS", "3")
    switch: Any = build_target(bootstrap=bootstrap, prefix=topics.prefix, registry=registry).switch
    assert switch.workers == 3


def test_read_stops_at_exactly_the_limit_within_one_poll(bootstrap: str, topics: Topics) -> None:
    # 200 predictions already on the live topic: the reader's first poll returns many of them at once.
    ensure_topics(bootstrap, {topics.events: 1, topics.predictions("v1"): 1})
    out = producer(bootstrap, "test-read-limit")
    for i in range(200):
        body = {
            "flight_id": f"f{i}",
            "model_version": "v1",
            "probability": 0.25,
            "sched_ts": 1_360_836_000 + i,
        }
        out.send(topics.predictions("v1"), json.dumps(body).encode())
    out.flush()
    out.close()
    Control(bootstrap, topics).publish("v1")
    result = CliRunner().invoke(
        stream,
        ["read", "--prefix", topics.prefix, "--bootstrap", bootstrap, "--limit", "5", "--idle-exit", "10"],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [v["flight_id"] for v in lines] == [f"f{i}" for i in range(5)]
    assert "served 5 predictions" in result.stderr
