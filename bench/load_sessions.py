"""Load test: concurrent sessions against a real ``streamlit run app.py`` on 127.0.0.1.

Streamlit renders over a websocket, so fetching pages over HTTP says nothing about what a person
waits for. The sessions therefore speak the app's own protocol, in up to three phases of
``--duration`` seconds each:

1. ``--sessions`` protocol sessions (``st_client.Session``: the browser's messages over the
   websocket, without a browser) go round the four pages: a new connection on one page, then
   sidebar switches to the other three, a pause of about ``--think`` seconds on each (during
   which the jobs sidebar refreshes on its timer, as in a browser). Every visit to Compare &
   Classify also uploads a JPEG to the classifier. Each render is timed from the request to the
   server's ``script_finished``: the server's work, not the browser's drawing.
2. ``--browser-sessions`` Chromium contexts (Debian's ``/usr/bin/chromium``, never a downloaded
   browser; none by default) do the same in real pages, timed until an element drawn near the
   end of each page is visible: what a person sees, but on this machine the browsers compete
   with the server for the same cores.
3. ``--predict-sessions`` threads call ``tlcore.deploy.serving.load_run(...).predict`` on one image at
   a time, as that many sessions classifying at once would (the shared model serialises them
   behind a lock, so the figure includes the queueing). They run on their own, because they
   load this process's cores, not the server's.

Throughout, one training job runs in its own worker process, as on a busy server. The store is
a temporary ``TL_HOME`` with two finished tiny runs, trained here first; a first single session
warms the server (its times are shown as "cold"). The script only talks to 127.0.0.1, stops by
itself, and always ends its server, its browser and the training job, and removes its files.

Run: ``.venv/bin/python bench/load_sessions.py`` (``--duration 30`` for a shorter look).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import common
import psutil
import st_client

HOST = "127.0.0.1"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGET_P95_S = 2.0
WAIT_S = 60.0
"""Longest wait for one page or one prediction before it counts as a failure."""
UPLOAD_NAME = "photo.jpg"

# URL path -> (page, its title in the sidebar, kind and text of an element drawn near its end).
PAGES: dict[str, tuple[str, str, str, str]] = {
    "": ("home", "Home", "heading", "The classic experiment"),
    "configure": ("configure", "Configure", "button", "Save experiment"),
    "train": ("train", "Train", "heading", "All runs"),
    "compare": ("compare", "Compare & Classify", "heading", "Classify your images"),
}
CHARTS_ON_COMPARE = 5
"""Two curves, two confusion matrices and per-class F1 for two runs; a prediction adds one."""
PAGE_LABELS = [f"{how} {name}" for how in ("load", "switch") for name, _, _, _ in PAGES.values()]


@dataclass
class Samples:
    """Latencies in seconds per label, and what failed; shared by threads and tasks."""

    times: dict[str, list[float]] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    """The first failure of each label, said in one line."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, label: str, seconds: float) -> None:
        with self.lock:
            self.times.setdefault(label, []).append(seconds)

    def fail(self, label: str, error: BaseException) -> None:
        with self.lock:
            self.failures[label] = self.failures.get(label, 0) + 1
            self.reasons.setdefault(label, f"{type(error).__name__}: {error}"[:200])


