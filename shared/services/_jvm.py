"""Java and Maven for the JVM servers: find Java 17+, fetch a POM's runtime jars from Maven Central.

Jars are copied with maven-dependency-plugin into ``<service>/libs``; Maven caches them in ``~/.m2``
(the one thing CI keeps between runs), so only the first run on a machine downloads anything.

Nothing is trusted blindly: Maven runs with ``--strict-checksums`` (a download that does not match
its ``.sha1`` fails instead of being cached), every copied jar is checked against the ``.sha1``
Maven keeps beside it in the local repository (a jar truncated there by an older, lenient run has
its directory deleted and is downloaded once more), and ``libs/.manifest`` (name, size, SHA-1 of
each jar) is checked at every install, so a damaged ``libs`` is fetched again instead of started.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from shared.services import Progress, ServiceError

__all__ = ["fetch_jars", "java_binary"]

_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
#: Written into ``libs`` last, with the manifest: the POM they were fetched for.
_STAMP = ".pom.sha256"
#: ``<sha1> <size> <file name>`` per jar, checked at every install.
_MANIFEST = ".manifest"
#: ``dependency:list`` output: coordinates and the local-repository file of every jar.
_LISTING = ".dependencies.txt"
#: Connection-level failures only: "could not resolve" or "could not transfer" alone also cover an
#: artifact that does not exist, a cached "not found" or an HTTP error from the repository.
_NETWORK_HINTS = (
    "unknown host",
    "unknownhostexception",
    "temporary failure in name resolution",
    "name or service not known",
    "connect timed out",
    "connection timed out",
    "read timed out",
    "connection refused",
    "connection reset",
    "no route to host",
    "network is unreachable",
)
#: Maven remembers a failed lookup (a 404, a network error) for the repository's update interval
#: (a day for Central) and fails at once until then, unless run with -U.
_CACHED_FAILURE = re.compile(r"cached in the local repository|resolution is not\s+reattempted", re.I)
#: A download that did not match its checksum (refused by --strict-checksums): worth one more try.
_CHECKSUM_FAILURE = re.compile(r"checksum validation failed|checksum failure", re.I)


def java_binary(minimum: int = 17) -> str:
    """Path of a ``java`` of at least version ``minimum`` (``JAVA_HOME`` first, then ``PATH``)."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    if shutil.which("java"):
        candidates.append(str(shutil.which("java")))
    for java in candidates:
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
        except OSError:
            continue
        match = re.search(r'version "(\d+)', out)
        if match and int(match.group(1)) >= minimum:
            return java
    raise ServiceError(
        f"Java {minimum} not found (looked at JAVA_HOME and PATH: {candidates or 'nothing'}). "
        f"Install it with `apt-get install -y openjdk-{minimum}-jre-headless` or set JAVA_HOME."
    )


def fetch_jars(pom: Path, libs: Path, progress: Progress) -> None:
    """Make ``libs`` hold exactly the runtime jars of ``pom``, verified.

    Skipped when ``libs`` was fetched for this POM and still matches its manifest.
    """
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    problem = libs_problem(libs, digest)
    if problem is None:
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (mvn) not found: install it with `apt-get install -y maven`.")
    if libs.exists():
        progress(f"  {libs}: {problem}; fetching the jars again")
    staging = libs.with_name(libs.name + ".tmp")
    progress(f"  fetching jars for {pom.name} from Maven Central (cached in ~/.m2 afterwards)...")
    began = time.monotonic()
    bad: list[BadJar] = []
    deleted: list[Path] = []
    for _attempt in range(2):
        origins = _copy_dependencies(mvn, pom, staging, progress)
        sums = {jar.name: _sha1(jar) for jar in staging.glob("*.jar")}
        bad = verify_jars(staging, origins, sums)
        if not bad or deleted:
            break
        # A jar damaged in the local repository (e.g. truncated by an interrupted download that a
        # lenient checksum policy let through) is deleted there, so the next run downloads it.
        for jar in bad:
            if jar.artifact_dir is not None:
                progress(f"  {jar.name}: {jar.reason}; deleting {jar.artifact_dir} to download it again")
                shutil.rmtree(jar.artifact_dir, ignore_errors=True)
                deleted.append(jar.artifact_dir)
        if not deleted:
            break  # nothing deleted: another run would copy the same files
    if bad:
        shutil.rmtree(staging, ignore_errors=True)
        lines = "\n".join(f"  {jar.name}: {jar.reason} (from {jar.source or 'unknown'})" for jar in bad)
        again = " also after deleting and fetching them again" if deleted else ""
        raise ServiceError(
            f"damaged jars for {pom.name}{again}:\n{lines}\nDelete their directories from the local "
            "Maven repository (~/.m2/repository) and retry; if it persists, check the disk and any "
            "proxy between here and Maven Central."
        )
    write_manifest(staging, digest, sums)
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    jars = sorted(libs.glob("*.jar"))
    size = sum(f.stat().st_size for f in jars) / 1e6
    progress(f"  {len(jars)} jars, {size:.0f} MB, checksums verified, in {time.monotonic() - began:.0f}s")


