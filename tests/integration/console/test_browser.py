"""End to end: the real console as a subprocess on SQLite, driven by Debian's chromium through
Selenium: log in, filter, open an alert, change its case, search a number, export and check
the evidence pack. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from smsmon.store.db import make_engine
from smsmon.store.schema import Alert, CaseEvent
from tests.integration.conftest import free_port
from tests.unit.console.data import KEY_ID, NUMBERS, SECRET, create_schema, fill

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "console"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PASSWORD = "e2e password 1234"


@dataclass(frozen=True)
class Console:
    url: str
    db_url: str
    log: Path


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"console exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"console did not listen on {port} within {timeout}s:\n{log.read_text()}")


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    """Schema by the store's migrations, test data, users by `add-user` (password on stdin),
    then `python -m smsmon.console serve` on a free loopback port."""
    db_url = f"sqlite:///{tmp_path / 'alerts.db'}"
    engine = make_engine(db_url)
    create_schema(engine)
    fill(engine)
    engine.dispose()
    env = {
        **os.environ,
        "SMSMON_ALERT_DB_URL": db_url,
        "SMSMON_CONSOLE_SECRET": "e2e-" + "x" * 40,
        "SMSMON_MSISDN_SECRET": SECRET,
        "SMSMON_MSISDN_KEY_ID": KEY_ID,
    }
    for name, role in (("handler1", "handler"), ("viewer1", "viewer")):
        done = subprocess.run(
            [sys.executable, "-m", "smsmon.console", "add-user", name, "--role", role],
            input=PASSWORD + "\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr
        assert PASSWORD not in done.stdout + done.stderr
    port = free_port()
    log = tmp_path / "console.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "smsmon.console", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        _wait_port(port, proc, log, 30)
        yield Console(f"http://127.0.0.1:{port}", db_url, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for path in (CHROMIUM, CHROMEDRIVER):
        if not Path(path).exists():
            pytest.fail(f"{path} missing: apt-get install -y chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--lang=en-US",
    ):
        opts.add_argument(arg)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    # An explicit driver path: Selenium Manager (which downloads drivers) never runs.
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def _shot(driver: Any, name: str) -> None:
    """A screenshot of the whole page (up to 3,000 px tall)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, max(1000, min(int(height) + 120, 3000)))
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))
    driver.set_window_size(1400, 1000)


