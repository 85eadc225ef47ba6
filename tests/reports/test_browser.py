"""The report in a real browser: headless Chromium over the DevTools protocol.

Asserts no console errors, no uncaught exceptions, and no network requests other than the
report's own file:// URL and inline data: URLs; saves a screenshot and a PDF print of the
report to tests/artifacts/ for a human to look at. Negative controls prove the probe can fail.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import reports_bundle_factory as synthetic
from helpers import require_tool

from conformance.criteria import KIND_FACTS
from reports.render import render_report

websocket = pytest.importorskip("websocket", reason="pip install websocket-client")

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ROOT = Path(__file__).resolve().parents[2]
CALL_TIMEOUT_S = 60  # a hang guard, not a performance limit
pytestmark = pytest.mark.external


@dataclass
class PageLoad:
    """What the browser observed while loading one page."""

    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    screenshot: bytes = b""
    pdf: bytes = b""
    scroll_width: int = 0  # the page's full width in CSS pixels (1280 when nothing overflows)
    section: dict[str, Any] | None = None  # what load(..., section=ID) measured of that element
    section_shot: bytes = b""  # a screenshot of that element

    def foreign_requests(self, own_url: str) -> list[str]:
        """Every request that is not the page itself or an inline data: URL."""
        return [u for u in self.requests if u != own_url and not u.startswith("data:")]


class DevTools:
    """A minimal DevTools-protocol client over one page target."""

    def __init__(self, ws_url: str) -> None:
        self.ws = websocket.create_connection(ws_url, timeout=CALL_TIMEOUT_S, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        mid = self.next_id
        # wait_for and drain shorten the socket timeout; a call gets the full one back (a
        # screenshot taken after drain() once timed out after its last 0.05 s)
        self.ws.settimeout(CALL_TIMEOUT_S)
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_for(self, event: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["method"] == event for e in self.events):
            if time.monotonic() > deadline:
                raise TimeoutError(event)
            self.ws.settimeout(max(0.1, deadline - time.monotonic()))
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)

    def drain(self, seconds: float) -> None:
        """Collect late events (deferred console errors, lazy requests) for a moment."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.ws.settimeout(max(0.05, end - time.monotonic()))
            try:
                msg = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                break
            if "method" in msg:
                self.events.append(msg)


