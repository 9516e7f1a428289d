"""The HTML report: one self-contained file, plots embedded as base64 PNG (no external assets)."""

from __future__ import annotations

import base64
import html
import io
import json
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from shared.consistency.report import CheckResult, ConsistencyReport

__all__ = ["render_html"]

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
.pass{background:#d9f2d9}.fail{background:#f7caca}.warn,.not_run{background:#fbefc4}
img{max-width:100%;border:1px solid #eee}
"""


def render_html(report: ConsistencyReport) -> str:
    verdict = "PASS" if report.passed else "FAIL"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>mlpatterns consistency report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Train/serve consistency: <span class='{verdict.lower()}'>{verdict}</span></h1>",
        f"<pre>{html.escape(json.dumps(report.context, indent=1, default=str))}</pre>",
    ]
    for check in report.checks:
        parts.append(_section(check))
    parts.append("</body></html>")
    return "\n".join(parts)


def _section(check: CheckResult) -> str:
    out = [f"<h2 class='{check.status}'>{html.escape(check.check)}: {check.status}</h2>"]
    if check.not_run_reason:
        out.append(f"<p><b>Not run:</b> {html.escape(check.not_run_reason)}</p>")
    out += [f"<p>{html.escape(n)}</p>" for n in check.notes]
    if check.findings:
        out.append("<table><tr><th>row</th><th>status</th><th>metrics</th><th>message</th></tr>")
        for f in check.findings:
            metrics = ", ".join(f"{k}={_fmt(v)}" for k, v in f.metrics.items())
            out.append(
                f"<tr class='{f.status}'><td>{html.escape(f.name)}</td><td>{f.status}</td>"
                f"<td>{html.escape(metrics)}</td><td>{html.escape(f.message)}</td></tr>"
            )
        out.append("</table>")
    examples = [(f.name, e) for f in check.findings for e in f.examples]
    if examples:
        out.append("<h3>Mismatching examples</h3><table><tr><th>feature</th><th>example</th></tr>")
        out += [
            f"<tr><td>{html.escape(n)}</td><td>{html.escape(json.dumps(e, default=str))}</td></tr>"
            for n, e in examples
        ]
        out.append("</table>")
    plots = {name: data for name, data in check.plot_data.items() if data}
    if plots:
        out.append(_grid(check, plots))
    return "\n".join(out)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _grid(check: CheckResult, plots: dict[str, dict[str, Any]]) -> str:
    """All plots of a check in one figure: one savefig instead of one per feature keeps it quick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(5, len(plots))
    rows = -(-len(plots) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), dpi=70, squeeze=False)
    try:
        for ax, (name, data) in zip(axes.flat, plots.items(), strict=False):
            if check.check == "drift":
                _histogram(ax, data)
            elif check.check == "features":
                _scatter(ax, np.asarray(data["offline"]), np.asarray(data["served"]), ("offline", "served"))
            else:
                ref, cand = name.split(" vs ", 1)
                _scatter(ax, np.asarray(data["reference"]), np.asarray(data["candidate"]), (ref, cand))
            status = next((f.status for f in check.findings if f.name == name), "pass")
            colour = {"fail": "red", "warn": "darkorange"}.get(status, "black")
            ax.set_title(f"{name} ({status})", fontsize=9, color=colour)
            ax.tick_params(labelsize=7)
        for ax in list(axes.flat)[len(plots) :]:
            ax.set_visible(False)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    what = {"drift": "training vs serving histograms", "features": "served vs offline (mismatching features)"}
    caption = what.get(check.check, "reference vs candidate scores")
    return f"<h3>{caption}</h3><img alt='{check.check} plots' src='data:image/png;base64,{encoded}'>"


def _histogram(ax: Any, data: dict[str, Any]) -> None:
    ref, cur = np.asarray(data["training"]), np.asarray(data["serving"])
    if data["categorical"]:
        values = np.union1d(ref, cur)
        width = 0.4
        ax.bar(values - width / 2, [np.mean(ref == v) for v in values], width, label="training")
        ax.bar(values + width / 2, [np.mean(cur == v) for v in values], width, label="serving")
    else:
        edges = np.histogram_bin_edges(np.concatenate([ref, cur]), bins=30)
        ax.hist(ref, bins=edges, density=True, alpha=0.5, label="training")
        ax.hist(cur, bins=edges, density=True, alpha=0.5, label="serving")
    ax.legend(fontsize=7)


def _scatter(ax: Any, x: np.ndarray, y: np.ndarray, labels: tuple[str, ...]) -> None:
    ax.scatter(x, y, s=3, alpha=0.4)
    finite = np.isfinite(x) & np.isfinite(y)
    if finite.any():
        lo, hi = float(min(x[finite].min(), y[finite].min())), float(max(x[finite].max(), y[finite].max()))
        ax.plot([lo, hi], [lo, hi], "r--", linewidth=0.8)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[-1])
