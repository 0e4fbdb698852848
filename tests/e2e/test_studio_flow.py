"""The studio in real Chromium against ``streamlit run``: a person's whole path, and a cold link.

Each server gets its own ``TL_HOME``, Keras cache and data root, and one training slot. The
runs are tiny (builtin shapes at MobileNetV2's smallest input, alpha 0.35, random weights,
frozen, so the feature cache makes every epoch after the first almost free). The browser only
waits through ``expect(...)`` timeouts; only the server start polls ``/_stcore/health``.
Screenshots are taken on the way (to ``$TL_SCREENSHOTS``, a temp folder unless set; set it to
``docs/screenshots`` to refresh the pictures in README and ``docs/app.md``).
"""

from __future__ import annotations

import io
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec
from tlcore.records import ACTIVE, EpochRecord
from tlcore.runs.store import RunStore
from tlcore.training.estimate import ServerProfile, server_cores

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
STREAMLIT = ROOT / ".venv" / "bin" / "streamlit"
SHOTS = Path(os.environ.get("TL_SCREENSHOTS", Path(tempfile.gettempdir()) / "tlstudio-screenshots"))
"""Where screenshots go; ``TL_SCREENSHOTS=docs/screenshots`` refreshes the README's pictures."""
ASSET_WEIGHTS = ROOT.parent / "shared" / "assets" / "keras-weights"
PRETRAINED = ASSET_WEIGHTS.is_dir()
"""With the shared ImageNet weights the runs learn for real (and the screenshots show it);
without them the same path runs on random weights."""
RUN_SIZE = 96 if PRETRAINED else 32
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 900}
SERVER_START_S = 120
PAGE_MS = 60_000
"""A page's first render may import TensorFlow and draw the builtin dataset."""
EXPECT_MS = 15_000
"""Every other wait: generous, because two cores may be shared with training workers."""
TRAIN_MS = 180_000
SMALLEST_SIZE = 32
"""MobileNetV2's smallest input in the catalogue (``min_size``); 16 is refused."""
SHAPES = ("circle", "square", "triangle", "star", "cross")


# ---- servers ---------------------------------------------------------------------------


@dataclass
class Studio:
    url: str
    home: Path
    process: subprocess.Popen
    run_id: str = ""
    """A run put in the store before the server started (the cold deep link's target)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start_studio(tmp: Path, run_id: str = "") -> Studio:
    """``streamlit run app.py`` on a free port with its own homes; returns once it is healthy."""
    port = _free_port()
    env = {**os.environ, "TL_HOME": str(tmp / "tlhome"), "KERAS_HOME": str(tmp / "keras"),
           "TL_DATA_ROOT": str(tmp), "TL_MAX_JOBS": "1"}
    env.pop("TL_AUTH", None)  # the sign-in gate stays off
    if PRETRAINED:
        shutil.copytree(ASSET_WEIGHTS, tmp / "keras" / "models", dirs_exist_ok=True)
    with open(tmp / "server.log", "wb") as log:
        process = subprocess.Popen(
            [str(STREAMLIT), "run", "app.py", "--server.port", str(port), "--server.headless", "true",
             "--browser.gatherUsageStats", "false"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, ended as one at teardown
        )
    studio = Studio(f"http://127.0.0.1:{port}", tmp / "tlhome", process, run_id)
    deadline = time.monotonic() + SERVER_START_S
    while not _healthy(studio.url):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop_studio(studio)
            tail = (tmp / "server.log").read_text(errors="replace")[-3000:]
            pytest.fail(f"streamlit did not become healthy on {studio.url}:\n{tail}")
        time.sleep(0.25)
    return studio


def _stop_studio(studio: Studio) -> None:
    """Cancel queued runs, end the server, then the training workers it started.

    Workers run in sessions of their own (they outlive the app by design), so the server's
    process group does not reach them; their pids are in the run store.
    """
    store = RunStore(studio.home)
    for run in store.list_runs(statuses=ACTIVE):
        store.request_stop(run.id)  # queued runs end at once, so no worker starts another
    if studio.process.poll() is None:
        os.killpg(studio.process.pid, signal.SIGTERM)
        try:
            studio.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(studio.process.pid, signal.SIGKILL)
            studio.process.wait(timeout=20)
    for run in store.list_runs():
        if not run.worker_pid:
            continue
        try:
            worker = psutil.Process(run.worker_pid)
            if run.worker_started is not None and abs(worker.create_time() - run.worker_started) >= 1:
                continue  # the pid was recycled: not ours
            worker.terminate()
            worker.wait(timeout=30)
        except psutil.NoSuchProcess:
            continue


@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """One server for the whole walk (its runs are shared by the steps of the walk)."""
    server = _start_studio(tmp_path_factory.mktemp("studio"))
    yield server
    _stop_studio(server)


@pytest.fixture
def cold_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    """A server no browser has visited yet, with one stopped run (two epochs) in its store."""
    tmp = tmp_path_factory.mktemp("cold")
    store = RunStore(tmp / "tlhome")
    spec = RunSpec(DatasetSpec(image_size=SMALLEST_SIZE), BackboneSpec(alpha=0.35, weights="none"),
                   TrainSpec(epochs=2), name="linked run")
    run, _ = store.create_run(spec)
    for epoch in (1, 2):
        store.add_epoch(run.id, EpochRecord(epoch, "frozen", 1.5 / epoch, 0.3 * epoch, 1.6 / epoch,
                                            0.25 * epoch, 1e-3, 1.0, 100.0))
    store.request_stop(run.id)
    server = _start_studio(tmp, run.id)
    yield server
    _stop_studio(server)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    expect.set_options(timeout=EXPECT_MS)
    with sync_playwright() as playwright:
        # Debian's Chromium: Playwright must never download a browser.
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    tab = context.new_page()
    yield tab
    context.close()


# ---- what a person does and sees ---------------------------------------------------------


def idle(page: Page) -> None:
    """Wait until the current script run has ended, so nothing stale is left on screen."""
    expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning",
                                                           timeout=PAGE_MS)


def open_page(page: Page, title: str) -> None:
    """Follow a sidebar navigation link and wait for the page's title."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=title, exact=True).click()
    expect(page.get_by_role("heading", name=title, level=1)).to_be_visible(timeout=PAGE_MS)


