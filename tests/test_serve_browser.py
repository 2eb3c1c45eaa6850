"""`sizer serve` in a real browser: headless Chromium (Debian's package, driven by Playwright)
opens the served app on 127.0.0.1, sees the Hardware screen, and a key press switches the step."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (apt-get install -y chromium) to drive"),
    pytest.mark.slow,
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sizer serve exited with {proc.returncode}: {proc.stderr.read()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"sizer serve did not listen on {port}")


# xterm.js draws on a canvas; to read the screen, the page's copy of textual-serve's client keeps
# a reference to its Terminal (nothing else in the client changes).
TERMINAL = re.compile(r"this\.terminal=new (\w+)\.Terminal\(")
SCREEN_JS = """() => { const t = window.__sizerTerminal; if (!t) return "";
    const b = t.buffer.active, rows = [];
    for (let i = 0; i < t.rows; i++) { const line = b.getLine(b.viewportY + i); rows.push(line ? line.translateToString(true) : ""); }
    return rows.join("\\n"); }"""


def expose_terminal(route) -> None:
    body = route.fetch().text()
    assert TERMINAL.search(body), "textual-serve's client no longer creates its Terminal as expected"
    route.fulfill(body=TERMINAL.sub(r"this.terminal=window.__sizerTerminal=new \1.Terminal(", body, count=1),
                  content_type="application/javascript")


def wait_for_text(page, text: str, timeout_ms: int) -> str:
    page.wait_for_function(f"() => ({SCREEN_JS})().includes({text!r})", timeout=timeout_ms)
    return page.evaluate(SCREEN_JS)


def test_served_app_shows_hardware_and_reacts_to_keys(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="Playwright's Python package is not installed")
    port = free_port()
    env = dict(os.environ, SIZER_CACHE_DIR=str(tmp_path / "cache"))
    proc = subprocess.Popen([sys.executable, "-m", "sizer", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1], start_new_session=True)
    try:
        wait_for_port(port, proc)
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.route("**/textual.js", expose_terminal)
            page.goto(f"http://127.0.0.1:{port}/")
            hardware = wait_for_text(page, "step 1 Hardware", 90_000)
            hardware = wait_for_text(page, "RAM ", 90_000)  # detection and measurement done
            page.locator(".xterm").click()
            page.keyboard.press("2")
            wait_for_text(page, "step 2 Task", 30_000)
            task = wait_for_text(page, "banking-intents", 60_000)  # the demo task, loaded by a worker
            browser.close()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert "RAM" in hardware and "Simulate" in hardware
    assert "banking-intents" in task
