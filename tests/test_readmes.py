"""Every ```python block of every README runs, as written, in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = sorted([ROOT / "README.md", *ROOT.glob("patterns/*/README.md"), *ROOT.glob("shared/**/README.md")])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    found = []
    for readme in READMES:
        for i, match in enumerate(BLOCK.finditer(readme.read_text())):
            found.append((f"{readme.relative_to(ROOT)}#{i + 1}", match.group(1)))
    return found


def test_the_top_level_readme_has_python_examples_and_both_commands() -> None:
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert any(name.startswith("README.md#") for name, _ in _blocks())


@pytest.mark.parametrize(("name", "code"), _blocks(), ids=[name for name, _ in _blocks()])
def test_readme_code_block_runs(name: str, code: str, tmp_path: Path) -> None:
    env = os.environ | {"MLPATTERNS_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, f"{name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