@dataclass
class Phase:
    """One phase's title, what it measured and, for the session phases, where the CPU went."""

    kind: str
    """"protocol", "browser" or "predict": which verdicts the phase gets."""
    title: str
    samples: Samples = field(default_factory=Samples)
    cold: dict[str, list[float]] = field(default_factory=dict)
    labels: Sequence[str] | None = None
    cpu: CpuSplit | None = None

    def report(self) -> str:
        rows = table_rows(self.samples, self.cold, *([self.labels] if self.labels else []))
        lines = [self.title, common.table(TABLE_HEADERS, rows)]
        lines += [f"first failure of {label}: {reason}"
                  for label, reason in sorted(self.samples.reasons.items())]
        return "\n".join(lines + ([self.cpu.summary()] if self.cpu else []))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.browser_sessions and not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing (apt-get install chromium); no browser is downloaded.")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the cleanup below runs

    temp = Path(tempfile.mkdtemp(prefix="tl-load-"))
    os.environ.update(TL_HOME=str(temp / "home"), KERAS_HOME=str(temp / "keras"),
                      TL_DATA_ROOT=str(temp), TL_AUTH="off", TL_MAX_JOBS="1")
    server: subprocess.Popen | None = None
    try:
        run_ids, seconds = train_finished_runs()
        job = start_training_job() if args.training_jobs else "none"
        port = free_port()
        server = start_server(port, temp / "streamlit.log", args.app)
        print_header(args, port, run_ids, seconds, job)
        run_phases(args, f"http://{HOST}:{port}", server, run_ids, upload_images())
        return 0
    except Exception:
        if (temp / "streamlit.log").exists():
            print("--- streamlit log (tail) ---\n" + (temp / "streamlit.log").read_text()[-3000:])
        raise
    finally:
        stop_server(server)
        stop_training_jobs()
        if args.keep_temp:
            print(f"kept {temp}")
        else:
            shutil.rmtree(temp, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sessions", type=int, default=20,
                   help="protocol sessions browsing and classifying (default 20)")
    p.add_argument("--browser-sessions", type=int, default=0,
                   help="Chromium contexts doing the same afterwards (default 0: no browser)")
    p.add_argument("--predict-sessions", type=int, default=20,
                   help="threads classifying through tlcore.deploy.serving (default 20)")
    p.add_argument("--duration", type=float, default=60.0,
                   help="seconds of each phase (default 60)")
    p.add_argument("--think", type=float, default=5.0,
                   help="mean seconds a person reads a page before the next click; each pause "
                        "is drawn between half and one and a half times it (default 5)")
    p.add_argument("--training-jobs", type=int, default=1, choices=(0, 1),
                   help="1 (default): a job trains throughout; 0: an idle server, for comparison")
    p.add_argument("--app", type=Path, default=common.REPO,
                   help="folder holding the app.py to serve (default: this checkout), to compare versions")
    p.add_argument("--keep-temp", action="store_true", help="keep the temporary TL_HOME and logs")
    return p.parse_args(argv)


def run_phases(args: argparse.Namespace, base: str, server: subprocess.Popen,
               run_ids: list[str], images: list[bytes]) -> None:
    """Warm the server with one session, run the timed phases one after the other, report."""
    warm = Samples()
    asyncio.run(go_round(base, 1, time.monotonic() + 120, warm, images, think=0, rounds=1))
    phases = [Phase("protocol", f"phase 1: {args.sessions} protocol sessions (server time until "
                    "script_finished)", cold=warm.times)]
    with CpuSplit(server.pid) as phases[0].cpu:
        asyncio.run(go_round(base, args.sessions, time.monotonic() + args.duration,
                             phases[0].samples, images, think=args.think))
    if args.browser_sessions:
        phases.append(Phase("browser", f"phase 2: {args.browser_sessions} Chromium contexts (until drawn "
                            "in the browser)"))
        with CpuSplit(server.pid) as phases[-1].cpu:
            asyncio.run(browse(base, args.browser_sessions, time.monotonic() + args.duration,
                               phases[-1].samples, images, think=args.think))
    if args.predict_sessions:
        phases.append(Phase("predict", f"phase 3: {args.predict_sessions} threads calling "
                            "LoadedRun.predict", labels=["predict"]))
        for thread in start_predictors(run_ids, args.predict_sessions,
                                       time.monotonic() + args.duration, phases[-1].samples, images):
            thread.join(timeout=args.duration + WAIT_S)
    print("\n\n".join(phase.report() for phase in phases))
    print_footer(args, server, phases)


# ---- the store: finished runs and one job training -------------------------------------------


def tiny_spec(name: str, epochs: int, **train: object):  # -> tlcore.config.RunSpec
    from tlcore.config import BackboneSpec, DatasetSpec, RunSpec, TrainSpec

    return RunSpec(DatasetSpec(source="builtin:shapes", image_size=48),
                   BackboneSpec("mobilenet_v2", 0.35, "none"),
                   TrainSpec(strategy="frozen", epochs=epochs, **train), name=name)


