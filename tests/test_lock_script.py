"""requirements.lock and scripts/lock.py: every pin hashed, the venv is the lock, the files kept."""

from __future__ import annotations

import http.server
import importlib.metadata
import importlib.util
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"


@pytest.fixture(scope="module")
def lock(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("lock")


def test_every_pin_has_a_hash_and_the_file_is_what_the_script_writes(lock: ModuleType) -> None:
    text = LOCK.read_text()
    pins, hashes = lock.read_pins(text), lock.read_hashes(text)
    assert len(pins) > 100 and pins.keys() == hashes.keys()
    assert all(hashes.values()), [name for name, found in hashes.items() if not found]
    # Hand edits (a pin added without hashes, lines reordered) would break this round trip.
    assert lock.render(pins, hashes) == text


def test_the_venv_holds_exactly_the_pinned_versions(lock: ModuleType) -> None:
    pins = lock.read_pins(LOCK.read_text())
    installed = {name: importlib.metadata.version(name) for name in pins}
    assert installed == pins


def test_a_pin_twice_is_refused(lock: ModuleType) -> None:
    with pytest.raises(ValueError, match="numpy is pinned twice"):
        lock.read_pins("numpy==2.4.6\nnumpy==2.4.5\n")


@pytest.mark.parametrize(
    ("filename", "kept"),
    [
        ("numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.whl", True),
        ("numpy-2.4.6-cp313-cp313-macosx_14_0_arm64.whl", True),
        ("numpy-2.4.6-cp310-cp310-manylinux_2_27_x86_64.whl", False),  # Python 3.10
        ("numpy-2.4.6-pp311-pypy311_pp73-manylinux_2_27_x86_64.whl", False),  # PyPy
        ("numpy-2.4.5-cp311-cp311-manylinux_2_27_x86_64.whl", False),  # another release
        ("numpy-2.4.6.tar.gz", True),
        ("orjson-2.4.6-cp38-abi3-manylinux_2_17_x86_64.whl", False),  # another project
        ("numpy-2.4.6-cp38-abi3-win_amd64.whl", True),  # the stable ABI runs on 3.11
        ("numpy-2.4.6-py2.py3-none-any.whl", True),
        ("numpy-2.4.6-py2.7.egg", False),
    ],
)
def test_files_a_supported_cpython_can_install_are_kept(lock: ModuleType, filename: str, kept: bool) -> None:
    assert lock._installable(filename, "numpy", "2.4.6") is kept


@pytest.fixture
def index(tmp_path: Path) -> Iterator[str]:
    """A PEP 691 JSON index on 127.0.0.1 with one project: what pypi.org/simple answers, smaller."""
    files = [
        ("demo_pkg-1.0-py3-none-any.whl", "a" * 64, False),
        ("demo_pkg-1.0.tar.gz", "b" * 64, False),
        ("demo_pkg-1.0-cp39-cp39-win_amd64.whl", "c" * 64, False),
        ("demo_pkg-0.9-py3-none-any.whl", "d" * 64, False),
        ("demo_pkg-1.0-cp312-cp312-macosx_11_0_arm64.whl", "e" * 64, True),  # yanked
    ]
    page = {
        "meta": {"api-version": "1.0"},
        "name": "demo-pkg",
        "files": [{"filename": f, "hashes": {"sha256": h}, "yanked": y} for f, h, y in files],
    }

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            known = self.path == "/simple/demo-pkg/"
            body = json.dumps(page).encode() if known else b"not found"
            self.send_response(200 if known else 404)
            self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    thread.join()


def test_the_script_hashes_a_lock_from_the_index(lock: ModuleType, index: str, tmp_path: Path) -> None:
    path = tmp_path / "requirements.lock"
    path.write_text("# resolved by hand\nDemo_Pkg==1.0\n")
    assert lock.main(["--lock", str(path), "--index", index]) == 0
    assert path.read_text().splitlines()[2:] == [
        "Demo_Pkg==1.0 \\",
        f"    --hash=sha256:{'a' * 64} \\",
        f"    --hash=sha256:{'b' * 64}",
    ]
    assert lock.main(["--lock", str(path), "--index", index]) == 0  # a hashed lock reads back
    assert lock.read_hashes(path.read_text()) == {"Demo_Pkg": ["a" * 64, "b" * 64]}
    path.write_text("demo-pkg==2.0\n")
    with pytest.raises(LookupError, match=r"demo-pkg==2\.0: the index lists no installable file"):
        lock.main(["--lock", str(path), "--index", index])
