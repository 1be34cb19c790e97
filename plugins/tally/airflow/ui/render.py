"""The ledger view as one self-contained HTML page: inline CSS and a server-rendered SVG chart,
no script and no asset from elsewhere (the API server may have no internet).

Pure functions of :class:`tally.reconcile.run_view.RunView` and its history; links are relative
to the page (``ledger``), so they work under any prefix the API server mounts the app on.
"""

from __future__ import annotations

from html import escape
from typing import Any
from urllib.parse import quote, urlencode

from tally.ledger import ACCOUNTING, HOPS
from tally.reconcile.run_view import DatasetFlow, Day, Gate, RunView

HOP_COLOURS = {"source": "#1f77b4", "raw": "#ff7f0e", "curated": "#2ca02c", "warehouse": "#9467bd",
               "mart": "#8c564b"}
# Hops that agree draw on top of each other: earlier hops draw wider, so each stays visible.
HOP_WIDTHS = {"source": 8, "raw": 6, "curated": 4.5, "warehouse": 3, "mart": 2}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:16px;color:#1a202c;background:#fff}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:22px 0 6px}
.muted{color:#64748b} .small{font-size:12px}
table{border-collapse:collapse;font-size:13px} th,td{border:1px solid #cbd5e1;padding:4px 8px;vertical-align:top}
th{background:#f1f5f9;text-align:left} td.num{text-align:right;font-variant-numeric:tabular-nums}
td.divergent{background:#fecaca;border:2px solid #dc2626;font-weight:600}
td.before-divergent{border:2px dashed #dc2626}
td.missing{color:#94a3b8;text-align:center}
.ok{color:#15803d;font-weight:600} .bad{color:#b91c1c;font-weight:600} .warn{color:#b45309}
.verdict{padding:8px 12px;border-radius:4px;margin:8px 0;font-size:14px}
.verdict.bad{background:#fee2e2;border:1px solid #dc2626} .verdict.ok{background:#dcfce7;border:1px solid #16a34a}
.verdict.muted{background:#f3f4f6;border:1px solid #9ca3af}
form{margin:8px 0} input{font-size:13px;padding:2px 4px} code{font-size:12px}
"""


def page(view: RunView, days: list[Day], *, dag_id: str, run_id: str | None = None,
         docs_base: str | None = "data-docs/", dataset: str | None = None) -> str:
    """The whole page. ``docs_base``: where the Data Docs site is served, relative to the page
    (``None``: not served, pages named without links)."""
    run = f" · run <code>{escape(run_id)}</code>" if run_id else ""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Tally ledger {escape(view.ds)}</title><style>{CSS}</style></head><body>",
        f"<h1>Tally ledger · {escape(dag_id)} · ds {escape(view.ds)}</h1>",
        f"<div class='muted small'>Rows and key checksums at every hop from ops.ledger{run}</div>",
        _form(view.ds, len(days), dataset),
        _verdict(view),
        _publication(view),
        "<h2>Flow per dataset: source → raw → curated → warehouse → mart</h2>",
        flow_table(view.flows),
        f"<h2>Rows per hop, last {len(days)} ds{' · ' + escape(dataset) if dataset else ''}</h2>",
        chart_svg(days, selected=view.ds, dataset=dataset),
        "<div class='muted small'>Rows summed over the datasets. Red band ▼: a dataset diverges that ds; "
        "grey band: no ledger entries (no run); dashed: this ds. Click a point to open its ds.</div>",
        "<h2>Quality gates</h2>",
        gates_table(view.gates, docs_base),
        f"<h2>Open alerts ({len(view.alerts)})</h2>",
        alerts_table(view.alerts),
        "</body></html>",
    ]
    return "\n".join(parts)


def _form(ds: str, days: int, dataset: str | None) -> str:
    return ("<form method='get' action='ledger'>"
            f"ds <input name='ds' value='{escape(ds)}' size='10' pattern='\\d{{4}}-\\d{{2}}-\\d{{2}}'> "
            f"last <input name='days' value='{days}' size='3'> ds · dataset "
            f"<input name='dataset' value='{escape(dataset or '')}' size='24' placeholder='all'> "
            "<input type='submit' value='Show'></form>")


def _verdict(view: RunView) -> str:
    if not view.flows:
        return (f"<div class='verdict bad' id='verdict'>The ledger has nothing for ds {escape(view.ds)}: "
                "tally_daily has not run for it (or not reached its first hop).</div>")
    bad = view.divergent
    if not bad:
        return "<div class='verdict ok' id='verdict'>Every dataset agrees at every recorded hop.</div>"
    items = "".join(
        f"<li><b>{escape(f.dataset)}</b>: first divergence {escape(f.divergence.from_hop)} → "
        f"{escape(f.divergence.to_hop)} ({escape(f.divergence.why)})</li>" for f in bad if f.divergence)
    return (f"<div class='verdict bad' id='verdict'>{len(bad)} of {len(view.flows)} datasets diverge:"
            f"<ul>{items}</ul></div>")


def _publication(view: RunView) -> str:
    """The warehouse's write–audit–publish state of the ds (``tally.load.wap``)."""
    p = view.publication
    last = (f"last published {escape(str(p['published_at'])[:19])} UTC by run <code>{escape(str(p['published_run']))}</code>"
            if p.get("published_at") else "never published")
    if p.get("staged"):
        why = {True: "the warehouse gate passed; publish_warehouse has not run",
               False: "the warehouse gate FAILED: the published tables are unchanged"}.get(
                   p.get("gate_passed"), "the warehouse gate has not run")
        return (f"<div class='verdict bad' id='publication'>Warehouse: a load of this ds is staged, not published "
                f"({why}); {last}.</div>")
    cls = "ok" if p.get("published_at") else "muted"
    return f"<div class='verdict {cls}' id='publication'>Warehouse: {last}.</div>"


def flow_table(flows: list[DatasetFlow]) -> str:
    head = "".join(f"<th>{label}</th>" for _, label in ACCOUNTING) + "".join(f"<th>{h}</th>" for h in HOPS)
    rows = []
    for f in flows:
        cells = ([f"<td class='num acct' data-count='{name}'>{value}</td>"
                  for (name, _), value in zip(ACCOUNTING, f.accounting.cells(), strict=True)] if f.accounting
                 else [f"<td class='missing acct' data-count='{name}'>·</td>" for name, _ in ACCOUNTING])
        for hop in HOPS:
            e = f.hops.get(hop)
            if e is None:
                cells.append(f"<td class='missing' data-hop='{hop}'>·</td>")
                continue
            cls = "num"
            if f.divergence and hop == f.divergence.to_hop:
                cls += " divergent"
            elif f.divergence and hop == f.divergence.from_hop:
                cls += " before-divergent"
            checksum = f"<br><span class='muted small'>{escape(e.key_checksum)}</span>" if e.key_checksum else ""
            cells.append(f"<td class='{cls}' data-hop='{hop}' data-rows='{e.row_count}'>{e.row_count:,}{checksum}</td>")
        if f.divergence:
            verdict = (f"<span class='bad'>lost {escape(f.divergence.from_hop)} → {escape(f.divergence.to_hop)}"
                       f"</span><br><span class='small'>{escape(f.divergence.why)}</span>")
        else:
            verdict = "<span class='ok'>ok</span>"
        rows.append(f"<tr data-dataset='{escape(f.dataset)}'><td>{escape(f.dataset)}</td>{''.join(cells)}"
                    f"<td>{verdict}</td></tr>")
    if not rows:
        rows.append(f"<tr><td colspan='{len(ACCOUNTING) + len(HOPS) + 2}' class='muted'>no ledger entries</td></tr>")
    return (f"<table id='flow'><thead><tr><th>dataset</th>{head}<th>first divergence</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
            "<div class='muted small'>Source count, landed, quarantined, tombstones: where the rows the "
            "source counted went (source count = landed + quarantined). Each hop cell: rows, then the key "
            "checksum. Red: the first hop that "
            "disagrees with the hop before it (dashed).</div>")


def gates_table(gates: list[Gate], docs_base: str | None) -> str:
    rows = []
    for g in gates:
        result = "<span class='ok'>PASSED</span>" if g.success else "<span class='bad'>FAILED</span>"
        checks = (f"{g.evaluated - g.failed - g.warnings}/{g.evaluated} passed" if g.success
                  else f"{g.failed} of {g.evaluated} failed")
        if g.warnings:
            checks += f"<br><span class='warn'>{g.warnings} warning{'s' if g.warnings != 1 else ''}</span>"
        failures = escape(g.summary) + (f"<br><span class='warn small'>{escape(g.warning_summary)}</span>"
                                        if g.warning_summary else "")
        docs = []
        for suite in g.suites:
            target = g.pages.get(suite)
            if target and docs_base is not None:
                docs.append(f"<a href='{escape(docs_base + quote(target))}' target='_blank'>{escape(suite)}</a>")
            else:
                docs.append(f"{escape(suite)}{' (' + escape(target) + ')' if target else ''}")
        rows.append(f"<tr class='{'passed' if g.success else 'failed'}'><td>{escape(g.hop)}</td>"
                    f"<td>{escape(g.dataset)}</td><td>{result}</td><td class='num'>{checks}</td>"
                    f"<td>{failures}</td><td>{'<br>'.join(docs)}</td></tr>")
    if not rows:
        rows.append("<tr><td colspan='6' class='muted'>no gate results for this ds</td></tr>")
    return ("<table id='gates'><thead><tr><th>hop</th><th>dataset</th><th>result</th><th>checks</th>"
            f"<th>failures</th><th>Data Docs</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")


def alerts_table(alerts: list[dict[str, Any]]) -> str:
    rows = []
    for a in alerts:
        links = (a.get("payload") or {}).get("links") or {}
        anchors = " ".join(f"<a href='{escape(str(url))}' target='_blank'>{escape(name)}</a>"
                           for name, url in sorted(links.items()) if str(url).startswith(("http://", "https://")))
        rows.append(f"<tr><td class='num'>{a['id']}</td><td>{escape(str(a['gate']))}</td>"
                    f"<td>{escape(str(a['category']))}</td><td><b>{escape(str(a['title']))}</b><br>"
                    f"<span class='small'>{escape(str(a['summary']))}</span></td>"
                    f"<td class='num'>{a.get('occurrences', 1)}</td>"
                    f"<td class='small'>{escape(str(a.get('created_at', ''))[:19])}</td><td>{anchors}</td></tr>")
    if not rows:
        rows.append("<tr><td colspan='7' class='muted'>no open alerts for this ds</td></tr>")
    return ("<table id='alerts'><thead><tr><th>id</th><th>gate</th><th>category</th><th>alert</th>"
            f"<th>seen</th><th>created (UTC)</th><th>links</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "<div class='muted small'>Acknowledge with <code>tally alerts ack ID</code>.</div>")


def chart_svg(days: list[Day], selected: str | None = None, width: int = 900, height: int = 280,
              dataset: str | None = None) -> str:
    """Rows per hop (one line each) over ``days``; a day whose flow diverges gets a red band and a
    ▼, a day without entries a grey one; the selected ds a dashed line. Points are links to
    their ds."""
    left, right, top, bottom = 70, 110, 12, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = max((v for d in days for v in d.rows.values()), default=0) or 1
    step = plot_w / max(1, len(days) - 1) if len(days) > 1 else 0
    band = max(6.0, step * 0.8) if step else 30.0

    def x(i: int) -> float:
        return left + (i * step if len(days) > 1 else plot_w / 2)

    def y(v: int) -> float:
        return top + plot_h - v / peak * plot_h

    out = [f"<svg id='chart' xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
           f"viewBox='0 0 {width} {height}' role='img' aria-label='rows per hop per ds' "
           "style='font:11px sans-serif;background:#fff'>"]
    for i, d in enumerate(days):
        cx = x(i)
        if d.divergent:
            out.append(f"<rect class='dip' data-ds='{d.ds}' x='{cx - band / 2:.1f}' y='{top}' width='{band:.1f}' "
                       f"height='{plot_h}' fill='#fecaca'><title>{d.ds}: diverges in "
                       f"{escape(', '.join(d.divergent))}</title></rect>")
            out.append(f"<text x='{cx:.1f}' y='{top + 10}' text-anchor='middle' fill='#dc2626'>▼</text>")
        elif not d.rows:
            out.append(f"<rect class='no-run' data-ds='{d.ds}' x='{cx - band / 2:.1f}' y='{top}' "
                       f"width='{band:.1f}' height='{plot_h}' fill='#f1f5f9'><title>{d.ds}: no ledger entries"
                       "</title></rect>")
    out.append(f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' stroke='#64748b'/>")
    out.append(f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + plot_h}' stroke='#64748b'/>")
    for frac in (0, 0.5, 1):
        v = int(peak * frac)
        out.append(f"<text x='{left - 6}' y='{y(v) + 4:.1f}' text-anchor='end' fill='#475569'>{v:,}</text>")
    every = max(1, len(days) // 10)
    for i, d in enumerate(days):
        if i % every == 0 or i == len(days) - 1:
            out.append(f"<text x='{x(i):.1f}' y='{top + plot_h + 16}' text-anchor='middle' "
                       f"fill='#475569'>{d.ds[5:]}</text>")
    if selected:
        for i, d in enumerate(days):
            if d.ds == selected:
                out.append(f"<line class='selected' x1='{x(i):.1f}' y1='{top}' x2='{x(i):.1f}' "
                           f"y2='{top + plot_h}' stroke='#0f172a' stroke-dasharray='4 3'/>")
    for n, hop in enumerate(HOPS):
        colour = HOP_COLOURS[hop]
        segment: list[str] = []
        segments = []
        for i, d in enumerate(days):
            if hop in d.rows:
                segment.append(f"{x(i):.1f},{y(d.rows[hop]):.1f}")
            elif segment:
                segments.append(segment)
                segment = []
        if segment:
            segments.append(segment)
        for s in segments:
            out.append(f"<polyline class='hop-line' data-hop='{hop}' fill='none' stroke='{colour}' "
                       f"stroke-width='{HOP_WIDTHS[hop]}' stroke-linejoin='round' points='{' '.join(s)}'/>")
        for i, d in enumerate(days):
            if hop in d.rows:
                href = "ledger?" + urlencode({"ds": d.ds, "days": len(days), **({"dataset": dataset} if dataset else {})})
                out.append(f"<a href='{escape(href)}'><circle class='point' data-ds='{d.ds}' data-hop='{hop}' "
                           f"data-rows='{d.rows[hop]}' cx='{x(i):.1f}' cy='{y(d.rows[hop]):.1f}' r='3.5' "
                           f"fill='{colour}'><title>{d.ds} {hop}: {d.rows[hop]:,} rows</title></circle></a>")
        ly = top + 8 + n * 18
        out.append(f"<line x1='{left + plot_w + 14}' y1='{ly}' x2='{left + plot_w + 34}' y2='{ly}' "
                   f"stroke='{colour}' stroke-width='3'/><text x='{left + plot_w + 40}' y='{ly + 4}'>{hop}</text>")
    out.append(f"<text x='{left + plot_w + 14}' y='{top + 8 + len(HOPS) * 18 + 6}' fill='#dc2626'>▼ diverges</text>")
    out.append("</svg>")
    return "".join(out)
