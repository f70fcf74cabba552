"""Shared pieces of the bilingual (Japanese / English) HTML pages: the inline stylesheet, the "ja / en"
label, a table. Pages are self-contained: inline CSS and SVG, no scripts, no external links."""

from __future__ import annotations

from html import escape

CSS = """body{font-family:'Noto Sans CJK JP','Hiragino Sans',sans-serif;margin:2em;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:2px solid #335;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{border:1px solid #999;padding:3px 7px}
th{background:#eef}.met{background:#dfd}.not-met{background:#fdd}.not-evidenced{background:#ffd}
.ok{color:#060}.bad{color:#a00}small{color:#555}svg.chart{display:block;margin:.6em 0;max-width:100%;height:auto}
.v-PASS{background:#dfd}.v-WARN{background:#ffe9b3}.v-FAIL{background:#fdd}.v-SUSPECT{background:#ecd9f5}"""


def t(ja: str, en: str) -> str:
    """'ja / en', escaped."""
    return f"{escape(ja)} / {escape(en)}"


def table(head: list[str], rows: list[list[str]], raw: bool = False) -> str:
    """A table; head cells are HTML, row cells are escaped unless raw."""
    out = ["<table><tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{c if raw else escape(str(c))}</td>" for c in row) + "</tr>")
    return "".join(out) + "</table>"