# ---- integrity ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BadJar:
    """A copied jar that failed verification, and where Maven had it from."""

    name: str
    reason: str
    source: Path | None = None  # the file in the local repository
    artifact_dir: Path | None = None  # its ``group/artifact/version`` directory, safe to delete


def _sha1(path: Path) -> str:
    digest = hashlib.sha1(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _zip_problem(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            zf.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"not a readable jar ({exc})"
    return None


def parse_listing(text: str) -> dict[str, tuple[str, Path]]:
    """``dependency:list -DoutputAbsoluteArtifactFilename`` lines: file name -> (coordinates, file).

    A line reads ``group:artifact:type[:classifier]:version:scope:/abs/path.jar[ -- module m]``.
    """
    found: dict[str, tuple[str, Path]] = {}
    for line in text.splitlines():
        entry = line.strip().split(" -- ", 1)[0]
        coords, sep, rest = entry.partition(":/")
        if not sep or not rest.endswith(".jar"):
            continue
        path = Path("/" + rest)
        found[path.name] = (coords, path)
    return found


def _artifact_dir(coords: str, path: Path) -> Path | None:
    # Only a directory laid out as <...>/<group path>/<artifact>/<version>/ is ours to delete.
    parts = coords.split(":")
    if len(parts) < 5:
        return None
    group, artifact, version = parts[0], parts[1], parts[-2]
    folder = path.parent
    group_dir = folder.parent.parent
    expected = Path(*group.split("."))
    if folder.name != version or folder.parent.name != artifact:
        return None
    if group_dir.parts[-len(expected.parts) :] != expected.parts:
        return None
    return folder


def verify_jars(
    libs: Path, origins: dict[str, tuple[str, Path]], sums: dict[str, str] | None = None
) -> list[BadJar]:
    """Every jar in ``libs`` checked against the ``.sha1`` beside its origin (else: opens as a zip).

    ``sums``: SHA-1 of the jars by file name, if already computed.
    """
    bad = []
    for jar in sorted(libs.glob("*.jar")):
        coords, source = origins.get(jar.name, ("", None))
        artifact_dir = _artifact_dir(coords, source) if source is not None else None
        reason = None
        checksum = source.with_name(source.name + ".sha1") if source is not None else None
        if checksum is not None and checksum.is_file():
            expected = checksum.read_text(errors="replace").split()[:1]
            actual = (sums or {}).get(jar.name) or _sha1(jar)
            if not expected or expected[0].lower() != actual:
                reason = f"SHA-1 {actual} does not match {checksum.name} ({' '.join(expected) or 'empty'})"
        else:
            reason = _zip_problem(jar)
        if reason is not None:
            bad.append(BadJar(jar.name, reason, source, artifact_dir))
    return bad


def write_manifest(libs: Path, digest: str, sums: dict[str, str] | None = None) -> None:
    """``libs/.manifest`` (sha1, size, name of every jar), then the POM stamp."""
    jars = sorted(libs.glob("*.jar"))
    lines = [f"{(sums or {}).get(j.name) or _sha1(j)} {j.stat().st_size} {j.name}" for j in jars]
    (libs / _MANIFEST).write_text("".join(line + "\n" for line in lines))
    (libs / _STAMP).write_text(digest + "\n")


def libs_problem(libs: Path, digest: str) -> str | None:
    """Why ``libs`` cannot be used as it is for the POM with ``digest`` (None: it can)."""
    stamp, manifest = libs / _STAMP, libs / _MANIFEST
    try:
        stamped = stamp.read_text().strip()
    except OSError:
        return "not fetched yet" if not libs.exists() else "no fetch stamp"
    if stamped != digest:
        return "fetched for another version of the POM"
    try:
        entries = [line.split(" ", 2) for line in manifest.read_text().splitlines() if line.strip()]
    except OSError:
        return f"no {_MANIFEST}"
    if any(len(entry) != 3 for entry in entries):
        return f"unreadable {_MANIFEST}"
    listed = {name: (sha1, size) for sha1, size, name in entries}
    present = {jar.name: jar for jar in libs.glob("*.jar")}
    if missing := sorted(set(listed) - set(present)):
        return f"missing {', '.join(missing[:3])}"
    if extra := sorted(set(present) - set(listed)):
        return f"unexpected {', '.join(extra[:3])}"
    for name, (sha1, size) in sorted(listed.items()):
        jar = present[name]
        if str(jar.stat().st_size) != size:
            return f"{name} is {jar.stat().st_size} bytes, {size} when fetched"
        if _sha1(jar) != sha1:
            return f"{name} does not match its SHA-1 from the fetch"
    return None


# ---- Maven -------------------------------------------------------------------------------------


def _copy_dependencies(mvn: str, pom: Path, staging: Path, progress: Progress) -> dict[str, tuple[str, Path]]:
    """Run copy-dependencies (and list, for the origins) into ``staging``; ServiceError on failure.

    Retries once when Maven failed on a lookup it had cached (with -U, which forces a new one) or
    on a download that did not match its checksum.
    """
    listing = staging / _LISTING
    goals = [
        "-f",
        str(pom),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        f"{_DEPENDENCY_PLUGIN}:list",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
        "-DoutputAbsoluteArtifactFilename=true",
        f"-DoutputFile={listing}",
    ]

    def run(*flags: str) -> tuple[int, str]:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        cmd = [mvn, "-B", "-q", "--strict-checksums", *flags, *goals]
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=pom.parent)
        return res.returncode, res.stdout + res.stderr

    code, out = run()
    forced = False
    if code != 0 and _CACHED_FAILURE.search(out):
        progress("  Maven remembers an earlier failed lookup (cached in ~/.m2): retrying with -U")
        code, out = run("-U")
        forced = True
    elif code != 0 and _CHECKSUM_FAILURE.search(out):
        progress("  a download did not match its checksum: retrying once")
        code, out = run()
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        raise ServiceError(maven_error(pom.name, code, out, retried_with_u=forced))
    try:
        return parse_listing(listing.read_text())
    except OSError:
        return {}


def maven_error(pom_name: str, code: int, output: str, retried_with_u: bool = False) -> str:
    """What went wrong in Maven's own words; a network problem only when Maven says so."""
    tail = "\n".join(_useful_lines(output)[:12])
    low = output.lower()
    if any(hint in low for hint in _NETWORK_HINTS):
        return f"cannot reach Maven Central to fetch {pom_name} (a network error):\n{tail}"
    note = " (also after retrying with -U)" if retried_with_u else ""
    return f"mvn could not fetch the jars of {pom_name} (exit {code}){note}; Maven says:\n{tail}"


def _useful_lines(output: str) -> list[str]:
    # Maven ends every failure with the same boilerplate; keep the lines that say what went wrong.
    boiler = ("to see the full stack", "re-run maven", "for more information", "[help")
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in output.splitlines()]
    bodies = [ln.removeprefix("[ERROR]").strip() for ln in lines]
    pairs = zip(lines, bodies, strict=True)
    kept = [ln for ln, body in pairs if body and not body.lower().startswith(boiler)]
    return kept or lines[-20:]
