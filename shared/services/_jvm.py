"""Java and Maven for the JVM servers: find Java 17+, fetch a POM's runtime jars from Maven Central.

Jars are copied with maven-dependency-plugin into ``<service>/libs``; Maven caches them in ``~/.m2``
(the one thing CI keeps between runs), so only the first run on a machine downloads anything.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from shared.services import Progress, ServiceError

__all__ = ["fetch_jars", "java_binary"]

_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
_NETWORK_HINTS = (
    "could not transfer",
    "unknown host",
    "connect timed out",
    "connection refused",
    "no route to host",
    "network is unreachable",
    "could not resolve",
)


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
    """Make ``libs`` hold exactly the runtime jars of ``pom`` (skipped when the POM is unchanged)."""
    digest = hashlib.sha256(pom.read_bytes()).hexdigest()
    stamp = libs / ".pom.sha256"
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise ServiceError("Maven (mvn) not found: install it with `apt-get install -y maven`.")
    staging = libs.with_name(libs.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    progress(f"  fetching jars for {pom.name} from Maven Central (cached in ~/.m2 afterwards)...")
    began = time.monotonic()
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(pom),
        f"{_DEPENDENCY_PLUGIN}:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={staging}",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=pom.parent)
    if res.returncode != 0:
        out = res.stdout + res.stderr
        tail = "\n".join(_useful_lines(out)[:12])
        if any(hint in out.lower() for hint in _NETWORK_HINTS):
            raise ServiceError(
                f"cannot reach Maven Central to fetch {pom.name} (is the network up?):\n{tail}"
            )
        raise ServiceError(f"mvn copy-dependencies failed for {pom.name} (exit {res.returncode}):\n{tail}")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    stamp.write_text(digest + "\n")
    size = sum(f.stat().st_size for f in libs.glob("*.jar")) / 1e6
    jars = len(list(libs.glob("*.jar")))
    progress(f"  {jars} jars, {size:.0f} MB in {time.monotonic() - began:.0f}s")


def _useful_lines(output: str) -> list[str]:
    # Maven ends every failure with the same boilerplate; keep the lines that say what went wrong.
    boiler = ("to see the full stack", "re-run maven", "for more information", "[help")
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in output.splitlines()]
    bodies = [ln.removeprefix("[ERROR]").strip() for ln in lines]
    pairs = zip(lines, bodies, strict=True)
    kept = [ln for ln, body in pairs if body and not body.lower().startswith(boiler)]
    return kept or lines[-20:]
