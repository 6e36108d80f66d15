"""A usage report (``llmgw.usage.report_data.build``) as Markdown, HTML, CSV or JSON.

The HTML is one self-contained file: inline CSS, inline SVG charts (usage over time, the
previous period against this one, providers compared), no script and nothing fetched; a print
stylesheet keeps charts and tables whole on A4. Costs are shown per currency, never added.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from html import escape
from typing import Any

import orjson

from llmgw.usage import report_svg

__all__ = ["FORMATS", "render"]

FORMATS = ("table", "md", "html", "csv", "json")


def money(costs: dict[str, Any]) -> str:
    """``12.34 RUB + 0.56 USD`` (``-`` for none): never one sum across currencies."""
    parts = [f"{Decimal(str(v)):.2f} {c}" for c, v in sorted(costs.items()) if Decimal(str(v))]
    return " + ".join(parts) or "-"


def change(v: float | None) -> str:
    """``+12.5%``, ``-3.0%`` (``+0.0%`` for nothing against nothing) or ``new`` (something
    where the previous period had nothing)."""
    return "new" if v is None else f"{v:+.1%}"


def _md_table(head: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return out


def _provider_rows(rep: dict[str, Any]) -> list[list[Any]]:
    return [
        [p["provider"] or "-", p["requests"], f"{p['error_share']:.1%}", p["total_tokens"],
         money(p["costs"]), p["avg_latency_ms"], p["p95_latency_ms"]]
        for p in rep["providers"]
    ]  # fmt: skip


def _model_rows(rep: dict[str, Any]) -> list[list[Any]]:
    return [
        [m["model"], m["requests"], f"{m['error_share']:.1%}", m["total_tokens"], money(m["costs"])]
        for m in rep["models"]
    ]


def _key_rows(rep: dict[str, Any]) -> list[list[Any]]:
    return [
        [f"{k['key_name'] or '-'} ({k['key_prefix'] or 'no key'})", k["requests"], k["total_tokens"],
         money(k["costs"])]
        for k in rep["keys"]
    ]  # fmt: skip


def _summary(rep: dict[str, Any]) -> list[list[Any]]:
    t, p, tr = rep["totals"], rep["previous"], rep["trend"]
    rows = [
        ["requests", t["requests"], p["requests"], change(tr["requests"])],
        ["errors", f"{t['errors']} ({t['error_share']:.1%})", p["errors"], change(tr["errors"])],
        ["tokens", t["total_tokens"], p["total_tokens"], change(tr["total_tokens"])],
        ["streamed", t["streamed"], p["streamed"], ""],
        ["cut at max_tokens", t["truncated"], p["truncated"], ""],
    ]
    for cur, v in t["costs"].items():
        rows.append([f"cost {cur}", f"{Decimal(v):.2f}",
                     f"{Decimal(p['costs'].get(cur, '0')):.2f}", change(tr.get(f"cost {cur}"))])  # fmt: skip
    return rows


def markdown(rep: dict[str, Any]) -> str:
    """The report as Markdown (GitHub tables)."""
    out = [
        f"# {rep['title']}",
        "",
        f"{rep['start']} to {rep['end']} (UTC); generated {rep['generated_at']}.",
        "",
    ]
    out += [
        "## Summary",
        "",
        *_md_table(["", "this period", "previous", "change"], _summary(rep)),
        "",
    ]
    out += ["## Providers", "", *_md_table(
        ["provider", "requests", "errors", "tokens", "cost", "avg ms", "p95 ms"], _provider_rows(rep)), ""]  # fmt: skip
    out += [
        "## Models",
        "",
        *_md_table(["model", "requests", "errors", "tokens", "cost"], _model_rows(rep)),
        "",
    ]
    out += [
        "## Top keys",
        "",
        *_md_table(["key", "requests", "tokens", "cost"], _key_rows(rep)),
        "",
    ]
    out += ["## Recommendations", ""]
    out += [f"- **{r['kind'].replace('_', ' ')}** (saving {money(r['saving'])}): {r['recommendation']}"
            for r in rep["recommendations"]] or ["None: nothing crossed a threshold."]  # fmt: skip
    return "\n".join(out) + "\n"


def csv_text(rep: dict[str, Any]) -> str:
    """The series over time as CSV: one row per hour or day, cost per currency in columns."""
    currencies = sorted(
        {c for s in rep["series"] for c in s["costs"]} | set(rep["totals"]["costs"])
    )
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["at", "requests", "errors", "total_tokens", *(f"cost_{c}" for c in currencies)])
    for s in rep["series"]:
        w.writerow([s["at"], s["requests"], s["errors"], s["total_tokens"],
                    *(s["costs"].get(c, "0") for c in currencies)])  # fmt: skip
    return buf.getvalue()


_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111;max-width:980px;
margin:24px auto;padding:0 16px;line-height:1.4}
h1{font-size:24px;margin-bottom:2px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ccc}
.sub{color:#555;margin-top:0}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f2f2f2}.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{border:1px solid #ccc;border-radius:6px;padding:8px 14px;min-width:140px}
.card b{display:block;font-size:20px}.ch{color:#555}h3{font-size:14px;margin:14px 0 0}
svg.chart{width:100%;height:auto;font-family:inherit}li{margin-bottom:6px}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}svg.chart,table,.cards{break-inside:avoid}
@page{size:A4;margin:14mm}}
"""


