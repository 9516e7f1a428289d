"""`scripts/demo.py --home DIR` wipes DIR first: only when the demo made it, never someone's files."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "demo.py"


@pytest.fixture(scope="module")
def demo(load_script: Callable[[str], ModuleType]) -> ModuleType:
    return load_script("demo")


def test_a_directory_the_demo_did_not_make_is_refused_untouched(tmp_path: Path) -> None:
    home = tmp_path / "someone"
    (home / "thesis").mkdir(parents=True)
    (home / "thesis" / "chapter1.tex").write_text("years of work")
    run = subprocess.run(
        [sys.executable, str(SCRIPT), "--home", str(home)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2
    assert (
        f"refusing to wipe --home {home}: it is not empty and no demo run made it "
        "(it has no .mlpatterns-demo file)"
    ) in run.stderr
    assert (home / "thesis" / "chapter1.tex").read_text() == "years of work"
    assert not (home / ".mlpatterns-demo").exists()


def test_prepare_home_wipes_nothing_it_did_not_make(demo: ModuleType, tmp_path: Path) -> None:
    home = tmp_path / "user"
    home.mkdir()
    (home / ".bashrc").write_text("mine")
    with pytest.raises(ValueError, match=r"refusing to wipe --home .*user: it is not empty"):
        demo.prepare_home(home, tmp_path / "default")
    assert [p.name for p in home.iterdir()] == [".bashrc"]


def test_a_new_empty_or_marked_directory_is_prepared(demo: ModuleType, tmp_path: Path) -> None:
    default = tmp_path / "default"
    new = tmp_path / "new" / "home"
    demo.prepare_home(new, default)
    assert [p.name for p in new.iterdir()] == [".mlpatterns-demo"]
    (new / "registry").mkdir()  # what the last run left behind: wiped, marker written again
    demo.prepare_home(new, default)
    assert [p.name for p in new.iterdir()] == [".mlpatterns-demo"]
    empty = tmp_path / "empty"
    empty.mkdir()
    demo.prepare_home(empty, default)
    assert [p.name for p in empty.iterdir()] == [".mlpatterns-demo"]


def test_the_default_home_of_older_runs_is_still_wiped(demo: ModuleType, tmp_path: Path) -> None:
    default = tmp_path / "default"
    (default / "registry").mkdir(parents=True)  # made before the marker existed
    demo.prepare_home(default, default)
    assert [p.name for p in default.iterdir()] == [".mlpatterns-demo"]


def test_a_file_is_not_a_home(demo: ModuleType, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        demo.prepare_home(path, tmp_path / "default")
    assert path.read_text() == "keep"
