"""Every ```python block of every README runs, as written, in a fresh interpreter.

Running a block does not run the bodies of the functions it only defines, so those must not use
names the block never defines either, unless the block says on its first line that it is a sketch
(``# sketch ...``): an outline whose bodies call the reader's own infrastructure.
"""

from __future__ import annotations

import builtins
import os
import re
import subprocess
import symtable
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
READMES = sorted([ROOT / "README.md", *ROOT.glob("patterns/*/README.md"), *ROOT.glob("shared/**/README.md")])
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
SKETCH = "# sketch"


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


def _undefined_in_function_bodies(code: str) -> set[str]:
    """Global names some function of ``code`` reads that the block neither assigns nor imports."""
    top = symtable.symtable(code, "<readme>", "exec")
    defined = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    defined |= set(dir(builtins))
    missing: set[str] = set()
    tables = list(top.get_children())
    while tables:
        table = tables.pop()
        tables.extend(table.get_children())
        if table.get_type() == "function":
            missing |= {s.get_name() for s in table.get_symbols() if s.is_referenced() and s.is_global()}
    return missing - defined


def test_undefined_names_are_caught_in_function_bodies() -> None:
    code = "import os\nX = 1\ndef f(a):\n    b = a + X\n    return os.sep, b, len(b), start_worker(b)\n"
    assert _undefined_in_function_bodies(code) == {"start_worker"}


COMPLETE = [(name, code) for name, code in _blocks() if not code.startswith(SKETCH)]


@pytest.mark.parametrize(("name", "code"), COMPLETE, ids=[name for name, _ in COMPLETE])
def test_readme_functions_use_only_defined_names_unless_a_sketch(name: str, code: str) -> None:
    missing = _undefined_in_function_bodies(code)
    assert not missing, f"{name} uses undefined {sorted(missing)}: define them or start it with {SKETCH!r}"
