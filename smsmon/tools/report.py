"""The look-back audit's HTML report: one self-contained file a compliance officer can open and
forward (charts are embedded PNGs drawn with matplotlib's Agg backend, no external assets).

`ReportData` is plain JSON-able data computed by `smsmon/tools/audit/`; the audit stores it next
to the report as `report.json`, so `smsmon report --audit-dir DIR` can render it again. Every
piece of text is HTML-escaped; the data never holds a raw msisdn or a message text (alerts
carry masked numbers only, and the audit never copies texts into it).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import html
import io
import json
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from smsmon.config.settings import Settings

SEVERITIES = ("critical", "major", "minor")
SEVERITY_COLOURS = {"critical": "#c0392b", "major": "#e67e22", "minor": "#f1c40f"}
DIMENSIONS = ("enterprise", "port", "signature", "account", "subscriber")
DIMENSION_TITLES = {
    "enterprise": "Enterprise 企业",
    "port": "Port 端口 (registered code)",
    "signature": "Signature 签名",
    "account": "Gateway account 账号",
    "subscriber": "Subscriber (masked)",
}
# Unsubscribe delay buckets: (label, upper bound in seconds, inclusive); None = unbounded.
DELAY_BUCKETS: tuple[tuple[str, float | None], ...] = (
    ("<= 1 min", 60.0),
    ("1-10 min", 600.0),
    ("10-60 min", 3_600.0),
    ("1-24 h", 86_400.0),
    ("1-7 days", 7 * 86_400.0),
    ("> 7 days", None),
)
NO_MARKETING_AFTER = "no marketing after"


@dataclass
class ReportData:
    """Everything the report shows, as JSON-able values (see `smsmon.tools.audit.collector`)."""

    title: str = "smsmon look-back audit 回头看"
    generated_at: str = ""
    timezone: str = "Asia/Shanghai"
    period: list[str] = field(default_factory=list)  # [first event ts, last event ts] (local)
    inputs: list[dict[str, Any]] = field(default_factory=list)  # kind, file, records, malformed
    totals: dict[str, int] = field(default_factory=dict)
    events_by_kind: list[list[Any]] = field(default_factory=list)  # [kind, category, count]
    alerts_by_rule: list[list[Any]] = field(default_factory=list)  # [rule, severity, count]
    # alerts about marketing messages: [sector (retail|finance|other), rule, count]
    marketing_by_sector: list[list[Any]] = field(default_factory=list)
    malformed_by_reason: list[list[Any]] = field(default_factory=list)  # [reason, count]
    malformed_examples: list[list[Any]] = field(default_factory=list)  # [file, line, reason, err]
    # {"unit": "minute"|"hour"|"day", "labels": [local ISO], "mt": [...], "other": [...],
    #  "alerts": {severity: [...]}}
    series: dict[str, Any] = field(default_factory=dict)
    # [{"rule", "severity", "total", "dims": {dim: [{"value", "count", "examples": [...]}]}}]
    offenders: list[dict[str, Any]] = field(default_factory=list)
    # {"attributed", "unattributed", "tracked", "buckets": [[label, count]], "worst": [...]}
    unsubscribes: dict[str, Any] = field(default_factory=dict)
    parameters: list[list[Any]] = field(default_factory=list)  # [group, name, value]

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ReportData:
        raw = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


def delay_bucket(delay_s: float | None) -> str:
    """Bucket label of an unsubscribe's delay to the last marketing message (None: none)."""
    if delay_s is None:
        return NO_MARKETING_AFTER
    for label, bound in DELAY_BUCKETS:
        if bound is None or delay_s <= bound:
            return label
    return DELAY_BUCKETS[-1][0]