def train_finished_runs() -> tuple[list[str], float]:
    """Two finished tiny runs, trained in this process as the worker would."""
    from tlcore.runs import jobs
    from tlcore.runs.runner import execute_run
    from tlcore.runs.store import RunStore

    started = time.perf_counter()
    store, ids = RunStore(), []
    for name, rate in (("load A", 1e-3), ("load B", 3e-3)):
        run, _ = store.create_run(tiny_spec(name, 2, learning_rate=rate))
        jobs.claim_for_this_process(store, run.id)
        finished = execute_run(store, run.id)
        if finished.status != "finished":
            raise SystemExit(f"the tiny run ended {finished.status}: {finished.error}")
        ids.append(run.id)
    return ids, time.perf_counter() - started


def start_training_job() -> str:
    """A run that keeps a worker busy for the whole test (the backbone runs every epoch)."""
    from tlcore.runs import jobs

    run = jobs.submit(tiny_spec("background job", 1000, feature_cache=False)).run
    return f"{run.id} ({run.status}, worker pid {run.worker_pid})"


def stop_training_jobs() -> None:
    from tlcore.records import ACTIVE
    from tlcore.runs import jobs
    from tlcore.runs.store import RunStore

    store = RunStore()
    for run in store.list_runs(statuses=ACTIVE):
        jobs.cancel(run.id, store)
    for child in list(jobs._children):  # workers this process started, and only those
        child.terminate()
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
    jobs.reap(store)


# ---- the server ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(port: int, log: Path, app: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.address", HOST,
               "--server.port", str(port), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=app, stdout=out, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/_stcore/health", timeout=2) as answer:
                if answer.read().strip() == b"ok":
                    return server
        except OSError:
            pass
        time.sleep(0.25)
    raise RuntimeError("streamlit did not become healthy within 120 s")


def stop_server(server: subprocess.Popen | None) -> None:
    if server is None or server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)  # its own session: the server and nothing else
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(timeout=15)


# ---- sessions --------------------------------------------------------------------------------


def upload_images() -> list[bytes]:
    """A few JPEGs of the test shapes at phone-photo-like size, as a person would upload."""
    from PIL import Image

    from tlcore.config import DatasetSpec
    from tlcore.data import load_dataset

    bundle = load_dataset(DatasetSpec(source="builtin:shapes", image_size=48))
    images = []
    for pixels in bundle.test.images[:8]:
        buffer = io.BytesIO()
        Image.fromarray(pixels).resize((640, 640)).save(buffer, "JPEG", quality=90)
        images.append(buffer.getvalue())
    return images


