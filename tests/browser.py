"""Headless Chromium for the tests whose product is a page (the report, the dashboard)."""

import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def render(url: str, screenshot: Path, *, width: int, height: int, wait_ms: int) -> str:
    """The DOM of ``url`` once Chromium has run its scripts for ``wait_ms`` of virtual time,
    with a ``width`` x ``height`` screenshot written to ``screenshot``. Skips the test,
    saying how to install it, where Chromium is absent."""
    if not CHROMIUM.exists():
        pytest.skip("Chromium absent: install it with 'apt-get install -y chromium' (.ci/run does)")
    command = [
        str(CHROMIUM),
        *FLAGS,
        f"--user-data-dir={screenshot.parent / 'chromium-profile'}",
        f"--window-size={width},{height}",
        f"--virtual-time-budget={wait_ms}",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