def format_duration(seconds: float | None) -> str:
    """`3 d 04:05:06`, `04:05:06`, or `12.3 s` for short spans; '-' for None."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f} s"
    total = round(seconds)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} d {clock}" if days else clock


# -- charts -------------------------------------------------------------------------------


class Charts:
    """Draws PNG charts with matplotlib (Agg). Labels stay ASCII unless a CJK font exists."""

    def __init__(self) -> None:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt

        self.plt = plt
        self.cjk_font = _cjk_font()
        if self.cjk_font is not None:
            matplotlib.rcParams["font.sans-serif"] = [self.cjk_font, "DejaVu Sans"]
            matplotlib.rcParams["font.family"] = "sans-serif"
        matplotlib.rcParams["axes.unicode_minus"] = False

    def label(self, text: str) -> str:
        """A label the chart can draw: as is with a CJK font, else non-ASCII replaced."""
        if self.cjk_font is not None or text.isascii():
            return text
        return "".join(ch if ch.isascii() else "?" for ch in text)

    def _png(self, fig: Any) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
        self.plt.close(fig)
        return base64.b64encode(buf.getvalue()).decode("ascii")

    def timeline(self, series: dict[str, Any], tz: str) -> str | None:
        labels: list[str] = series.get("labels") or []
        if not labels:
            return None
        xs = [dt.datetime.fromisoformat(s).replace(tzinfo=None) for s in labels]
        unit = series.get("unit", "hour")
        width = {"minute": 1 / 1440, "hour": 1 / 24, "day": 1.0}.get(unit, 1 / 24) * 0.9
        fig, (top, bottom) = self.plt.subplots(
            2, 1, figsize=(10, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
        )
        mt = series.get("mt") or [0] * len(xs)
        other = series.get("other") or [0] * len(xs)
        bar = {"width": width, "align": "edge"}
        top.bar(xs, mt, color="#2e86c1", label="mt (enterprise -> subscriber)", **bar)
        top.bar(xs, other, bottom=mt, color="#aed6f1", label="mo + dlr", **bar)
        top.set_ylabel(f"events per {unit}")
        top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        top.grid(axis="y", alpha=0.3)
        base = [0] * len(xs)
        alerts: dict[str, list[int]] = series.get("alerts") or {}
        for sev in SEVERITIES:
            vals = alerts.get(sev) or [0] * len(xs)
            bottom.bar(xs, vals, bottom=base, color=SEVERITY_COLOURS[sev], label=sev, **bar)
            base = [a + b for a, b in zip(base, vals, strict=True)]
        bottom.set_ylabel(f"alerts per {unit}")
        bottom.set_xlabel(self.label(f"event time ({tz})"))
        bottom.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
        bottom.grid(axis="y", alpha=0.3)
        import matplotlib.dates

        mdates: Any = matplotlib.dates
        bottom.xaxis.set_major_locator(mdates.AutoDateLocator(maxticks=12))
        fmt = "%Y-%m-%d" if unit == "day" else "%m-%d %H:%M"
        bottom.xaxis.set_major_formatter(mdates.DateFormatter(fmt))
        fig.autofmt_xdate()
        return self._png(fig)

    def by_rule(self, rows: Sequence[Sequence[Any]]) -> str | None:
        if not rows:
            return None
        rows = sorted(rows, key=lambda r: int(r[2]))
        fig, ax = self.plt.subplots(figsize=(10, 0.35 * len(rows) + 1.2))
        ax.barh(
            [self.label(str(r[0])) for r in rows],
            [int(r[2]) for r in rows],
            color=[SEVERITY_COLOURS.get(str(r[1]), "#7f8c8d") for r in rows],
        )
        ax.set_xlabel("alerts")
        ax.grid(axis="x", alpha=0.3)
        return self._png(fig)

    def delays(self, buckets: Sequence[Sequence[Any]]) -> str | None:
        if not buckets or not any(int(b[1]) for b in buckets):
            return None
        fig, ax = self.plt.subplots(figsize=(9, 3.4))
        colours = ["#27ae60" if b[0] == NO_MARKETING_AFTER else "#c0392b" for b in buckets]
        names = [self.label(str(b[0])).replace(" after", "\nafter") for b in buckets]
        ax.bar(names, [int(b[1]) for b in buckets], color=colours)
        ax.set_ylabel("unsubscribes")
        ax.set_xlabel("last marketing message after the unsubscribe")
        ax.grid(axis="y", alpha=0.3)
        return self._png(fig)


def _cjk_font() -> str | None:
    """Family name of an installed font that can draw Chinese, registered with matplotlib."""
    from matplotlib import font_manager

    fc_list = shutil.which("fc-list")
    if fc_list is not None:
        try:
            out = subprocess.run(
                [fc_list, ":lang=zh", "file"], capture_output=True, text=True, timeout=10
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            path = line.split(":", 1)[0].strip()
            if not path:
                continue
            try:
                font_manager.fontManager.addfont(path)
                return str(font_manager.FontProperties(fname=path).get_name())
            except (OSError, RuntimeError, ValueError):
                continue
    hints = ("cjk", "wenquanyi", "source han", "simhei", "yahei", "pingfang", "noto sans sc")
    for font in font_manager.fontManager.ttflist:
        if any(h in font.name.lower() for h in hints):
            return str(font.name)
    return None


# -- HTML ---------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,"Segoe UI","PingFang SC","Microsoft YaHei","Noto Sans CJK SC",
sans-serif;margin:2em auto;max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #2e86c1;padding-bottom:.2em;
margin-top:2em}h3{margin-top:1.4em}table{border-collapse:collapse;margin:.6em 0 1.2em;
font-size:.92em}th,td{border:1px solid #ccd;padding:.25em .6em;text-align:left;
vertical-align:top}th{background:#eef3f8}td.num{text-align:right;font-variant-numeric:
tabular-nums}.sev-critical{color:#c0392b;font-weight:600}.sev-major{color:#d35400}
.sev-minor{color:#9a7d0a}.muted{color:#667;font-size:.9em}img{max-width:100%;
border:1px solid #dde}nav a{margin-right:1em}code{font-size:.9em}.ex{font-size:.85em}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any) -> str:
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return _e(value)


def _table_head(table_id: str | None, headers: Sequence[str]) -> str:
    tid = f' id="{_e(table_id)}"' if table_id else ""
    return (
        f"<table{tid}><thead><tr>"
        + "".join(f"<th>{_e(h)}</th>" for h in headers)
        + ("</tr></thead><tbody>")
    )


def _table(
    table_id: str | None,
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    numeric: Iterable[int] = (),
    row_attr: str | None = None,
) -> str:
    nums = set(numeric)
    out = [_table_head(table_id, headers)]
    empty = True
    for row in rows:
        empty = False
        key = "|".join(str(c) for i, c in enumerate(row) if i not in nums)
        attr = f' data-key="{_e(key)}"' if row_attr else ""
        out.append(f"<tr{attr}>")
        for i, cell in enumerate(row):
            if i in nums:
                out.append(f'<td class="num">{_num(cell)}</td>')
            elif headers[i].lower() == "severity":
                out.append(f'<td class="sev-{_e(cell)}">{_e(cell)}</td>')
            else:
                out.append(f"<td>{_e(cell)}</td>")
        out.append("</tr>")
    if empty:
        out.append(f'<tr><td colspan="{len(headers)}" class="muted">none</td></tr>')
    out.append("</tbody></table>")
    return "".join(out)


def _img(b64: str | None, alt: str, img_id: str) -> str:
    if b64 is None:
        return '<p class="muted">no data to chart</p>'
    return f'<p><img id="{_e(img_id)}" alt="{_e(alt)}" src="data:image/png;base64,{b64}"></p>'


def _examples(examples: Sequence[dict[str, Any]]) -> str:
    parts = []
    for ex in examples:
        bits = [f"<code>{_e(ex.get('alert_id'))}</code>"]
        if ex.get("event_id"):
            bits.append(f"event {_e(ex['event_id'])}")
        if ex.get("ts"):
            bits.append(_e(ex["ts"]))
        if ex.get("msisdn_masked"):
            bits.append(_e(ex["msisdn_masked"]))
        if ex.get("detail"):
            bits.append(_e(ex["detail"]))
        parts.append("<div>" + " · ".join(bits) + "</div>")
    return '<div class="ex">' + "".join(parts) + "</div>"


def render_html(data: ReportData, charts: Charts | None = None) -> str:
    """The whole report as one HTML document."""
    charts = charts or Charts()
    t = data.totals
    period = " – ".join(_e(p) for p in data.period) if data.period else "no events"
    out: list[str] = [
        '<!DOCTYPE html><html lang="zh-CN"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(data.title)}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_e(data.title)}</h1>",
        f'<p class="muted">Event time {period} ({_e(data.timezone)}) · generated '
        f"{_e(data.generated_at)} by smsmon audit</p></header>",
        '<nav><a href="#totals">Totals</a><a href="#timeline">Over time</a>'
        '<a href="#offenders">Top offenders</a><a href="#unsubscribes">Unsubscribes</a>'
        '<a href="#parameters">Parameters</a><a href="#malformed">Malformed input</a></nav>',
    ]

    # totals
    out.append('<section id="totals"><h2>Totals 总览</h2>')
    total_rows = [
        ("records read from event files", t.get("event_records", 0)),
        ("events processed", t.get("events", 0)),
        ("warm-up events before --since (state only)", t.get("warmup_events", 0)),
        ("repeated event_ids (counted once)", t.get("duplicates", 0)),
        ("malformed lines skipped (all inputs)", t.get("malformed", 0)),
        ("consent records applied", t.get("consent_records", 0)),
        ("complaints", t.get("complaints", 0)),
        ("alerts", t.get("alerts", 0)),
        ("per-message alerts", t.get("per_message_alerts", 0)),
        ("aggregate (windowed) alerts", t.get("aggregate_alerts", 0)),
        ("unsubscribes attributed", t.get("unsubscribes_attributed", 0)),
        ("unsubscribes unattributed", t.get("unsubscribes_unattributed", 0)),
    ]
    out.append(_table("totals-table", ["", "count"], total_rows, numeric=[1], row_attr="key"))
    out.append("<h3>Events by kind and category</h3>")
    out.append(
        _table(
            "events-by-kind",
            ["kind", "category", "events"],
            data.events_by_kind,
            numeric=[2],
            row_attr="key",
        )
    )
    out.append("<h3>Alerts by rule and severity</h3>")
    out.append(
        _table(
            "alerts-by-rule",
            ["rule", "severity", "alerts"],
            data.alerts_by_rule,
            numeric=[2],
            row_attr="key",
        )
    )
    by_sev = {s: 0 for s in SEVERITIES}
    for _, sev, n in data.alerts_by_rule:
        by_sev[str(sev)] = by_sev.get(str(sev), 0) + int(n)
    out.append(
        _table(
            "alerts-by-severity",
            ["severity", "alerts"],
            [(s, n) for s, n in by_sev.items()],
            numeric=[1],
            row_attr="key",
        )
    )
    out.append(_img(charts.by_rule(data.alerts_by_rule), "alerts by rule", "chart-rules"))
    out.append("<h3>Marketing alerts by sector</h3>")
    sectors: dict[str, int] = {}
    for sector, _, n in data.marketing_by_sector:
        sectors[str(sector)] = sectors.get(str(sector), 0) + int(n)
    out.append(
        _table(
            "marketing-by-sector",
            ["sector", "alerts"],
            sorted(sectors.items()),
            numeric=[1],
            row_attr="key",
        )
    )
    out.append(
        _table(
            "marketing-by-sector-and-rule",
            ["sector", "rule", "alerts"],
            data.marketing_by_sector,
            numeric=[2],
            row_attr="key",
        )
    )
    out.append("<h3>Malformed lines by reason</h3>")
    out.append(
        _table(
            "malformed-by-reason",
            ["reason", "lines"],
            data.malformed_by_reason,
            numeric=[1],
            row_attr="key",
        )
    )
    out.append("<h3>Inputs</h3>")
    out.append(
        _table(
            "inputs",
            ["input", "file", "records", "malformed"],
            [(i["kind"], i["file"], i["records"], i["malformed"]) for i in data.inputs],
            numeric=[2, 3],
        )
    )
    out.append("</section>")

    # timeline
    unit = data.series.get("unit", "hour")
    out.append('<section id="timeline"><h2>Traffic and violations over time 流量与违规趋势</h2>')
    out.append(
        f'<p class="muted">Events (top) and alerts by severity (bottom) per {_e(unit)} of '
        "event time. Aggregate alerts are placed at their window.</p>"
    )
    out.append(
        _img(
            charts.timeline(data.series, data.timezone),
            "traffic and violations over time",
            "chart-timeline",
        )
    )
    out.append("</section>")

    # offenders
    out.append('<section id="offenders"><h2>Top offenders per rule 违规主体排行</h2>')
    out.append(
        '<p class="muted">For each rule, the enterprises, ports, signatures and accounts with '
        "the most alerts, with example evidence (alert ids, masked numbers, detail).</p>"
    )
    if not data.offenders:
        out.append('<p class="muted">no alerts</p>')
    for block in data.offenders:
        rule, sev = block["rule"], block["severity"]
        out.append(
            f'<h3 id="rule-{_e(rule)}">{_e(rule)} <span class="sev-{_e(sev)}">{_e(sev)}</span>'
            f" · {_num(block['total'])} alerts</h3>"
        )
        for dim in DIMENSIONS:
            rows = block["dims"].get(dim)
            if not rows:
                continue
            out.append(f"<h4>{_e(DIMENSION_TITLES[dim])}</h4>")
            out.append(_table_head(f"offenders-{rule}-{dim}", [dim, "alerts", "examples"]))
            for r in rows:
                out.append(
                    f'<tr data-key="{_e(r["value"])}"><td>{_e(r["value"])}</td>'
                    f'<td class="num">{_num(r["count"])}</td>'
                    f"<td>{_examples(r['examples'])}</td></tr>"
                )
            out.append("</tbody></table>")
    out.append("</section>")

    # unsubscribes
    u = data.unsubscribes
    out.append('<section id="unsubscribes"><h2>Unsubscribe handling 退订处理</h2>')
    out.append(
        f"<p>{_num(u.get('attributed', 0))} unsubscribe replies were attributed to an "
        f"enterprise (and {_num(u.get('unattributed', 0))} could not be). For each attributed "
        "unsubscribe, how long after it the last marketing message from that enterprise to "
        "that subscriber came (until the subscriber consented again). "
        f"{_num(u.get('with_marketing_after', 0))} of them were followed by marketing.</p>"
    )
    buckets = u.get("buckets") or []
    out.append(_img(charts.delays(buckets), "unsubscribe delay distribution", "chart-unsub"))
    out.append(
        _table("unsubscribe-buckets", ["last marketing after", "unsubscribes"], buckets, [1], "k")
    )
    out.append("<h3>Worst cases</h3>")
    worst_rows = [
        (
            w.get("msisdn_masked"),
            w.get("enterprise"),
            w.get("unsubscribed_at"),
            w.get("last_marketing_at") or "-",
            format_duration(w.get("delay_s")),
            w.get("marketing_after", 0),
            w.get("any_after", 0),
            ", ".join(w.get("alert_ids") or []) or "-",
        )
        for w in u.get("worst") or []
    ]
    out.append(
        _table(
            "unsubscribe-worst",
            [
                "subscriber",
                "enterprise",
                "unsubscribed at",
                "last marketing at",
                "delay",
                "marketing after",
                "any message after",
                "consent.revoked alerts (examples)",
            ],
            worst_rows,
            numeric=[5, 6],
        )
    )
    out.append("</section>")

    # parameters
    out.append('<section id="parameters"><h2>Parameters 参数</h2>')
    out.append(
        '<p class="muted">The settings and detector thresholds this audit ran with (the same '
        "configuration a live worker with these settings uses). Secrets are never shown.</p>"
    )
    out.append(_table("parameters-table", ["group", "parameter", "value"], data.parameters))
    out.append("</section>")

    # malformed examples
    out.append('<section id="malformed"><h2>Malformed input 格式错误</h2>')
    out.append(
        f"<p>{_num(t.get('malformed', 0))} lines were skipped. The full list (file, line, "
        "reason) is in <code>malformed.csv</code>; the first ones:</p>"
    )
    out.append(
        _table(
            "malformed-examples",
            ["file", "line", "reason", "error"],
            data.malformed_examples,
            numeric=[1],
        )
    )
    out.append("</section>")
    out.append(
        '<footer class="muted"><p>Subscriber numbers appear masked only; message texts are '
        "never included. Alert ids are the same as those of the live pipeline.</p></footer>"
    )
    out.append("</body></html>")
    return "\n".join(out)


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write `report.html` and `report.json` into `out_dir`; returns the HTML path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(data.to_json() + "\n", encoding="utf-8")
    path = out_dir / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


# -- CLI ----------------------------------------------------------------------------------


def cmd_report(_: Settings, args: argparse.Namespace) -> int:
    """Render report.html again from an audit directory's report.json."""
    src = Path(args.audit_dir)
    data = ReportData.from_json((src / "report.json").read_text(encoding="utf-8"))
    out = Path(args.out) if args.out else src / "report.html"
    out.write_text(render_html(data), encoding="utf-8")
    print(f"wrote {out}")
    return 0


def register_cli(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register `smsmon report`."""
    p = sub.add_parser(
        "report",
        help=cmd_report.__doc__,
        description="Render an audit's HTML report again from its report.json.",
    )
    p.add_argument("--audit-dir", required=True, help="an `smsmon audit --out` directory")
    p.add_argument("--out", help="HTML file to write (default: AUDIT_DIR/report.html)")
    p.set_defaults(func=cmd_report)