def start_predictors(run_ids: list[str], count: int, deadline: float, samples: Samples,
                     images: list[bytes]) -> list[threading.Thread]:
    from tlcore.deploy.serving import load_run

    loaded = [load_run(run_id) for run_id in run_ids]
    for model in loaded:
        model.predict([images[0]])  # warm: the first call builds Keras' predict function

    def classify(index: int) -> None:
        model, calls = loaded[index % len(loaded)], 0
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                model.predict([images[(index + calls) % len(images)]])
                samples.add("predict", time.perf_counter() - started)
            except Exception as exc:  # noqa: BLE001 - counted and reported, the test goes on
                samples.fail("predict", exc)
            calls += 1

    threads = [threading.Thread(target=classify, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    return threads


async def go_round(base: str, sessions: int, deadline: float, samples: Samples,
                   images: list[bytes], think: float, rounds: int | None = None) -> None:
    """``sessions`` protocol sessions at once, until ``deadline`` (or ``rounds`` of 4 pages)."""
    await asyncio.gather(*(protocol_session(base, i, deadline, samples, images, think, rounds)
                           for i in range(sessions)))


async def protocol_session(base: str, index: int, deadline: float, samples: Samples,
                           images: list[bytes], think: float, rounds: int | None) -> None:
    """One person going round the four pages (each session starts at a different one).

    Each round begins with a new connection (a new tab or a refresh); the other three pages
    are reached through the sidebar. Every visit to Compare & Classify also classifies an
    upload. After a failure the next visit starts again from a new connection.
    """
    pause = random.Random(index)
    await asyncio.sleep(pause.uniform(0, think))  # people do not all arrive at once
    paths, visits = list(PAGES), 0
    client: st_client.Session | None = None
    try:
        while time.monotonic() < deadline and (rounds is None or visits < rounds * len(paths)):
            path = paths[(index + visits) % len(paths)]
            client = await visit(base, client, path, visits % len(paths) == 0, samples)
            if client is not None and path == "compare":
                await classify(client, images[(index + visits) % len(images)], samples)
            visits += 1
            if client is not None:
                await read_page(client, think * pause.uniform(0.5, 1.5), samples)
    finally:
        if client is not None:
            await client.close()


async def visit(base: str, client: st_client.Session | None, path: str, new_tab: bool,
                samples: Samples) -> st_client.Session | None:
    """Open ``path`` (a new connection, or a sidebar switch); the session, or None if it failed."""
    name, _, kind, text = PAGES[path]
    how = "load" if new_tab or client is None else "switch"
    try:
        if how == "load":
            if client is not None:
                await client.close()
            client = st_client.Session(base, timeout=WAIT_S)
            render = await client.open(path)
        else:
            render = await client.switch(path)
        check_page(render, kind, text)
        samples.add(f"{how} {name}", render.seconds)
        return client
    except Exception as exc:  # noqa: BLE001 - a timeout or a broken page is a result, not a crash
        samples.fail(f"{how} {name}", exc)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
        return None


def check_page(render: st_client.Render, kind: str, text: str) -> None:
    """A page counts as rendered when it drew its last section and showed no error."""
    if render.errors:
        raise st_client.ProtocolError(f"the page showed an error: {render.errors[0]}")
    if not render.shows(kind, text):
        raise st_client.ProtocolError(f"the page did not draw the {kind} {text!r}")


async def classify(client: st_client.Session, image: bytes, samples: Samples) -> None:
    """Upload ``image`` to the Compare page's classifier; it counts once its chart arrived."""
    try:
        render = await client.upload(UPLOAD_NAME, "image/jpeg", image)
        if render.errors or not render.count("plotly_chart"):
            raise st_client.ProtocolError(f"no predictions chart: {render.errors}")
        samples.add("classify upload", render.seconds)
    except Exception as exc:  # noqa: BLE001 - counted and reported, the session goes on
        samples.fail("classify upload", exc)


async def read_page(client: st_client.Session, seconds: float, samples: Samples) -> None:
    """Stay on the page; the jobs sidebar refreshes on its own timer meanwhile."""
    try:
        for render in await client.idle(seconds):
            samples.add("sidebar refresh", render.seconds)
    except Exception as exc:  # noqa: BLE001
        samples.fail("sidebar refresh", exc)


async def browse(base: str, sessions: int, deadline: float, samples: Samples,
                 images: list[bytes], think: float, rounds: int | None = None) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            await asyncio.gather(*(
                browser_session(browser, base, i, deadline, samples, images, think, rounds)
                for i in range(sessions)))
        finally:
            await browser.close()


async def browser_session(browser, base: str, index: int, deadline: float, samples: Samples,
                  images: list[bytes], think: float, rounds: int | None) -> None:
    """One person going round the four pages (each session starts at a different one).

    Each round begins with a full page load (a new tab or a refresh: the browser fetches the
    app and opens a new session); the other three pages are reached through the sidebar, as
    people move around. Every visit to Compare & Classify also classifies an upload.
    """
    pause = random.Random(index)
    context = await browser.new_context()
    await context.route("**/*", _loopback_only)
    page = await context.new_page()
    paths = list(PAGES)
    visits = 0
    try:
        while time.monotonic() < deadline and (rounds is None or visits < rounds * len(paths)):
            path = paths[(index + visits) % len(paths)]
            name, title, role, text = PAGES[path]
            how = "load" if visits % len(paths) == 0 else "switch"
            started = time.perf_counter()
            try:
                if how == "load":
                    await page.goto(f"{base}/{path}", wait_until="commit", timeout=WAIT_S * 1000)
                else:
                    await page.locator('[data-testid="stSidebarNav"] a').filter(has_text=title).click(
                        timeout=WAIT_S * 1000)
                await page.get_by_role(role, name=text).first.wait_for(state="visible", timeout=WAIT_S * 1000)
                samples.add(f"{how} {name}", time.perf_counter() - started)
                if name == "compare":
                    await classify_upload(page, images[(index + visits) % len(images)], samples)
            except Exception as exc:  # noqa: BLE001 - a timeout is a result, not a crash
                samples.fail(f"{how} {name}", exc)
                with contextlib.suppress(Exception):  # start the next visit from a clean page
                    await page.goto(f"{base}/{path}", wait_until="commit", timeout=WAIT_S * 1000)
            visits += 1
            await asyncio.sleep(think * pause.uniform(0.5, 1.5))
    finally:
        await context.close()


async def classify_upload(page, image: bytes, samples: Samples) -> None:
    started = time.perf_counter()
    try:
        await page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
            files=[{"name": UPLOAD_NAME, "mimeType": "image/jpeg", "buffer": image}])
        charts = page.locator('[data-testid="stPlotlyChart"]')
        await charts.nth(CHARTS_ON_COMPARE).wait_for(state="visible", timeout=WAIT_S * 1000)
        samples.add("classify upload", time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001
        samples.fail("classify upload", exc)


async def _loopback_only(route) -> None:
    if route.request.url.startswith(f"http://{HOST}:") or route.request.url.startswith(f"ws://{HOST}:"):
        await route.continue_()
    else:
        await route.abort()


# ---- report ----------------------------------------------------------------------------------


class CpuSplit:
    """CPU seconds used during a phase by the server, the training worker, the clients (this
    script's protocol sessions, or the browser: in real use each person's own machine) and
    everything else on the machine.

    Processes are sampled every half second and their last cumulative time is kept, so the
    renderer processes that end with their page still count.
    """

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.last: dict[int, tuple[str, float]] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> CpuSplit:
        self.start_times = {pid: cpu for pid, (_, cpu) in self._read().items()}
        self.machine_start = self._machine()
        self.started = time.monotonic()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.seconds = time.monotonic() - self.started
        self.machine = self._machine() - self.machine_start

    def _sample(self) -> None:
        while not self.stop.wait(0.5):
            self.last.update(self._read())
        self.last.update(self._read())

    def _read(self) -> dict[int, tuple[str, float]]:
        me = psutil.Process()
        server = psutil.Process(self.server_pid)
        server_tree = {server.pid, *(p.pid for p in server.children(recursive=True))}
        found = {me.pid: ("this script (protocol clients)", sum(me.cpu_times()[:2]))}
        for process in me.children(recursive=True):
            try:
                used = sum(process.cpu_times()[:2])
                cmdline = " ".join(process.cmdline())
            except psutil.Error:
                continue
            group = ("server" if process.pid in server_tree else
                     "training worker" if "tlcore worker" in cmdline else "browser (clients)")
            found[process.pid] = (group, used)
        return found

    @staticmethod
    def _machine() -> float:
        times = psutil.cpu_times()
        busy = ("user", "nice", "system", "irq", "softirq")
        return sum(getattr(times, name, 0.0) for name in busy)

    def summary(self) -> str:
        used: dict[str, float] = {}
        for pid, (group, cpu) in self.last.items():
            used[group] = used.get(group, 0.0) + cpu - self.start_times.get(pid, 0.0)
        used["other processes on the machine"] = max(0.0, self.machine - sum(used.values()))
        capacity = self.seconds * (psutil.cpu_count() or 1)
        parts = ", ".join(f"{name} {value:.0f} s ({value / capacity:.0%})"
                          for name, value in sorted(used.items(), key=lambda item: -item[1]))
        return (f"CPU during the phase ({self.seconds:.0f} s x {psutil.cpu_count()} CPUs = "
                f"{capacity:.0f} CPU s): {parts}")


TABLE_HEADERS = ["what", "n", "failed", "p50 s", "p95 s", "max s", "first (cold server) s"]
ROW_LABELS = [*PAGE_LABELS, "classify upload", "sidebar refresh"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered), math.ceil(q / 100 * len(ordered))) - 1)]


