"""The first visit after a server start never shows Streamlit's raw page list (issue 15).

With a ``pages/`` folder beside app.py, the first script run of a fresh server first sends a menu
of the file names (app, compare, configure, home, train); app.py replaces it with its own as soon
as ``st.navigation`` runs. The browser records every menu it ever holds, from before the page's
own scripts run, so even a menu shown for one frame is caught.
"""

from __future__ import annotations

import ast
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright
from streamlit_server import served

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("TL_SCREENSHOTS", Path(tempfile.gettempdir()) / "tlstudio-screenshots"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
RAW_NAMES = sorted(["app", *(p.stem for p in (ROOT / "pages").glob("*.py"))])
RECORD_MENUS = """
window.__menus = [];
new MutationObserver(() => {
  const links = [...document.querySelectorAll('[data-testid="stSidebarNavLink"]')]
    .map(link => link.innerText.split('\\n').pop().trim());
  const menu = links.join('|');
  if (links.length && window.__menus[window.__menus.length - 1] !== menu) window.__menus.push(menu);
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_app_draws_its_menu_before_importing_anything_heavy():
    """The order the browser test relies on, checked on the source (fast, no browser)."""
    tree = ast.parse((ROOT / "app.py").read_text())
    navigation = next(node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call)
                      and getattr(node.func, "attr", "") == "navigation")
    heavy = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.ImportFrom | ast.Import)
             and any(name.split(".")[0] in ("ui", "tlcore")
                     for name in [getattr(node, "module", None) or "", *(a.name for a in node.names)])]
    assert heavy and navigation < min(heavy)


@pytest.fixture
def cold_server(tmp_path: Path) -> Iterator[str]:
    env = {**os.environ, "TL_HOME": str(tmp_path / "tlhome"), "KERAS_HOME": str(tmp_path / "keras"),
           "TL_DATA_ROOT": str(tmp_path)}
    env.pop("TL_AUTH", None)
    with served("app.py", env, tmp_path / "server.log") as url:
        yield url


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        tab = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
        yield tab
        browser.close()


@pytest.mark.e2e
def test_the_first_visit_after_a_start_shows_only_the_studios_menu(cold_server: str, page: Page):
    page.add_init_script(RECORD_MENUS)
    page.goto(cold_server)
    title = page.get_by_role("heading", name="Transfer-Learning Studio", level=1)
    expect(title).to_be_visible(timeout=90_000)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "first-paint.png"))
    menus = page.evaluate("window.__menus")
    assert menus and all(menu.split("|") != RAW_NAMES for menu in menus), menus
    assert not any(name in menu.split("|") for menu in menus for name in RAW_NAMES), menus
    assert menus[-1].split("|")[0] == "Home"
