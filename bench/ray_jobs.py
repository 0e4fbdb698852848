"""The Ray backend's cost: overhead per run against local workers, and 20 queued runs.

Starts a throwaway Ray head on loopback (two CPUs, as ``tests/integration`` does, from its
``ray_head`` module) and, in one fresh ``TL_HOME`` with the SQLite store, measures:

- **overhead per run**: the same tiny run (builtin shapes at 48 px, MobileNetV2 alpha 0.35 with
  random weights, frozen, 2 epochs; a new learning rate each time so none is reused), alternately
  on local workers and on Ray, after one warm-up run that fills the pixel and feature stores:
  seconds from ``submit`` until the run's first epoch is recorded and until it has finished;
- **20 queued runs**: 20 such runs submitted at once with ``TL_MAX_JOBS=20``: how long
  ``dispatch`` takes to hand them all to Ray (store claims and 20 job submissions), how long
  until the last one recorded its first epoch and finished on the 2-CPU cluster; and the same 20 runs on local
  workers with ``TL_MAX_JOBS=2`` (the same two at a time), for the makespan ratio;
- the resident memory of the Ray head's processes while idle.

    .venv/bin/python bench/ray_jobs.py [--runs 3] [--queued 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import psutil
from common import REPO, load_text, table

sys.path[:0] = [str(REPO / "tests"), str(REPO / "tests" / "support")]
os.environ.setdefault("TL_AUTO_AUDIT", "0")


def tiny_spec(rate: float):  # -> RunSpec
    from specs import tiny_spec as base

    return base("frozen", epochs=2, learning_rate=rate)


def wait(store, run_ids: list[str], field: str, timeout: float = 1800) -> float:
    """Seconds until every run has ``started`` (recorded its first epoch) or ``ended``."""
    start, deadline = time.monotonic(), time.monotonic() + timeout
    while True:
        runs = [store.get(run_id) for run_id in run_ids]
        if all(not r.is_active or (field == "started" and store.epochs(r.id)) for r in runs):
            failed = [r for r in runs if r.status != "finished" and field == "ended"]
            if failed:
                raise SystemExit(f"run {failed[0].id} {failed[0].status}: {failed[0].error}")
            return time.monotonic() - start
        if time.monotonic() > deadline:
            raise SystemExit(f"runs still not {field} after {timeout} s")
        time.sleep(0.1)


def one_run(backend: str | None, rate: float) -> tuple[float, float]:
    """(seconds to the first epoch, seconds to the end) of one run on ``backend``."""
    from tlcore.runs import jobs
    from tlcore.runs.store import RunStore

    os.environ["TL_JOBS"] = backend or "local"
    store = RunStore()
    begin = time.monotonic()
    run_id = jobs.submit(tiny_spec(rate), store).run.id
    submitted = time.monotonic() - begin
    started = submitted + wait(store, [run_id], "started")
    return started, started + wait(store, [run_id], "ended")


def overhead(address: str, runs: int) -> list[list[object]]:
    """Alternate the backends, after one run that fills the pixel and feature stores: every
    measured run then reads its features from disk, whichever backend it runs on."""
    one_run(None, 0.0009)
    rows, rate = [], 0.001
    for index in range(runs):
        for name, backend in (("local", None), ("ray", address)):
            rate += 0.0001
            started, ended = one_run(backend, rate)
            rows.append([index + 1, name, round(started, 2), round(ended, 2)])
    return rows


def queued(backend: str | None, count: int, max_jobs: int, first_rate: float) -> dict[str, float]:
    """Submit ``count`` runs at once; time the hand-over, the last first epoch and the last end."""
    from tlcore.runs import jobs
    from tlcore.runs.store import RunStore

    os.environ.update({"TL_JOBS": backend or "local", "TL_MAX_JOBS": str(max_jobs)})
    store = RunStore()
    begin = time.monotonic()
    ids = [store.create_run(tiny_spec(first_rate + i * 1e-5))[0].id for i in range(count)]
    jobs.dispatch(store)
    handed = time.monotonic() - begin
    started = handed + wait(store, ids, "started")
    return {"handed": handed, "started": started, "ended": started + wait(store, ids, "ended")}


def workers_gone(timeout: float = 120) -> None:
    """Wait until no worker process of this benchmark is left."""
    deadline = time.monotonic() + timeout
    home = os.environ["TL_HOME"]
    while time.monotonic() < deadline:
        mine = [p for p in psutil.process_iter(["cmdline", "environ"])
                if "worker" in (p.info["cmdline"] or []) and (p.info["environ"] or {}).get("TL_HOME") == home]
        if not mine:
            return
        time.sleep(0.2)


def head_memory_mb(head) -> float:
    """Every process of the head (they name its temporary folder on their command lines)."""
    tag = str(head.folder)
    mine = [p for p in psutil.process_iter(["cmdline"]) if tag in " ".join(p.info["cmdline"] or [])]
    owned = {p.pid: p for p in mine}
    for process in list(owned.values()):
        for child in process.children(recursive=True):
            owned.setdefault(child.pid, child)
    return sum(p.memory_info().rss for p in owned.values() if p.is_running()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per backend for the overhead (3)")
    parser.add_argument("--queued", type=int, default=20, help="runs queued at once (20)")
    args = parser.parse_args()
    os.environ["TL_HOME"] = tempfile.mkdtemp(prefix="tl-bench-ray-")
    from integration.ray_head import ray_command, start_head

    ray = ray_command()
    if ray is None:
        raise SystemExit("Ray is not installed (pip install -r requirements.txt)")
    started = time.monotonic()
    head = start_head(ray)
    try:
        print(f"== Ray backend == load {load_text()}, {psutil.cpu_count()} cores; head up in "
              f"{time.monotonic() - started:.1f} s, {head_memory_mb(head):.0f} MB resident while idle")
        rows = overhead(head.jobs_url, args.runs)
        print(table(["#", "backend", "submit -> first epoch (s)", "submit -> finished (s)"], rows))
        for name in ("local", "ray"):
            mine = [row for row in rows if row[1] == name]
            print(f"{name}: mean {sum(r[2] for r in mine) / len(mine):.2f} s to start, "
                  f"{sum(r[3] for r in mine) / len(mine):.2f} s to finish")
        local = queued(None, args.queued, 2, 0.02)
        workers_gone()  # a worker dispatches once more as it exits: with its own TL_JOBS
        on_ray = queued(head.jobs_url, args.queued, args.queued, 0.01)
        headers = ["backend", f"{args.queued} runs handed over (s)", "last first epoch (s)", "last end (s)"]
        rows = [[f"ray (TL_MAX_JOBS={args.queued}, 2 CPUs)", *(round(v, 2) for v in on_ray.values())],
                ["local (TL_MAX_JOBS=2)", *(round(v, 2) for v in local.values())]]
        print(table(headers, rows))
        print(f"makespan ray / local: {on_ray['ended'] / local['ended']:.2f}; load {load_text()}")
    finally:
        head.stop()


if __name__ == "__main__":
    main()
