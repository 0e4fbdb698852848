"""The audit's embedding map in real Chromium: hovering a point shows its picture, clicking shows it larger.

AppTest sees the chart's spec, not what Vega draws; this drives the chart itself. The run is a
stand-in with a stored audit of generated pictures (one colour per class, so the hover picture
is told apart from an empty one), rendered by ``audit_map_page.py`` (the audit section alone):
no training, so the whole test takes the server's start and a few seconds.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from playwright.sync_api import Page, expect, sync_playwright
from runfiles import finished_run
from streamlit_server import served

from tlcore.data.bundle import Split
from tlcore.report.audit import SplitEmbeddings, audit_embeddings
from tlcore.report.audit_plots import MAP_PICTURE_PX
from tlcore.runs.auditing import save_audit
from tlcore.runs.store import RunStore

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
COLOURS = np.array([(220, 40, 40), (40, 90, 220)], np.uint8)
PAGE = Path(__file__).with_name("audit_map_page.py")
POINTS = '[data-testid="stVegaLiteChart"] g.mark-symbol path[role="graphics-symbol"]'


def audited_run(store: RunStore) -> str:
    """A finished run whose stored audit maps 16 test pictures; test 0 and 1 are answered wrongly."""
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 20)
    rows = (rng.normal(size=(2, 64))[labels] * 3 + rng.normal(size=(40, 64))).astype(np.float32)
    images = np.repeat(np.repeat(COLOURS[labels][:, None, None, :], 48, axis=1), 48, axis=2)
    images[:, 16:32, 16:32] = 255  # a white square, so the picture is more than a colour
    index = {"train": np.r_[0:10, 20:30], "val": np.r_[10:12, 30:32], "test": np.r_[12:20, 32:40]}
    splits = {name: Split(images[i], labels[i], [f"{name}/{k:02d}.png" for k in range(len(i))])
              for name, i in index.items()}
    embeddings = [SplitEmbeddings(name, split.ids, split.identities, split.labels, rows[index[name]])
                  for name, split in splits.items()]
    predicted = splits["test"].labels.copy()
    predicted[:2] = 1 - predicted[:2]
    run_id = finished_run(store)
    save_audit(store, run_id, audit_embeddings(embeddings, ["poppies", "cornflowers"], predicted), splits)
    return run_id


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    run_id = audited_run(RunStore(tmp_path / "tlhome"))
    env = {**os.environ, "TL_HOME": str(tmp_path / "tlhome"), "TL_AUDIT_RUNS": run_id,
           "PYTHONPATH": str(ROOT)}
    with served(PAGE, env, tmp_path / "server.log") as url:
        yield url


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        # Debian's Chromium: Playwright must never download a browser.
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        browser.close()


def test_hovering_a_point_shows_its_picture_and_clicking_shows_it_beside_the_map(
        server: str, page: Page, tmp_path: Path):
    page.goto(server)
    points = page.locator(POINTS)
    expect(points).to_have_count(16, timeout=90_000)
    wrong = page.locator(f'{POINTS}[aria-label*="(wrong)"]')
    expect(wrong).to_have_count(2)
    label = wrong.first.get_attribute("aria-label")
    assert "base64" not in label, "a screen reader hears the point, not the picture's bytes"
    wrong.first.hover()
    tooltip = page.locator("#vg-tooltip-element")
    picture = tooltip.locator("img")
    expect(picture).to_be_visible()
    assert picture.get_attribute("src").startswith("data:image/jpeg;base64,")
    expect(tooltip.locator("h2")).to_have_text(label.partition(":")[0])
    expect(tooltip).to_contain_text("(wrong)")
    width = picture.evaluate("img => img.complete ? img.naturalWidth : 0")
    assert 0 < width <= MAP_PICTURE_PX, "the picture was decoded, at the hover size"
    page.screenshot(path=str(tmp_path / "audit-map-hover.png"))  # to look at when it fails

    wrong.first.click()
    beside = page.get_by_test_id("stImage").filter(has_text=label.partition(":")[0])
    expect(beside).to_be_visible(timeout=30_000)
    expect(beside.locator("img")).to_be_visible()
