"""The one layout of every HTML report, and the pieces the report modules share (formatting only).

A report opens with its title, the verdict in one sentence and the key figures as percentages (what a reader
needs from the first screen); the details, pictures, provenance and config follow below. Every picture is an
inline ``data:`` URI, so a report is one self-contained file that fetches nothing. Every string from a report
dict (paths, names, messages) is escaped here, once, where it enters the page.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pruneguard.policy import policy_table_html
from pruneguard.reports.plots import data_uri

__all__ = [
    "fmt",
    "pct",
    "count",
    "table",
    "figures_table",
    "img",
    "report_page",
    "policy_section",
    "flags_table",
    "run_rows",
    "config_section",
]

_CSS = """body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.pass{color:#1a7f37}.fail{color:#cf222e}
img{max-width:100%}pre{background:#f6f8fa;padding:1em;overflow:auto;font-size:12px}"""


def fmt(v: Any) -> str:
    """A table cell: ``–`` for a missing value, floats with four decimals, anything else as ``str``."""
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4f}"
    return str(v)


def pct(v: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage (``0.123`` -> ``12.3%``; ``–`` when unknown)."""
    return "–" if v is None else f"{float(v):.{digits}%}"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` with its noun, thousands separated and in the right number: ``1 restart``, ``1,000 test images``."""
    return f"{n:,} {noun if n == 1 else plural or noun + 's'}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figures_table(rows: Sequence[Sequence[Any]]) -> str:
    """The key figures under the verdict: ``[label, value]`` rows (values already formatted)."""
    return table(["key figure", "value"], rows)


def img(b64: str, alt: str) -> str:
    """A base64 PNG (see :mod:`pruneguard.reports.plots`) as an inline image."""
    return f"<img alt='{html.escape(alt)}' src='{data_uri(b64)}'>"


def report_page(
    title: str,
    verdict: str,
    *,
    status: Literal["pass", "fail"] | None,
    key_figures: Sequence[str],
    details: Sequence[str],
) -> str:
    """A whole report: the title, ``verdict`` (one plain sentence) as the first paragraph, coloured by
    ``status`` (``None``: no judgement, e.g. an attack's outcome), then ``key_figures`` and ``details`` (HTML)."""
    cls = "verdict" if status is None else f"verdict {status}"
    sections = [f"<p class='{cls}' id='verdict'><strong>{html.escape(verdict)}</strong></p>", *key_figures, *details]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def policy_section(policy: Mapping[str, Any] | None) -> list[str]:
    """The policy's outcome and its rules (see :func:`pruneguard.policy.policy_record`); nothing without one."""
    if not policy:
        return []
    state = "<strong class='pass'>passed</strong>" if policy["passed"] else "<strong class='fail'>failed</strong>"
    return [
        f"<h2>Policy</h2><p>{html.escape(str(policy.get('file')))}: {state}</p>",
        policy_table_html(policy["rules"]),
    ]


def flags_table(flags: Sequence[Mapping[str, Any]]) -> str:
    """The gradient-masking flags raised (a ``model`` column when they name one), or a line saying none was."""
    if not flags:
        return "<p class='pass'>No gradient-masking flag was raised.</p>"
    by_model = any("model" in f for f in flags)
    rows = [[*([f.get("model")] if by_model else []), f["check"], f["message"], json.dumps(f["values"])] for f in flags]
    return table([*(["model"] if by_model else []), "check", "message", "numbers"], rows)


def run_rows(report: Mapping[str, Any]) -> list[list[Any]]:
    """The provenance rows every report ends its facts with: time taken, seed, git commit, start and end."""
    return [
        ["seconds", report.get("seconds")],
        ["seed", report.get("seed")],
        ["git commit", report.get("git_commit")],
        ["started", report.get("started")],
        ["finished", report.get("finished")],
    ]


def config_section(record: Mapping[str, Any]) -> str:
    """The resolved config, versions and anything else needed to rerun, as escaped JSON at the page's end."""
    return "<h2>Config and versions</h2><pre>" + html.escape(json.dumps(record, indent=2, default=str)) + "</pre>"
