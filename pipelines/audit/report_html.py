"""The audit report's layout: one self-contained HTML page (plots embedded, one inline script, nothing fetched),
or Markdown with the plots as PNGs beside it. `pipelines.audit.report.build_report` gives the content."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import polars as pl

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1500px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 6px;vertical-align:top}th{background:#eee}
dl.header{display:grid;grid-template-columns:max-content auto;gap:2px 12px;font-size:13px}dt{font-weight:bold}
#flagged-table th[data-col]{cursor:pointer}#flagged-table tr.night th{background:#f6e0dc;text-align:left}
tbody:target tr.night th{background:#f0b8ac}ol.messages{margin:0;padding-left:1.4em;max-width:420px}
li.judged{font-weight:bold}.reasoning{max-width:480px;white-space:pre-wrap}.links{font-size:12px}"""

# Filter (every word must occur in the row) and sort (click a header; numbers by their data-value) the flagged list.
SCRIPT = """<script>(() => {
  const table = document.getElementById('flagged-table');
  if (!table) return;
  const rows = () => [...table.querySelectorAll('tr.unit')];
  document.getElementById('flagged-filter').addEventListener('input', (event) => {
    const words = event.target.value.toLowerCase().split(/\\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows()) {
      const text = (row.parentElement.id + ' ' + row.textContent).toLowerCase();  // tenant and night too
      row.hidden = !words.every((w) => text.includes(w));
      shown += row.hidden ? 0 : 1;
    }
    document.getElementById('flagged-shown').textContent = shown;
  });
  table.querySelectorAll('th[data-col]').forEach((th) => th.addEventListener('click', () => {
    const col = Number(th.dataset.col), down = th.dataset.dir !== 'down';
    th.dataset.dir = down ? 'down' : 'up';
    const key = (row) => row.children[col].dataset.value ?? row.children[col].textContent;
    for (const body of table.tBodies) {
      const sorted = [...body.querySelectorAll('tr.unit')].sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        const order = isNaN(x) || isNaN(y) ? x.localeCompare(y) : Number(x) - Number(y);
        return down ? -order : order;
      });
      body.append(...sorted);
    }
  }));
})();</script>"""

SECTIONS = (  # (id, heading), in page order
    ("mix", "Verdict mix per tenant and night"),
    ("trend", "Trend over nights and drift"),
    ("p-unsafe", "P(unsafe) per tenant"),
    ("flagged", "Flagged units: what was flagged and why"),
    ("categories", "Categories of unsafe units: named by the guard, scored by its category heads"),
    ("review", "Review queue (newest first)"),
    ("dead-letters", "Dead letters by kind"),
    ("cost", "Tokens per tenant (cost attribution)"),
    ("versions", "Models and policy versions in use"),
    ("consistency", "Rationale consistency flags"),
    ("labels", "Reviewer labels: agreement with the guard, over time"),
)
FLAGGED_COLUMNS = (
    "conversation",
    "unit / turn",
    "verdict",
    "P(unsafe)",
    "decided by",
    "categories",
    "messages",
    "reasoning",
)


def night_anchor(tenant: str, night: object) -> str:
    """The id of a tenant-night's rows in the Flagged section."""
    return f"flagged-{tenant}-{night}"


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "" if value is None else str(value)