@pytest.fixture(scope="module")
def browser() -> Iterator[str]:
    """A headless Chromium with remote debugging; yields its HTTP endpoint."""
    exe = require_tool("chromium", "apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="mammocert-chromium-") as profile:
        proc = subprocess.Popen(
            [
                exe,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1280,1600",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (port_file.is_file() and port_file.read_text().count("\n") >= 1):
                if time.monotonic() > deadline or proc.poll() is not None:
                    pytest.fail("chromium did not start its DevTools endpoint")
                time.sleep(0.1)
            yield f"http://127.0.0.1:{port_file.read_text().splitlines()[0]}"
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


SECTION_PROBE = """(() => {
  const e = document.getElementById(%s);
  if (!e) return null;
  const r = e.getBoundingClientRect();
  const wide = [...e.querySelectorAll('table, svg, figure')].filter(
    (x) => x.getBoundingClientRect().right > document.documentElement.clientWidth).length;
  return {x: r.left + scrollX, y: r.top + scrollY, width: r.width, height: r.height,
          svgs: e.querySelectorAll('svg').length, tables: e.querySelectorAll('table').length,
          wider_than_window: wide, text: e.innerText};
})()"""


def load(endpoint: str, url: str, section: str | None = None) -> PageLoad:
    """Open url in a fresh tab at 1280x1600 and record console errors, requests, screenshot, PDF;
    with ``section`` (an element id), also measure that element and take its screenshot."""
    req = urllib.request.Request(f"{endpoint}/json/new?about:blank", method="PUT")
    with urllib.request.urlopen(req, timeout=10) as resp:
        target = json.load(resp)
    dt = DevTools(target["webSocketDebuggerUrl"])
    try:
        for domain in ("Page", "Runtime", "Log", "Network"):
            dt.call(f"{domain}.enable")
        dt.call(
            "Emulation.setDeviceMetricsOverride",
            width=1280,
            height=1600,
            deviceScaleFactor=1,
            mobile=False,
        )
        dt.call("Page.navigate", url=url)
        dt.wait_for("Page.loadEventFired")
        dt.drain(0.5)
        width = dt.call(
            "Runtime.evaluate",
            expression="document.documentElement.scrollWidth",
            returnByValue=True,
        )["result"]["value"]
        shot = dt.call("Page.captureScreenshot", format="png")["data"]
        found, section_shot = None, ""
        if section is not None:
            found = dt.call(
                "Runtime.evaluate",
                expression=SECTION_PROBE % json.dumps(section),
                returnByValue=True,
            )["result"].get("value")
            if found:
                clip = {k: found[k] for k in ("x", "y", "width")}
                clip |= {"height": min(found["height"], 4000), "scale": 1}
                section_shot = dt.call(
                    "Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True
                )["data"]
        pdf = dt.call("Page.printToPDF", printBackground=True, preferCSSPageSize=True)["data"]
    finally:
        dt.ws.close()
        urllib.request.urlopen(f"{endpoint}/json/close/{target['id']}", timeout=10).close()
    page = PageLoad(
        screenshot=base64.b64decode(shot),
        pdf=base64.b64decode(pdf),
        scroll_width=int(width),
        section=found,
        section_shot=base64.b64decode(section_shot),
    )
    for e in dt.events:
        m, p = e["method"], e.get("params", {})
        if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            page.console_errors.append(
                " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            )
        elif m == "Runtime.exceptionThrown":
            page.console_errors.append(p["exceptionDetails"].get("text", "exception"))
        elif m == "Log.entryAdded" and p["entry"].get("level") in ("error", "warning"):
            page.console_errors.append(p["entry"].get("text", ""))
        elif m == "Network.requestWillBeSent":
            page.requests.append(p["request"]["url"])
    return page


@pytest.mark.parametrize("mode", ["certify", "self-test", "demo"])
def test_report_in_chromium(browser: str, tmp_path: Path, mode: str) -> None:
    signing = {"certify": "key", "self-test": "unsigned", "demo": "demo-key"}[mode]
    synthetic.write_bundle(tmp_path, mode=mode, signing=signing)
    url = render_report(tmp_path, KIND_FACTS).resolve().as_uri()
    page = load(browser, url)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"report-{mode}-first-page.png").write_bytes(page.screenshot)
    (ARTIFACTS / f"report-{mode}.pdf").write_bytes(page.pdf)
    assert page.console_errors == []
    assert page.foreign_requests(url) == []
    assert url in page.requests  # the probe saw the page's own request, so it was listening
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 20_000
    assert page.pdf.startswith(b"%PDF")
    assert (
        len(re.findall(rb"/Type\s*/Page[^s]", page.pdf)) >= 3
    )  # printable: A4 pages, appendix on its own


def test_programme_page_in_chromium(browser: str, tmp_path: Path) -> None:
    """`mammocert programme`'s page: self-contained, no console errors, nothing wider than the
    window (its yearly table carries an interval in every cell), figures drawn."""
    import subprocess
    import sys

    import synthetic_set
    import yaml

    from harness.cases.manifest import load_manifest
    from harness.predictions import write_predictions

    synthetic_set.write_set(tmp_path / "cases")
    preds = synthetic_set.predictions(load_manifest(tmp_path / "cases"), 2.5)
    write_predictions(tmp_path / "preds.jsonl", preds)
    std = yaml.safe_load((ROOT / "standards" / "dk-mammo-ai-draft.yaml").read_text())
    std["criteria"] = [c for c in std["criteria"] if c["id"] == "DK-AUC-01"]
    (tmp_path / "std.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    args = ["--predictions", "preds.jsonl", "--cases", "cases", "--standard", "std.yaml"]
    r = subprocess.run(
        [sys.executable, "-m", "mammocert.cli", "programme", *args, "--region", "midtjylland"]
        + ["--operating-point", "0.5", "--replicates", "200", "--draws", "200", "--out", "out"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    url = (tmp_path / "out" / "programme.html").resolve().as_uri()
    page = load(browser, url)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "programme-first-page.png").write_bytes(page.screenshot)
    assert page.console_errors == []
    assert page.foreign_requests(url) == []
    assert page.scroll_width <= 1280, f"the page is {page.scroll_width}px wide in a 1280px window"
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 20_000


def test_report_programme_section_in_chromium(browser: str, tmp_path: Path) -> None:
    """A run under a standard with a ``programme_impact`` block: the report's section is drawn
    (its tables and figures, unverified inputs flagged), self-contained and no wider than the
    window; the same run without the block has no such section (the probe's negative control)."""
    import synthetic_set
    import yaml

    from conformance.engine import RunRequest, run
    from harness.cases.manifest import load_manifest
    from harness.predictions import write_predictions

    synthetic_set.write_set(tmp_path / "cases")
    preds = synthetic_set.predictions(load_manifest(tmp_path / "cases"), 2.5)
    write_predictions(tmp_path / "preds.jsonl", preds)
    std = yaml.safe_load((ROOT / "standards" / "demo.yaml").read_text(encoding="utf-8"))
    std["criteria"] = [c for c in std["criteria"] if c["id"] == "DK-AUC-01"]
    std.pop("programme_impact")  # the demo standard's own block: each page states its own
    block = {
        "costs": "dk-default",
        "region": "midtjylland",
        "protocols": ["ai_second_reader", "ai_triage_masai", "ai_rule_out"],
        "bootstrap": {"replicates": 200},
        "draws": 200,
    }
    pages = {}
    for name, extra in (("with", {"programme_impact": block}), ("without", {})):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(std | extra, sort_keys=False))
        run(
            RunRequest(
                standard=tmp_path / f"{name}.yaml",
                cases=tmp_path / "cases",
                out=tmp_path / name,
                predictions=tmp_path / "preds.jsonl",
                operating_point=0.5,
            )
        )
        url = (tmp_path / name / "report.html").resolve().as_uri()
        pages[name] = (url, load(browser, url, section="programme-impact"))
    url, page = pages["with"]
    assert page.console_errors == []
    assert page.foreign_requests(url) == []
    assert page.scroll_width <= 1280, f"the page is {page.scroll_width}px wide in a 1280px window"
    s = page.section
    assert s is not None, "no programme-impact section in the report"
    assert s["wider_than_window"] == 0
    assert s["tables"] >= 4 and s["svgs"] >= 6  # protocols, 3 tornados, 2 band sweeps, PSA
    assert "Programme impact" in s["text"] and "ai_rule_out" in s["text"]
    assert "region midtjylland" in s["text"] and "not verified in their source" in s["text"]
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report-programme-section.png").write_bytes(page.section_shot)
    assert page.section_shot.startswith(b"\x89PNG") and len(page.section_shot) > 20_000
    assert pages["without"][1].section is None


def test_compare_page_in_chromium(browser: str, tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    """`mammocert compare`'s page: self-contained, no console errors, fits the window with two
    vendors, the ROC overlay drawn."""
    from reports.compare import compare_cli
    from reports.signing import write_attestation

    bundles = []
    for name in ("a", "b"):
        b = tmp_path / name
        synthetic.write_bundle(b)
        render_report(b, KIND_FACTS)
        write_attestation(b, key_path=keypair[0])
        bundles.append(str(b))
    args = type(
        "Args", (), {"bundles": bundles, "key": str(keypair[1]), "out": str(tmp_path / "o")}
    )
    assert compare_cli(args) == 0
    url = (tmp_path / "o" / "compare.html").resolve().as_uri()
    page = load(browser, url)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "compare-first-page.png").write_bytes(page.screenshot)
    assert page.console_errors == []
    assert page.foreign_requests(url) == []
    assert page.scroll_width <= 1280, f"the page is {page.scroll_width}px wide in a 1280px window"
    assert page.screenshot.startswith(b"\x89PNG") and len(page.screenshot) > 20_000


def test_probe_catches_requests_and_console_errors(browser: str, tmp_path: Path) -> None:
    """Negative control: a page that phones home and logs an error is caught by the same probe."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<!DOCTYPE html><html><head><title>x</title></head><body>"
        '<img src="http://127.0.0.1:9/pixel.png" alt="">'
        '<script>console.error("boom")</script></body></html>',
        encoding="utf-8",
    )
    url = bad.resolve().as_uri()
    page = load(browser, url)
    assert any("boom" in e for e in page.console_errors)
    assert "http://127.0.0.1:9/pixel.png" in page.foreign_requests(url)
