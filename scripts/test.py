"""`make test`: the suite in two pytest processes at once, the server half and the rest.

The server tests wait a lot (on Kafka rebalances, HBase, nginx reloads, paced feeds, fixed-length
load runs); the others (training, exports, property tests) are CPU-bound and need no server. Side
by side on two cores in a fresh clone, the halves took 8:25 and 4:48 of wall time. Nothing is
shared between the halves but the servers (each test has its own topic, key and table prefixes)
and the source tree; each half gets its own temporary directory.

The server half prints as it goes; the other half's output follows when both are done. Arguments
go to both halves (a path or ``-k`` narrows each; a half left with no test is fine). With ``-m``
among them, or ``--serial`` (or MLPATTERNS_TEST_SERIAL=1), one pytest runs everything as given.

    .venv/bin/python scripts/test.py [--serial] [PYTEST ARGS ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NO_TESTS = 5  # pytest's exit status when a selection holds no test


def _pytest(*args: str) -> list[str]:
    return [sys.executable, "-m", "pytest", *args]


def main(argv: list[str]) -> int:
    serial = "--serial" in argv or os.environ.get("MLPATTERNS_TEST_SERIAL", "") not in ("", "0")
    args = [a for a in argv if a != "--serial"]
    if serial or any(a.startswith("-m") for a in args):
        return subprocess.call(_pytest(*args), cwd=ROOT)
    with tempfile.TemporaryDirectory(prefix="mlpatterns-tests-") as tmp:
        log = Path(tmp) / "units.log"
        # Its own basetemp, and no cache plugin: the two halves never write the same file.
        units_cmd = _pytest("-m", "not servers", "-p", "no:cacheprovider", f"--basetemp={tmp}/units", *args)
        with log.open("w") as out:
            units = subprocess.Popen(units_cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            try:
                servers = subprocess.call(_pytest("-m", "servers", *args), cwd=ROOT)
            finally:
                rest = units.wait()
        print("\n==== the tests that need no server (run alongside the above) ====", flush=True)
        print(log.read_text(), end="", flush=True)
    codes = [c for c in (servers, rest) if c != NO_TESTS]
    if not codes:
        return NO_TESTS
    print(f"==== servers half: exit {servers}; the rest: exit {rest} ====", flush=True)
    return max(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