def widget(page: Page, key: str) -> Locator:
    """The element of the widget with Streamlit key ``key`` (``"configure.epochs"``)."""
    return page.locator(f".st-key-{key.replace('.', '-')}")


def type_number(page: Page, key: str, value: int) -> None:
    field = widget(page, key).locator("input")
    field.fill(str(value))
    field.press("Enter")
    expect(field).to_have_value(str(value))


def choose(page: Page, key: str, option: str) -> None:
    """Pick ``option`` in a selectbox, as a person does: open it, click the option."""
    box = widget(page, key).get_by_role("combobox")
    choice = page.get_by_role("option", name=option, exact=True)
    for _ in range(3):  # a rerun still painting the page may close the list just opened: reopen it
        box.click()
        box.fill(option)  # as a person types: the long catalogue list then shows the option at once
        try:
            choice.click(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    expect(box).to_have_value(option)


def pick_radio(page: Page, key: str, label: str) -> None:
    widget(page, key).get_by_text(label, exact=True).click()
    expect(widget(page, key).get_by_role("radio", name=label, exact=True)).to_be_checked()


def save_experiment(page: Page, name: str) -> None:
    field = widget(page, "configure.name").locator("input")
    field.fill(name)
    field.press("Enter")
    widget(page, "configure.save").get_by_role("button").click()
    expect(page.get_by_text(f"Saved “{name}”. It is now the current experiment.")).to_be_visible(
        timeout=PAGE_MS)


def launch_and_wait(page: Page, name: str, epochs: int) -> None:
    """On the Train page: launch the current experiment and watch it live until it finished."""
    expect(widget(page, "train.experiment").get_by_role("combobox")).to_have_value(name)
    widget(page, "train.launch").get_by_role("button").click()
    # Live: the Stop button, the job in the sidebar; both exist only while the run is active.
    expect(widget(page, "train.stop").get_by_role("button")).to_be_visible(timeout=PAGE_MS)
    expect(page.get_by_test_id("stSidebar").get_by_text(name, exact=True)).to_be_visible()
    main = page.get_by_test_id("stMain")
    heading = re.compile(f"^{re.escape(name)} · [0-9a-f]{{12}}$")
    expect(main.get_by_role("heading", name=heading)).to_be_visible()
    # Finished: the Stop button goes (the summary is written just before the status changes,
    # so the metrics alone could show up one poll early), the test metrics are there, and the
    # curves hold every epoch.
    expect(widget(page, "train.stop")).to_have_count(0, timeout=TRAIN_MS)
    expect(main.get_by_text("The run failed")).to_have_count(0)
    test_accuracy = main.get_by_test_id("stMetric").filter(has_text="Test accuracy")
    expect(test_accuracy).to_be_visible()
    expect(test_accuracy.get_by_test_id("stMetricValue")).to_have_text(re.compile(r"^\d+\.\d%$"))
    curves = widget(page, "train.curves").get_by_test_id("stPlotlyChart")
    expect(curves).to_be_visible()
    for trace in range(4):  # loss and accuracy, train and validation: one marker per epoch
        points = curves.locator(".scatterlayer .trace").nth(trace).locator(".points path")
        expect(points).to_have_count(epochs)
    expect(curves.locator("[class*=xtitle]")).to_have_text(["epoch", "epoch"])
    idle_sidebar = page.get_by_test_id("stSidebar").get_by_text("No training jobs are running or queued.")
    expect(idle_sidebar).to_be_visible(timeout=PAGE_MS)


def no_errors(page: Page) -> None:
    """Neither a traceback nor the app's last-resort error message is on the page."""
    expect(page.get_by_test_id("stException")).to_have_count(0)
    expect(page.get_by_text("Something went wrong on our side")).to_have_count(0)


def shoot(page: Page, name: str) -> None:
    """A full-page screenshot of a page without errors.

    Streamlit scrolls inside its main area, so the viewport grows to the content first.
    """
    no_errors(page)
    page.mouse.move(VIEWPORT["width"] - 10, VIEWPORT["height"] // 2)  # no hover toolbars in the picture
    page.evaluate("document.activeElement && document.activeElement.blur()")
    idle(page)
    height = page.get_by_test_id("stMain").evaluate("main => main.scrollHeight")
    page.set_viewport_size({"width": VIEWPORT["width"], "height": max(VIEWPORT["height"], height)})
    idle(page)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True, animations="disabled")
    page.set_viewport_size(VIEWPORT)


def star_png(size: int = 96) -> bytes:
    """A yellow five-pointed star on a blue background, like the builtin ``star`` class."""
    image = Image.new("RGB", (size, size), (40, 60, 160))
    points = []
    for i in range(10):
        radius = size * (0.42 if i % 2 == 0 else 0.19)
        angle = math.pi * (i / 5 - 0.5)
        points.append((size / 2 + radius * math.cos(angle), size / 2 + radius * math.sin(angle)))
    ImageDraw.Draw(image).polygon(points, fill=(250, 220, 40))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---- the tests -------------------------------------------------------------------------


def test_configure_train_twice_compare_and_classify(studio: Studio, page: Page) -> None:
    page.goto(studio.url)
    title = page.get_by_role("heading", name="Transfer-Learning Studio", level=1)
    expect(title).to_be_visible(timeout=PAGE_MS)
    expect(page.get_by_role("heading", name="The classic experiment")).to_be_visible()
    expect(page.get_by_test_id("stSidebar").get_by_role("heading", name="Jobs")).to_be_visible()
    shoot(page, "home.png")

    # Configure: the builtin shapes, narrow MobileNetV2; ImageNet weights when the assets exist.
    open_page(page, "Configure")
    expect(widget(page, "configure.kind").get_by_role("radio", name="Built-in demo set")).to_be_checked()
    expect(widget(page, "configure.builtin").get_by_role("combobox")).to_have_value(re.compile(r"^shapes — "))
    choose(page, "configure.backbone", "MobileNetV2")
    type_number(page, "configure.image_size", 16)
    expect(page.get_by_text(f"MobileNetV2 needs images of at least {SMALLEST_SIZE} px")).to_be_visible()
    expect(widget(page, "configure.save").get_by_role("button")).to_be_disabled()
    type_number(page, "configure.image_size", RUN_SIZE)
    expect(page.get_by_text("needs images of at least")).to_have_count(0)
    choose(page, "configure.alpha.mobilenet_v2", "0.35")
    pick_radio(page, "configure.weights", "ImageNet" if PRETRAINED else "None (random)")
    pick_radio(page, "configure.strategy", "frozen (train only the new head)")
    type_number(page, "configure.epochs", 2)

    widget(page, "configure.preview").get_by_role("button").click()
    expect(page.get_by_text(re.compile(r"^5 classes, 350 images \(\d+ for training\)$"))).to_be_visible(
        timeout=PAGE_MS)
    for shape in SHAPES:
        # The sample captions (the counts chart's axis names the classes too).
        expect(page.get_by_test_id("stMain").get_by_role("strong").filter(
            has_text=re.compile(f"^{shape}$"))).to_be_visible()
    expect(page.get_by_test_id("stImage").nth(len(SHAPES) - 1)).to_be_visible()
    expect(widget(page, "configure.counts").get_by_test_id("stPlotlyChart")).to_be_visible()
    expect(page.get_by_test_id("stMetric").filter(has_text="Whole run, 2 epoch(s)")).to_be_visible()
    # No finished run yet, so the estimate is the rule of thumb, for this server's own cores.
    server = re.escape(ServerProfile(cores=server_cores()).label)
    counted = "counted from the dataset.s files"
    basis = re.compile(rf"^Rule of thumb for {server}; \d+ training images, {counted}\.$")
    expect(page.get_by_text(basis)).to_be_visible()
    save_experiment(page, "shapes lr 0.001")
    shoot(page, "configure.png")

    # Train: launch it and watch it to the end.
    page.get_by_role("link", name="Train it now").click()
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=PAGE_MS)
    launch_and_wait(page, "shapes lr 0.001", epochs=2)

    # A second experiment: the same, with the next learning rate up.
    open_page(page, "Configure")
    expect(widget(page, "configure.epochs").locator("input")).to_have_value("2")  # the draft survived
    expect(widget(page, "configure.alpha.mobilenet_v2").get_by_role("combobox")).to_have_value("0.35")
    rate = widget(page, "configure.lr").get_by_role("slider")
    expect(rate).to_have_attribute("aria-valuetext", "0.001")
    rate.focus()
    rate.press("ArrowRight")
    expect(widget(page, "configure.lr").get_by_test_id("stSliderThumbValue")).to_have_text("0.003")
    idle(page)
    save_experiment(page, "shapes lr 0.003")
    page.get_by_role("link", name="Train it now").click()
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=PAGE_MS)
    launch_and_wait(page, "shapes lr 0.003", epochs=2)
    expect(widget(page, "train.runs").get_by_test_id("stDataFrame")).to_be_visible()
    shoot(page, "train.png")

    # Compare & Classify: both runs side by side, then a picture of our own.
    open_page(page, "Compare & Classify")
    chosen = widget(page, "compare.runs")
    for name in ("shapes lr 0.001", "shapes lr 0.003"):
        expect(chosen.get_by_text(re.compile(f"^{re.escape(name)} · "))).to_be_visible()
        expect(page.get_by_test_id("stMetric").filter(has_text=name)).to_be_visible()
    for metric in ("val_accuracy", "val_loss"):
        curves = widget(page, f"compare.{metric}").get_by_test_id("stPlotlyChart")
        expect(curves).to_be_visible()
        expect(curves.locator(".scatterlayer .trace")).to_have_count(2)
    expect(page.get_by_role("heading", name="Test metrics")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").first).to_be_visible()  # the metrics table
    expect(page.get_by_role("heading", name="Is the difference real?")).to_be_visible()
    expect(page.get_by_test_id("stDataFrame").nth(1)).to_be_visible()  # its per-class deltas
    charts = page.get_by_test_id("stMain").get_by_test_id("stPlotlyChart")
    expect(charts).to_have_count(5)  # 2 curves, 2 confusions, F1

    uploader = page.get_by_test_id("stFileUploader")
    uploader.locator("input[type=file]").set_input_files(
        files=[{"name": "my-star.png", "mimeType": "image/png", "buffer": star_png()}])
    expect(uploader.get_by_text("my-star.png")).to_be_visible(timeout=PAGE_MS)
    predictions = page.locator("[class*='st-key-compare-pred-']").get_by_test_id("stPlotlyChart")
    expect(predictions).to_be_visible(timeout=PAGE_MS)
    expect(predictions.locator(".barlayer .trace")).to_have_count(2)  # one bar group per run
    labels = "|".join(SHAPES)
    for name in ("shapes lr 0.001", "shapes lr 0.003"):
        answer = re.compile(f"{re.escape(name)} · [0-9a-f]{{12}}: ({labels}) \\(\\d+%\\)")
        expect(page.get_by_test_id("stCaptionContainer").filter(has_text=answer)).to_be_visible()
    expect(page.get_by_test_id("stImage").filter(has_text="my-star.png")).to_be_visible()
    shoot(page, "compare.png")


def test_a_cold_deep_link_gets_the_frame_and_the_run(cold_studio: Studio, page: Page) -> None:
    run_id = cold_studio.run_id
    page.goto(f"{cold_studio.url}/train?run={run_id}")
    expect(page.get_by_role("heading", name="Train", level=1)).to_be_visible(timeout=PAGE_MS)
    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_role("heading", name="Jobs")).to_be_visible()
    expect(sidebar.get_by_test_id("stSidebarNavLink")).to_contain_text(
        ["Home", "Collect", "Configure", "Train", "Compare & Classify"])
    expect(sidebar.get_by_test_id("stSidebarNavLink")).to_have_count(5)
    expect(page).to_have_url(re.compile(rf"/train\?run={run_id}$"))
    main = page.get_by_test_id("stMain")
    expect(main.get_by_role("heading", name=f"linked run · {run_id}")).to_be_visible()
    expect(main.get_by_text("The run was stopped after the epochs shown.")).to_be_visible()
    expect(main.get_by_test_id("stPlotlyChart")).to_be_visible()
    no_errors(page)
