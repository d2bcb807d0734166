"""The audit's HTML report: it parses, has every section, its numbers match alerts.jsonl, its
charts are embedded PNGs, and it holds no raw msisdn, no message text and no unescaped text."""

from __future__ import annotations

import argparse
import base64
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from smsmon.config.settings import Settings
from smsmon.tools import report
from smsmon.tools.scenario import Builder, Scenario
from tests.unit.tools.test_audit import ref_args, reference_files, run_cli, write_jsonl

pytestmark = pytest.mark.unit

SECTIONS = ("totals", "timeline", "offenders", "unsubscribes", "parameters", "malformed")
RAW_MSISDN = re.compile(r"(?<!\d)1\d{10}(?!\d)")
DATA_URI = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


class Page(HTMLParser):
    """Sections, headings, tables (rows of cell texts, with data-key) and images of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[str] = []
        self.headings: list[str] = []
        self.tables: dict[str, list[tuple[str | None, list[str]]]] = {}
        self.images: list[dict[str, str]] = []
        self.stack: list[str] = []
        self._table: str | None = None
        self._row: list[str] | None = None
        self._key: str | None = None
        self._cell: list[str] | None = None
        self._heading: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag not in ("img", "meta", "br"):
            self.stack.append(tag)
        if tag == "section":
            self.sections.append(a.get("id", ""))
        elif tag == "table":
            self._table = a.get("id") or f"table-{len(self.tables)}"
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row, self._key = [], a.get("data-key")
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag in ("h1", "h2", "h3"):
            self._heading = []
        elif tag == "img":
            self.images.append(a)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            if self._row:
                self.tables[self._table].append((self._key, self._row))
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._heading is not None:
            self._heading.append(data)


def number(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Builder(seed=5).build(400)


@pytest.fixture(scope="module")
def audited(scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    files = reference_files(tmp, scenario)
    rows = [ev for _, ev in scenario.events]
    ev = write_jsonl(tmp / "events.jsonl.gz", rows, gz=True)
    bad = write_jsonl(tmp / "bad.jsonl", ["{oops", json.dumps({**rows[0], "msisdn": "1"})])
    out = tmp / "out"
    argv = ["--events", str(ev), str(bad), *ref_args(files), "--out", str(out), "--close-all"]
    assert run_cli(argv) == 0
    return out


@pytest.fixture(scope="module")
def page(audited: Path) -> tuple[str, Page]:
    html = (audited / "report.html").read_text(encoding="utf-8")
    p = Page()
    p.feed(html)
    p.close()
    return html, p


def alerts(out: Path) -> list[dict[str, Any]]:
    lines = (out / "alerts.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line]


def test_report_parses_and_has_every_section(page: tuple[str, Page]) -> None:
    html, p = page
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert p.stack == [], f"unclosed tags: {p.stack}"
    assert p.sections == list(SECTIONS)
    joined = " ".join(p.headings)
    for title in (
        "Totals",
        "Traffic and violations over time",
        "Top offenders per rule",
        "Unsubscribe handling",
        "Parameters",
        "Malformed input",
    ):
        assert title in joined


def test_numbers_match_alerts_jsonl(audited: Path, page: tuple[str, Page]) -> None:
    _, p = page
    got = alerts(audited)
    by_rule = Counter((a["rule"], a["severity"]) for a in got)
    table = {(row[0], row[1]): number(row[2]) for _, row in p.tables["alerts-by-rule"]}
    assert table == dict(by_rule)
    totals = {key: number(row[1]) for key, row in p.tables["totals-table"]}
    assert totals["alerts"] == len(got)
    assert totals["per-message alerts"] == sum(1 for a in got if a.get("event_id"))
    assert totals["aggregate (windowed) alerts"] == sum(1 for a in got if not a.get("event_id"))
    assert totals["malformed lines skipped (all inputs)"] == 2
    sev = {key: number(row[1]) for key, row in p.tables["alerts-by-severity"]}
    assert sev == dict(Counter(a["severity"] for a in got))
    reasons = {key: number(row[1]) for key, row in p.tables["malformed-by-reason"]}
    assert reasons == {"json": 1, "schema:msisdn": 1}
    # marketing alerts split by the sector recognised in the text
    by_sector = Counter(a["sector"] for a in got if a.get("sector"))
    assert by_sector, "the scenario has marketing alerts"
    sectors = {key: number(row[1]) for key, row in p.tables["marketing-by-sector"]}
    assert sectors == dict(by_sector)
    assert set(sectors) <= {"retail", "finance", "other"}
    # every rule has an offenders block whose enterprise counts add up to its alerts
    for rule, n in Counter(a["rule"] for a in got).items():
        rows = p.tables.get(f"offenders-{rule}-enterprise") or p.tables.get(
            f"offenders-{rule}-port"
        )
        assert rows, rule
        assert sum(number(r[1]) for _, r in rows) <= n
        top = Counter(a.get("enterprise") for a in got if a["rule"] == rule and a.get("enterprise"))
        if top:
            first = p.tables[f"offenders-{rule}-enterprise"][0][1]
            assert number(first[1]) == top.most_common(1)[0][1]
            assert any(a["alert_id"] in first[2] for a in got)  # example evidence


def test_unsubscribe_section_matches_the_scenario(
    scenario: Scenario, page: tuple[str, Page]
) -> None:
    _, p = page
    buckets = {key: number(row[1]) for key, row in p.tables["unsubscribe-buckets"]}
    assert sum(buckets.values()) == scenario.unsubscribes
    # every unsubscribe in the scenario is followed by marketing 4 s later
    assert buckets["<= 1 min"] == scenario.unsubscribes
    worst = p.tables["unsubscribe-worst"]
    assert worst and all("****" in row[0] for _, row in worst)
    assert all(row[4] == "4.0 s" for _, row in worst)


def test_charts_are_embedded_pngs(page: tuple[str, Page]) -> None:
    _, p = page
    ids = {img.get("id") for img in p.images}
    assert {"chart-timeline", "chart-rules", "chart-unsub"} <= ids
    for img in p.images:
        src = img["src"]
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 2000


def test_no_raw_msisdn_and_no_message_text(scenario: Scenario, page: tuple[str, Page]) -> None:
    html, _ = page
    visible = DATA_URI.sub("", html)
    assert not RAW_MSISDN.findall(visible)
    numbers = {k for k, _ in scenario.events}
    assert not any(m in html for m in numbers)
    texts = {ev["text"] for _, ev in scenario.events if "text" in ev}
    assert not any(t in html for t in texts if len(t) > 6)


def test_parameters_are_listed_and_secrets_are_not(page: tuple[str, Page]) -> None:
    html, p = page
    names = {row[1] for _, row in p.tables["parameters-table"]}
    assert {"SMSMON_TIMEZONE", "SMSMON_RECENT_HORIZON_DAYS", "flood_total", "volume"} <= names
    assert "unit-test-secret" not in html


def test_all_text_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    data = report.ReportData(
        title=evil,
        alerts_by_rule=[[evil, "critical", 3]],
        offenders=[
            {
                "rule": evil,
                "severity": "critical",
                "total": 3,
                "dims": {
                    "signature": [{"value": evil, "count": 3, "examples": [{"detail": evil}]}]
                },
            }
        ],
        parameters=[["g", evil, evil]],
        malformed_examples=[[evil, 1, "json", evil]],
    )
    html = report.render_html(data)
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_charts_fall_back_to_ascii_labels_without_a_cjk_font(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(report, "_cjk_font", lambda: None)
    charts = report.Charts()
    assert charts.label("淘宝 volume") == "?? volume"
    assert charts.label("port.sublet") == "port.sublet"
    png = charts.by_rule([["淘宝", "critical", 2], ["port.sublet", "major", 1]])
    assert png is not None and base64.b64decode(png)[:4] == b"\x89PNG"


def test_report_command_renders_again_from_report_json(audited: Path, tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    report.register_cli(sub)
    target = tmp_path / "again.html"
    args = parser.parse_args(["report", "--audit-dir", str(audited), "--out", str(target)])
    assert args.func(Settings(msisdn_secret="x"), args) == 0
    p = Page()
    p.feed(target.read_text(encoding="utf-8"))
    assert p.sections == list(SECTIONS)