def stats(values: Sequence[float]) -> list[str]:
    """p50, p95 and max as table cells; dashes when nothing was measured."""
    if not values:
        return ["-", "-", "-"]
    return [f"{percentile(values, 50):.2f}", f"{percentile(values, 95):.2f}", f"{max(values):.2f}"]


def page_renders(samples: Samples) -> list[float]:
    return [t for label in PAGE_LABELS for t in samples.times.get(label, [])]


def table_rows(samples: Samples, cold: dict[str, list[float]],
               labels: Sequence[str] = ROW_LABELS) -> list[list[object]]:
    """One row per label with its n, failures, p50/p95/max and the cold server's first time;
    an "all page renders" row after the pages when they are among ``labels``."""
    rows: list[list[object]] = []
    for label in labels:
        values = samples.times.get(label, [])
        first = cold.get(label, [None])[0]
        rows.append([label, len(values), samples.failures.get(label, 0), *stats(values),
                     f"{first:.2f}" if first is not None else "-"])
        if label == PAGE_LABELS[-1]:
            pages = page_renders(samples)
            failed = sum(samples.failures.get(page, 0) for page in PAGE_LABELS)
            rows.append(["all page renders", len(pages), failed, *stats(pages), ""])
    return rows


def verdicts(checks: dict[str, Sequence[float]]) -> list[str]:
    """One line per check: its p95 against the target (nothing measured counts as not met)."""
    lines = []
    for name, values in checks.items():
        p95 = percentile(values, 95) if values else float("inf")
        lines.append(f"{name:<32} {p95:.2f} s  < {TARGET_P95_S:g} s: "
                     f"{common.verdict(p95 < TARGET_P95_S)}")
    return lines


