"""compare_table: the shadow comparison people read, at each version's own decision threshold."""

from __future__ import annotations

import re

import numpy as np

from patterns.streaming.switch import compare_table


def test_compare_table_judges_each_version_at_its_own_cut() -> None:
    live = np.array([0.10, 0.30, 0.30, 0.60])
    cand = np.array([0.10, 0.30, 0.45, 0.70])
    table = compare_table("v1", "v2", live, cand, cuts=(0.25, 0.4))
    rows = dict(re.split(r"\s{2,}", line.strip()) for line in table.splitlines())
    # v1 says delayed for 0.30, 0.30, 0.60; v2 (from 0.4) for 0.45, 0.70: flight 2 differs.
    assert rows["decision agreement"] == "75.00%"
    assert rows["v1 mean score / delayed from 0.250"] == "0.325 / 75.0%"
    assert rows["v2 mean score / delayed from 0.400"] == "0.388 / 50.0%"
    # At one shared 0.5 the same scores agree everywhere: the cut is what this comparison is about.
    assert "100.00%" in compare_table("v1", "v2", live, cand)
    assert compare_table("v1", "v2", live[:0], cand[:0]) == "v1 vs v2: no flight scored by both yet"
