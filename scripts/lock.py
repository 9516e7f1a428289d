"""Write the sha256 of every file a pin in requirements.lock may install, after its pin.

`make venv` installs the lock with ``pip --require-hashes``: pip then refuses any file whose hash
is not listed (a re-uploaded, tampered or corrupted download) instead of installing it. This script
does not resolve anything: the versions stay as pinned (resolved once with pip, then frozen). For
each pin it asks the package index (PEP 691 JSON, the same index pip uses) for that version's
files and keeps those a CPython 3.11 or later can install (the sdist and the matching wheels, for
every platform), so the lock works on a developer's Mac as it does on the Linux CI.

To change a version: edit its pin (or take it from `pip freeze` of a venv where pip resolved the
change), run this script, then `make venv`.

    .venv/bin/python scripts/lock.py [--lock requirements.lock] [--index https://pypi.org/simple]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")
_OLDEST_MINOR = 11  # pyproject.toml: requires-python = ">=3.11"


def read_pins(text: str) -> dict[str, str]:
    """``{name: version}`` of a lock, with or without hashes; other lines (comments) are skipped."""
    pins: dict[str, str] = {}
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            name, version = match.groups()
            if name in pins:
                raise ValueError(f"{name} is pinned twice")
            pins[name] = version
    return pins


def read_hashes(text: str) -> dict[str, list[str]]:
    """``{name: [sha256, ...]}``: the hashes listed under each pin (continuation lines included)."""
    hashes: dict[str, list[str]] = {}
    listed: list[str] = []
    for line in text.splitlines():
        match = _PIN.match(line.strip())
        if match:
            listed = hashes[match.group(1)] = []
        listed.extend(re.findall(r"--hash=sha256:([0-9a-f]{64})", line))
    return hashes


def _installable(filename: str, name: str, version: str) -> bool:
    """A file of exactly this release that some CPython >= 3.11 can install."""
    try:
        wheel_name, wheel_version, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        try:
            sdist_name, sdist_version = parse_sdist_filename(filename)
        except InvalidSdistFilename:
            return False  # eggs, .exe installers
        return sdist_name == canonicalize_name(name) and sdist_version == Version(version)
    if wheel_name != canonicalize_name(name) or wheel_version != Version(version):
        return False
    for tag in tags:
        interpreter = tag.interpreter  # "py2.py3" comes as two tags
        if interpreter.startswith("py3"):
            return True
        minor = interpreter[3:]
        cpython = interpreter.startswith("cp3") and minor.isdigit()
        if cpython and (int(minor) >= _OLDEST_MINOR or tag.abi == "abi3"):
            return True
    return False


def release_hashes(index: str, name: str, version: str) -> list[str]:
    """The sorted sha256 of this release's installable files, from the index's JSON page."""
    request = urllib.request.Request(
        f"{index.rstrip('/')}/{canonicalize_name(name)}/",
        headers={"Accept": "application/vnd.pypi.simple.v1+json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        page = json.load(response)
    found = {
        entry["hashes"]["sha256"]
        for entry in page["files"]
        if "sha256" in entry.get("hashes", {})
        and not entry.get("yanked")
        and _installable(entry["filename"], name, version)
    }
    if not found:
        raise LookupError(f"{name}=={version}: the index lists no installable file with a sha256")
    return sorted(found)


def render(pins: dict[str, str], hashes: dict[str, list[str]]) -> str:
    lines = [
        "# Exact versions, resolved once with pip and frozen; each with the sha256 of every file",
        "# it may install (pip --require-hashes). Regenerate the hashes with scripts/lock.py.",
    ]
    for name in sorted(pins, key=canonicalize_name):
        lines.append(f"{name}=={pins[name]} \\")
        lines.extend(f"    --hash=sha256:{h} \\" for h in hashes[name][:-1])
        lines.append(f"    --hash=sha256:{hashes[name][-1]}")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock", help="the lock file")
    parser.add_argument("--index", default="https://pypi.org/simple", help="a PEP 691 package index")
    args = parser.parse_args(argv)
    pins = read_pins(args.lock.read_text())
    with ThreadPoolExecutor(8) as pool:
        found = dict(zip(pins, pool.map(lambda n: release_hashes(args.index, n, pins[n]), pins), strict=True))
    args.lock.write_text(render(pins, found))
    total = sum(len(h) for h in found.values())
    print(f"{args.lock.name}: {len(pins)} pins, {total} file hashes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