def test_officer_workflow_in_a_real_browser(console: Console, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.ui import WebDriverWait

    d = browser
    wait = WebDriverWait(d, 15)
    find = d.find_element

    # No session: the list sends us to the login page.
    d.get(console.url + "/alerts")
    wait.until(EC.presence_of_element_located((By.ID, "login-form")))
    find(By.ID, "username").send_keys("handler1")
    find(By.ID, "password").send_keys(PASSWORD)
    _shot(d, "01-login")
    find(By.ID, "login").click()
    wait.until(EC.presence_of_element_located((By.ID, "total")))
    assert find(By.ID, "total").text == "61"
    _shot(d, "02-alerts")

    # Filter: critical consent.revoked of 淘宝.
    Select(find(By.ID, "f-rule")).select_by_value("consent.revoked")
    Select(find(By.ID, "f-severity")).select_by_visible_text("critical")
    find(By.ID, "f-enterprise").send_keys("淘宝")
    find(By.ID, "apply").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "total"), "12"))
    rows = d.find_elements(By.CSS_SELECTOR, "table.alerts tbody tr")
    assert len(rows) == 12 and all("consent.revoked" in r.text for r in rows)
    _shot(d, "03-filtered")

    # Open the oldest one: its rule, registry entries and consent timeline.
    d.find_elements(By.CSS_SELECTOR, "a.alert-link")[-1].click()
    wait.until(EC.presence_of_element_located((By.ID, "case-form")))
    assert "marketing after unsubscribe" in find(By.TAG_NAME, "main").text
    assert "revoked" in find(By.ID, "consent").text
    assert find(By.ID, "case-status").text == "open"
    alert_url = d.current_url
    _shot(d, "04-alert")

    Select(find(By.ID, "to-status")).select_by_visible_text("acknowledged")
    find(By.ID, "note").send_keys("forwarded by 12321, checking with 淘宝")
    find(By.ID, "change-case").click()
    wait.until(EC.text_to_be_present_in_element((By.ID, "case-status"), "acknowledged"))
    assert "forwarded by 12321" in find(By.ID, "case-history").text
    _shot(d, "05-case-acknowledged")
    alert_id = alert_url.rsplit("/", 1)[1]
    engine = make_engine(console.db_url)
    with Session(engine) as s:
        assert s.get(Alert, alert_id).case_status == "acknowledged"
        ev = s.execute(select(CaseEvent).where(CaseEvent.alert_id == alert_id)).scalar_one()
        assert (ev.from_status, ev.to_status, ev.actor) == ("open", "acknowledged", "handler1")

    # Number search: the number is posted, the page shows only masked form and hash.
    d.get(console.url + "/search")
    find(By.ID, "number").send_keys("+86 " + NUMBERS[0])
    find(By.ID, "search").click()
    wait.until(EC.presence_of_element_located((By.ID, "all-alerts")))
    assert NUMBERS[0] not in d.page_source and NUMBERS[0] not in d.current_url
    assert "138****8000" in find(By.TAG_NAME, "main").text
    _shot(d, "06-search")

    # Summary of a port.
    rng = {"since": "2026-11-01T00:00", "until": "2026-11-20T00:00"}
    d.get(console.url + "/summary?" + urlencode({"kind": "port", "key": "10690002", **rng}))
    wait.until(EC.presence_of_element_located((By.ID, "per-day")))
    assert find(By.ID, "summary-total").text == "12"
    _shot(d, "07-summary-port")
    rng = {"since": "2026-11-09T00:00", "until": "2026-11-16T00:00"}
    d.get(console.url + "/summary?" + urlencode({"kind": "enterprise", "key": "淘宝", **rng}))
    wait.until(EC.presence_of_element_located((By.ID, "per-day")))
    assert find(By.ID, "summary-total").text == "25"
    _shot(d, "08-summary-enterprise")

    # Export the filtered set and check the pack.
    flt = {"rule": "consent.revoked", "severity": "critical", "enterprise": "淘宝"}
    d.get(console.url + "/alerts?" + urlencode(flt))
    find(By.ID, "export").click()
    downloads: Path = d.downloads
    deadline = time.monotonic() + 30
    zips: list[Path] = []
    while time.monotonic() < deadline:
        zips = [p for p in downloads.glob("*.zip")]
        if zips and not list(downloads.glob("*.crdownload")):
            break
        time.sleep(0.2)
    assert len(zips) == 1, list(downloads.iterdir())
    with zipfile.ZipFile(zips[0]) as z:
        assert sorted(z.namelist()) == ["alerts.csv", "alerts.jsonl", "manifest.json"]
        manifest = json.loads(z.read("manifest.json"))
        files = {n: z.read(n) for n in ("alerts.csv", "alerts.jsonl")}
    assert manifest["row_count"] == 12 and manifest["generated_by"] == "handler1"
    assert manifest["filter"] == flt
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == manifest["files"][name]["sha256"]
        assert len(data) == manifest["files"][name]["bytes"]
        for n in NUMBERS:
            assert n.encode() not in data
    jsonl = [json.loads(x) for x in files["alerts.jsonl"].decode().splitlines()]
    assert len(jsonl) == 12
    assert {r["case_status"] for r in jsonl if r["alert_id"] == alert_id} == {"acknowledged"}

    # The server's log never carries the searched number.
    for n in NUMBERS:
        assert n not in console.log.read_text()

    find(By.ID, "logout").click()
    wait.until(EC.presence_of_element_located((By.ID, "login-form")))
    d.get(console.url + "/alerts")
    wait.until(EC.presence_of_element_located((By.ID, "login-form")))