def print_header(args: argparse.Namespace, port: int, run_ids: list[str], seconds: float,
                 job: str) -> None:
    import streamlit

    print("== load test: concurrent sessions against streamlit run app.py ==")
    print(f"server          {HOST}:{port}, streamlit {streamlit.__version__}, "
          f"{psutil.cpu_count()} logical CPUs, app in {args.app}")
    print(f"store           finished runs {', '.join(run_ids)} (trained in {seconds:.0f} s); "
          f"training job {job}")
    print(f"phase 1         {args.sessions} protocol sessions for {args.duration:g} s: a new "
          "connection, then sidebar switches round the 4 pages, "
          f"{args.think * 0.5:g}-{args.think * 1.5:g} s on each page, one upload classified "
          "per Compare visit")
    if args.browser_sessions:
        print(f"phase 2         {args.browser_sessions} Chromium contexts for {args.duration:g} s, "
              "the same round in real pages")
    if args.predict_sessions:
        print(f"phase 3         {args.predict_sessions} threads calling LoadedRun.predict "
              f"(one JPEG, no pause) for {args.duration:g} s")
    print(f"load (1/5/15 m) {common.load_text()} before the test")
    print()


def print_footer(args: argparse.Namespace, server: subprocess.Popen, phases: list[Phase]) -> None:
    tree = [psutil.Process(server.pid), *psutil.Process(server.pid).children(recursive=True)]
    print(f"\nserver RSS at the end {sum(p.memory_info().rss for p in tree) / 2**20:.0f} MB; "
          f"load (1/5/15 m) {common.load_text()}")
    checks: dict[str, Sequence[float]] = {}
    for phase in phases:
        if phase.kind == "predict":
            checks["predict p95"] = phase.samples.times.get("predict", [])
        else:
            checks[f"page render p95 ({phase.kind})"] = page_renders(phase.samples)
            checks[f"classify upload p95 ({phase.kind})"] = phase.samples.times.get("classify upload", [])
    print("\n".join(verdicts(checks)))
    if checks.get("predict p95"):
        print(f"predict throughput               {len(checks['predict p95']) / args.duration:.1f} "
              f"images/s over {args.predict_sessions} threads")


if __name__ == "__main__":
    sys.exit(main())