def _html_table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    b = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"


def html(rep: dict[str, Any]) -> str:
    """The report as one self-contained HTML page with inline SVG charts."""
    t, tr = rep["totals"], rep["trend"]
    hourly = rep["period"] == "daily"
    labels = [s["at"][11:13] if hourly else s["at"][5:] for s in rep["series"]]
    every = 3 if hourly else max(1, len(labels) // 10)
    cards = [("requests", f"{t['requests']:,}", tr["requests"]), ("errors", f"{t['error_share']:.1%}", tr["errors"]),
             ("tokens", f"{t['total_tokens']:,}", tr["total_tokens"])]  # fmt: skip
    cards += [
        (f"cost {c}", f"{Decimal(v):,.2f}", tr.get(f"cost {c}")) for c, v in t["costs"].items()
    ]
    card_html = "".join(
        f'<div class="card">{escape(name)}<b>{escape(value)}</b>'
        f'<span class="ch">{escape(change(ch))} vs previous</span></div>'
        for name, value, ch in cards
    )
    charts = [
        f"<h3>Requests per {'hour' if hourly else 'day'}</h3>",
        report_svg.bars(
            "Requests per " + ("hour" if hourly else "day"),
            labels,
            [s["requests"] for s in rep["series"]],
            every=every,
        ),  # fmt: skip
    ]
    for cur in t["costs"]:
        charts.append(f"<h3>Cost per {'hour' if hourly else 'day'} in {escape(cur)}</h3>")
        charts.append(
            report_svg.lines(
                f"Cost per {'hour' if hourly else 'day'} ({cur}): this period against the previous",
                labels,
                [
                    ("this period", [float(s["costs"].get(cur, 0)) for s in rep["series"]], False),
                    (
                        "previous period",
                        [float(s["costs"].get(cur, 0)) for s in rep["previous_series"]][
                            : len(labels)
                        ],
                        True,
                    ),
                ],
                every=every,
            )  # fmt: skip
        )
    trend = report_svg.lines(
        "Requests: this period against the previous",
        labels,
        [("this period", [s["requests"] for s in rep["series"]], False),
         ("previous period", [s["requests"] for s in rep["previous_series"]][: len(labels)], True)],
        every=every,
    )  # fmt: skip
    providers = report_svg.hbars(
        "Requests per provider",
        [(p["provider"] or "-", p["requests"], f"({p['error_share']:.1%} errors, {money(p['costs'])})")
         for p in rep["providers"]],
    )  # fmt: skip
    recs = (
        "".join(
            f"<li><b>{escape(r['kind'].replace('_', ' '))}</b> (saving {escape(money(r['saving']))}): "
            f"{escape(r['recommendation'])}</li>"
            for r in rep["recommendations"]
        )
        or "<li>None: nothing crossed a threshold.</li>"
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(rep["title"])}</title>'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{_CSS}</style></head><body>'
        f"<h1>{escape(rep['title'])}</h1>"
        f'<p class="sub">{escape(rep["start"])} to {escape(rep["end"])} (UTC); generated {escape(rep["generated_at"])}</p>'
        f'<div class="cards">{card_html}</div>'
        f"<h2>Usage over time</h2>{''.join(charts)}"
        f"<h2>Trend</h2><h3>Requests, this period against the previous</h3>{trend}"
        f"<h2>Providers</h2>{providers}"
        + _html_table(["provider", "requests", "errors", "tokens", "cost", "avg ms", "p95 ms"], _provider_rows(rep))
        + f"<h2>Summary</h2>{_html_table(['', 'this period', 'previous', 'change'], _summary(rep))}"
        + f"<h2>Models</h2>{_html_table(['model', 'requests', 'errors', 'tokens', 'cost'], _model_rows(rep))}"
        + f"<h2>Top keys</h2>{_html_table(['key', 'requests', 'tokens', 'cost'], _key_rows(rep))}"
        + f"<h2>Recommendations</h2><ul>{recs}</ul></body></html>\n"
    )  # fmt: skip


def render(rep: dict[str, Any], fmt: str) -> str:
    """``rep`` in ``fmt`` (``md``, ``html``, ``csv`` or ``json``; ``table`` is the CLI's)."""
    if fmt == "md":
        return markdown(rep)
    if fmt == "html":
        return html(rep)
    if fmt == "csv":
        return csv_text(rep)
    if fmt == "json":
        return orjson.dumps(rep, option=orjson.OPT_INDENT_2).decode() + "\n"
    raise ValueError(f"unknown report format {fmt!r}")