def html_table(frame: pl.DataFrame, limit: int = 200) -> str:
    """A plain table of a query's result (the first `limit` rows)."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>"
        for row in frame.head(limit).iter_rows()
    )
    more = f"<p><em>first {limit} of {frame.height} rows</em></p>" if frame.height > limit else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{more}"


def _categories(row: dict) -> str:
    named = ", ".join(row["categories"] or []) or "none named"
    scored = ", ".join(f"{s['code']} {s['score']:.2f}" for s in row["category_scores"] or [] if s["score"] >= 0.5)
    return named + (f"; heads: {scored}" if scored else "")


def _messages_html(row: dict) -> str:
    if row["messages"] is None:
        return f"<em>{html.escape(row['messages_note'])}</em>"
    items = "".join(
        f"<li class='{'judged' if judged else ''}'>{html.escape(text)}</li>" for text, judged in row["messages"]
    )
    return f"<ol class='messages'>{items}</ol>"


def flagged_html(flagged: pl.DataFrame, groups: pl.DataFrame) -> str:
    """The flagged units, one table body per tenant-night (the plots link to it), filterable and sortable."""
    head = "".join(f"<th data-col='{i}'>{html.escape(c)}</th>" for i, c in enumerate(FLAGGED_COLUMNS))
    bodies = []
    for tenant, night, units in groups.iter_rows():
        rows = flagged.filter((pl.col("tenant") == tenant) & (pl.col("date") == night))
        cells = [
            f"<tr class='unit'><td>{html.escape(r['conversation_id'])}</td>"
            f"<td>{html.escape(r['unit'])} / {r['turn_index']}</td>"
            f"<td>{html.escape(r['verdict'])}</td>"
            f"<td data-value='{_cell(r['p_unsafe'])}'>{_cell(r['p_unsafe'])}</td>"
            f"<td>{html.escape(r['verdict_source'] or '')}</td><td>{html.escape(_categories(r))}</td>"
            f"<td>{_messages_html(r)}</td><td class='reasoning'>{html.escape(r['reasoning'] or '(no trace)')}</td></tr>"
            for r in rows.iter_rows(named=True)
        ]
        title = f"{tenant} · {night} · {units} flagged"
        anchor = html.escape(night_anchor(tenant, night))
        heading = f"<tr class='night'><th colspan='{len(FLAGGED_COLUMNS)}'>{html.escape(title)}</th></tr>"
        bodies.append(f"<tbody id='{anchor}'>{heading}{''.join(cells)}</tbody>")
    tool = ("<p><label>Filter: <input id='flagged-filter' size='40' placeholder='words: tenant, code, text…'></label> "
            f"<span id='flagged-shown'>{flagged.height}</span> of {flagged.height} shown; click a column to sort."
            "</p>")  # fmt: skip
    return f"{tool}<table id='flagged-table'><thead><tr>{head}</tr></thead>{''.join(bodies)}</table>"


def plot_links(groups: pl.DataFrame, per_tenant: bool = False) -> str:
    """Links from a plot to the flagged rows it counts: per tenant-night, or per tenant (its newest night)."""
    if groups.height == 0:
        return ""
    if per_tenant:
        newest = groups.sort("date", descending=True).unique("tenant", keep="first", maintain_order=True).sort("tenant")
        totals = dict(groups.group_by("tenant").agg(pl.col("units").sum()).iter_rows())
        links = [(night_anchor(t, d), f"{t} ({totals[t]})") for t, d, _ in newest.iter_rows()]
    else:
        links = [(night_anchor(t, d), f"{t} {d:%m-%d} ({n})") for t, d, n in groups.iter_rows()]
    items = " · ".join(f"<a href='#{html.escape(a)}'>{html.escape(text)}</a>" for a, text in links)
    return f"<p class='links'>Flagged rows: {items}</p>"


def _header_html(header: dict) -> str:
    items = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in header.items())
    return f"<dl class='header'>{items}</dl>"


def render_html(report: dict, title: str, sections: tuple[tuple[str, str], ...] = SECTIONS) -> str:
    """The report as one HTML page: no external file, script or font."""
    groups = report["flagged_groups"]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>", _header_html(report["header"]),
             f"<p>{report['units']} units; {report['flagged'].height} flagged; drift on "
             f"{len(report['drift'])} tenant-night(s).</p>"]  # fmt: skip
    for key, heading in sections:
        parts.append(f"<section id='{key}'><h2>{html.escape(heading)}</h2>")
        plot = report["plots"].get(key)
        if plot is not None:
            data = base64.b64encode(plot).decode()
            parts.append(
                f"<a href='#flagged'><img alt='{html.escape(heading)}' src='data:image/png;base64,{data}'></a>"
            )
            parts.append(plot_links(groups, per_tenant=key == "p-unsafe") if key != "labels" else "")
        if key in report["notes"]:
            parts.append(f"<p class='note'>{html.escape(report['notes'][key])}</p>")
        if key == "flagged" and report["flagged"].height:
            parts.append(flagged_html(report["flagged"], groups))
        elif key != "flagged" and report["tables"][key].height:
            parts.append(html_table(report["tables"][key]))
        parts.append("</section>")
    return "".join(parts) + SCRIPT + "</body></html>"


def _md_table(frame: pl.DataFrame, limit: int = 200) -> str:
    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    for row in frame.head(limit).iter_rows():
        lines.append("| " + " | ".join(_cell(v).replace("|", "\\|").replace("\n", " ") for v in row) + " |")
    return "\n".join(lines) + "\n"


def _flagged_md(flagged: pl.DataFrame) -> pl.DataFrame:
    rows = [
        {"tenant": r["tenant"], "night": str(r["date"]), "conversation": r["conversation_id"],
         "unit / turn": f"{r['unit']} / {r['turn_index']}", "verdict": r["verdict"], "P(unsafe)": r["p_unsafe"],
         "decided by": r["verdict_source"], "categories": _categories(r),
         "messages": " / ".join(t for t, _ in r["messages"]) if r["messages"] else r["messages_note"],
         "reasoning": r["reasoning"] or "(no trace)"}
        for r in flagged.iter_rows(named=True)
    ]  # fmt: skip
    return pl.DataFrame(rows)


def write_markdown(report: dict, path: Path, title: str, sections: tuple[tuple[str, str], ...] = SECTIONS) -> None:
    """Markdown with the plots as PNG files in `<name>_files/` beside it."""
    assets = path.with_name(path.stem + "_files")
    assets.mkdir(parents=True, exist_ok=True)
    header = "\n".join(f"- **{k}**: {v}" for k, v in report["header"].items())
    parts = [f"# {title}\n\n{header}\n\n{report['units']} units; {report['flagged'].height} flagged; drift on "
             f"{len(report['drift'])} tenant-night(s).\n"]  # fmt: skip
    for key, heading in sections:
        parts.append(f"\n## {heading}\n")
        if report["plots"].get(key) is not None:
            (assets / f"{key}.png").write_bytes(report["plots"][key])
            parts.append(f"![{heading}]({assets.name}/{key}.png)\n")
        if key in report["notes"]:
            parts.append(report["notes"][key] + "\n")
        if key == "flagged" and report["flagged"].height:
            parts.append(_md_table(_flagged_md(report["flagged"]), limit=report["flagged"].height))
        elif key != "flagged" and report["tables"][key].height:
            parts.append(_md_table(report["tables"][key]))
    path.write_text("\n".join(parts), encoding="utf-8")
