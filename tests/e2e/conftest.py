"""Browser tests: Debian's Chromium driven by Playwright against a real uvicorn server.

Under ``CI=true`` a missing Chromium fails the run; elsewhere these tests skip with a
message saying how to enable them.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from checkoutlab.api.app import create_app
from checkoutlab.config import Settings
from checkoutlab.db import Database
from checkoutlab.demo import seed
from checkoutlab.experiments import service as experiments

CHROMIUM = os.environ.get("CHECKOUTLAB_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT_DIR = Path(os.environ.get("CHECKOUTLAB_E2E_OUTPUT", "test-results/e2e"))


def _require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = (
        f"Chromium not found at {CHROMIUM}: install it with `apt-get install -y chromium` "
        "(or set CHECKOUTLAB_CHROMIUM) to run the browser tests"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(message + " — CI must run them.")
    pytest.skip(message)


@dataclass
class LiveServer:
    url: str
    keys: dict[str, str]
    database: Database

    def api(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.keys['secret_key']}"}
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("e2e")
    database = Database(f"sqlite:///{tmp}/e2e.db")
    database.upgrade()
    with database.session() as session:
        keys = seed(db=session, keys_file=tmp / "demo_keys.json")
        # the demo's running experiment would randomize layouts; these tests pin them
        demo_experiment = experiments.get(
            db=session, merchant_id=keys["merchant_id"], key="list_vs_tabs"
        )
        experiments.stop(db=session, experiment=demo_experiment)
    settings = Settings(
        environment="test",
        database_url=database.url,
        secret_key="e2e-secret-key-long-enough-0123456789abcdef",
        risk_scorer="rules",
    )
    port = _free_port()
    app = create_app(
        settings, database=database, demo_keys=keys, demo_api_base=f"http://127.0.0.1:{port}"
    )
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.1)
    else:
        raise RuntimeError("live server did not start")
    yield LiveServer(url, keys, database)
    server.should_exit = True
    thread.join(timeout=10)
    database.dispose()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    _require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield instance
        instance.close()


@pytest.fixture
def page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.console_errors = []  # type: ignore[attr-defined]
    page.on(
        "console",
        lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
