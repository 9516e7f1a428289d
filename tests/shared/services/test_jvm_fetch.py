"""Fetching the JVM servers' jars (``shared.services._jvm.fetch_jars``) against a stand-in ``mvn``.

The stand-in copies jars from a fake local repository (``repo/``), "downloading" missing ones from a
fake Maven Central (``central/``), and writes the ``dependency:list`` file; it never touches the
network or ``~/.m2``, and no server is started.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from shared.services import ServiceError, _jvm

#: group, artifact, version of the stand-in POM's dependencies.
_ARTIFACTS = [("org.example", "alpha", "1.0"), ("org.example.deep", "beta", "2.0")]

_FAKE_MVN = textwrap.dedent(
    """\
    import hashlib, json, os, shutil, sys
    from pathlib import Path

    state = Path(os.environ["FAKE_MVN_STATE"])
    args = sys.argv[1:]
    with (state / "calls.jsonl").open("a") as fh:
        fh.write(json.dumps(args) + "\\n")
    mode = (state / "mode").read_text().strip() if (state / "mode").exists() else ""
    if mode == "cached" and "-U" not in args:
        print("[ERROR] Failed to execute goal on project x: Could not resolve dependencies for project "
              "t:x:pom:1: org.example:alpha:jar:1.0 was not found in https://repo.maven.apache.org/maven2 "
              "during a previous attempt. This failure was cached in the local repository and "
              "resolution is not reattempted until the update interval of central has elapsed or "
              "updates are forced -> [Help 1]")
        print("[ERROR] To see the full stack trace of the errors, re-run Maven with the -e switch.")
        sys.exit(1)
    if mode == "checksum" and len((state / "calls.jsonl").read_text().splitlines()) == 1:
        print("[ERROR] Failed to execute goal on project x: Could not resolve dependencies for project "
              "t:x:pom:1: Could not transfer artifact org.example:alpha:jar:1.0 from/to central "
              "(https://repo.maven.apache.org/maven2): Checksum validation failed, expected 1 but is 2")
        sys.exit(1)
    if mode == "missing":
        print("[ERROR] Failed to execute goal on project x: Could not resolve dependencies for project "
              "t:x:pom:1: Could not find artifact org.example:alpha:jar:1.0 in central "
              "(https://repo.maven.apache.org/maven2) -> [Help 1]")
        sys.exit(1)
    opts = dict(a[2:].split("=", 1) for a in args if a.startswith("-D") and "=" in a)
    out = Path(opts["outputDirectory"])
    out.mkdir(parents=True, exist_ok=True)
    lines = ["", "The following files have been resolved:"]
    for group, artifact, version in json.loads((state / "artifacts.json").read_text()):
        name = f"{artifact}-{version}.jar"
        folder = state / "repo" / Path(*group.split(".")) / artifact / version
        if not (folder / name).exists():  # "download" it, with the checksum Central publishes
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(state / "central" / name, folder / name)
            shutil.copy(state / "central" / (name + ".sha1"), folder / (name + ".sha1"))
        shutil.copy(folder / name, out / name)
        lines.append(f"   {group}:{artifact}:jar:{version}:compile:{folder / name} -- module {artifact}")
    if "outputFile" in opts:
        Path(opts["outputFile"]).write_text("\\n".join(lines) + "\\n")
    """
)


def _jar(path: Path, payload: str) -> bytes:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        zf.writestr("Payload.class", payload * 2000)
    return path.read_bytes()


class FakeMaven:
    def __init__(self, root: Path) -> None:
        self.state = root / "mvn-state"
        self.central = self.state / "central"
        self.repo = self.state / "repo"
        self.central.mkdir(parents=True)
        self.good: dict[str, bytes] = {}
        for _group, artifact, version in _ARTIFACTS:
            name = f"{artifact}-{version}.jar"
            self.good[name] = _jar(self.central / name, artifact)
            (self.central / (name + ".sha1")).write_text(hashlib.sha1(self.good[name]).hexdigest() + "\n")
        (self.state / "artifacts.json").write_text(json.dumps(_ARTIFACTS))
        self.pom = root / "x.pom.xml"
        self.pom.write_text("<project/>\n")
        self.libs = root / "service" / "libs"

    def repo_jar(self, name: str) -> Path:
        group, artifact, version = next(a for a in _ARTIFACTS if name.startswith(a[1] + "-"))
        return self.repo / Path(*group.split(".")) / artifact / version / name

    def calls(self) -> list[list[str]]:
        path = self.state / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def mode(self, mode: str) -> None:
        (self.state / "mode").write_text(mode)

    def fetch(self) -> list[str]:
        notes: list[str] = []
        _jvm.fetch_jars(self.pom, self.libs, notes.append)
        return notes

    def libs_are_good(self) -> bool:
        jars = {p.name: p.read_bytes() for p in self.libs.glob("*.jar")}
        return jars == self.good


@pytest.fixture()
def maven(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeMaven:
    fake = FakeMaven(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "mvn"
    script.write_text(f"#!{sys.executable}\n{_FAKE_MVN}")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_MVN_STATE", str(fake.state))
    return fake


def test_jars_are_fetched_with_strict_checksums_then_reused(maven: FakeMaven) -> None:
    maven.fetch()
    assert maven.libs_are_good()
    assert "--strict-checksums" in maven.calls()[0]
    assert (maven.libs / ".manifest").is_file()
    maven.fetch()
    assert len(maven.calls()) == 1, "an intact libs for the same POM must not be fetched again"


def test_a_truncated_jar_in_the_local_repository_is_deleted_and_downloaded_again(
    maven: FakeMaven,
) -> None:
    # What a lenient (checksum policy "warn") run leaves behind: a cut download beside a good .sha1.
    bad = maven.repo_jar("alpha-1.0.jar")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(maven.good["alpha-1.0.jar"][:500])
    (bad.parent / "alpha-1.0.jar.sha1").write_text((maven.central / "alpha-1.0.jar.sha1").read_text())

    notes = maven.fetch()
    assert maven.libs_are_good()
    assert bad.read_bytes() == maven.good["alpha-1.0.jar"], "the local repository is repaired"
    assert len(maven.calls()) == 2
    assert any("alpha-1.0.jar" in n and "deleting" in n for n in notes), notes


def test_a_jar_that_stays_damaged_fails_naming_it(maven: FakeMaven) -> None:
    (maven.central / "beta-2.0.jar").write_bytes(b"not a jar")  # Central (or a proxy) serves junk
    with pytest.raises(ServiceError, match=r"damaged jars .*\n  beta-2\.0\.jar: SHA-1"):
        maven.fetch()
    assert len(maven.calls()) == 2
    assert not maven.libs.exists()


@pytest.mark.parametrize("damage", ["truncate", "same-size", "remove", "add"])
def test_a_damaged_libs_dir_is_fetched_again(maven: FakeMaven, damage: str) -> None:
    maven.fetch()
    jar = maven.libs / "alpha-1.0.jar"
    if damage == "truncate":
        jar.write_bytes(jar.read_bytes()[:100])
    elif damage == "same-size":
        data = bytearray(jar.read_bytes())
        data[len(data) // 2] ^= 0xFF
        jar.write_bytes(bytes(data))
    elif damage == "remove":
        jar.unlink()
    else:
        (maven.libs / "stray-1.0.jar").write_bytes(b"x")
    notes = maven.fetch()
    assert len(maven.calls()) == 2
    assert maven.libs_are_good()
    assert any("fetching the jars again" in n for n in notes), notes


def test_libs_of_an_older_version_without_manifest_are_fetched_again(maven: FakeMaven) -> None:
    maven.fetch()
    (maven.libs / ".manifest").unlink()
    maven.fetch()
    assert len(maven.calls()) == 2


def test_a_failure_maven_cached_is_retried_with_updates_forced(maven: FakeMaven) -> None:
    maven.mode("cached")
    notes = maven.fetch()
    calls = maven.calls()
    assert len(calls) == 2 and "-U" not in calls[0] and "-U" in calls[1]
    assert maven.libs_are_good()
    assert any("-U" in n for n in notes)


def test_a_download_refused_for_its_checksum_is_tried_once_more(maven: FakeMaven) -> None:
    maven.mode("checksum")
    maven.fetch()
    assert len(maven.calls()) == 2
    assert all("--strict-checksums" in call for call in maven.calls())
    assert maven.libs_are_good()


def test_a_missing_artifact_is_reported_in_mavens_words_not_as_a_network_problem(
    maven: FakeMaven,
) -> None:
    maven.mode("missing")
    with pytest.raises(ServiceError) as err:
        maven.fetch()
    message = str(err.value)
    assert "Could not find artifact org.example:alpha:jar:1.0" in message
    assert "network" not in message and "re-run Maven" not in message


def test_only_connection_failures_are_called_network_problems() -> None:
    cached = (
        "[ERROR] Failed to execute goal on project x: Could not resolve dependencies for project "
        "t:x:pom:1: org.slf4j:slf4j-api:jar:99 was not found in https://repo.maven.apache.org/maven2 "
        "during a previous attempt. This failure was cached in the local repository"
    )
    assert "network" not in _jvm.maven_error("x.pom.xml", 1, cached, retried_with_u=True)
    assert "also after retrying with -U" in _jvm.maven_error("x.pom.xml", 1, cached, retried_with_u=True)
    offline = (
        "[ERROR] Failed to execute goal on project x: Could not resolve dependencies for project "
        "t:x:pom:1: Could not transfer artifact a:b:jar:1 from/to central "
        "(https://repo.maven.apache.org/maven2): Unknown host repo.maven.apache.org"
    )
    assert "network error" in _jvm.maven_error("x.pom.xml", 1, offline)


def test_parse_listing_and_which_directories_may_be_deleted(tmp_path: Path) -> None:
    jar = tmp_path / "repo/org/apache/kafka/kafka-clients/4.1.1/kafka-clients-4.1.1.jar"
    text = (
        "\nThe following files have been resolved:\n"
        f"   org.apache.kafka:kafka-clients:jar:4.1.1:compile:{jar} -- module kafka.clients (auto)\n"
        "   none\n"
    )
    origins = _jvm.parse_listing(text)
    assert origins == {"kafka-clients-4.1.1.jar": ("org.apache.kafka:kafka-clients:jar:4.1.1:compile", jar)}
    coords, path = origins["kafka-clients-4.1.1.jar"]
    assert _jvm._artifact_dir(coords, path) == jar.parent
    # A file outside the group/artifact/version layout (e.g. a system-scope jar) is never deleted.
    assert _jvm._artifact_dir(coords, tmp_path / "lib" / "kafka-clients-4.1.1.jar") is None
    assert _jvm._artifact_dir("org.other:kafka-clients:jar:4.1.1:compile", path) is None
