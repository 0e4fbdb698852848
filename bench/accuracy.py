"""Test accuracy and wall time: the plain Keras recipe against the studio's frozen default and ``auto``.

On the real flower photos, for each seed: the studio's split is written out as files, so the
recipe trains, validates and tests on exactly the studio's images, and both sides are scored
the same way on the same held-back test photos. Rows:

- recipe frozen: the base frozen, a softmax head, 10 epochs;
- recipe frozen + fine-tuned: then the top quarter of the base unfrozen (BatchNorm kept
  frozen) at a tenth of the rate, 10 more epochs;
- studio frozen: ``TrainSpec(strategy="frozen")`` with its defaults;
- studio auto: a head search on cached features within its budget, then fine-tuning of the
  top blocks with discriminative rates and a cosine schedule, stopping early on val loss.

Each run starts with an empty feature store (a fresh ``TL_HOME``), so the studio pays for its
decode and feature pass every time, as on first use. Targets (means over the seeds): auto at
least 2 points above the recipe's frozen run, at least as accurate as its fine-tuned run, and
faster than the fine-tuned run.

Run: ``.venv/bin/python bench/accuracy.py`` (``--quick`` for a sanity check, ``--seeds 1,2,3``).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import time

import common

RECIPE_RATES = (1e-3, 1e-4)
FINETUNE_FRACTION = 0.25


def options() -> argparse.ArgumentParser:
    p = common.parser(__doc__.splitlines()[0], epochs=10, quick_epochs=2)
    p.add_argument("--seeds", default="42,43,44,45,46,47",
                   help="comma list; each seed is its own split (default six: one test image is "
                        "0.6-0.7 points, so three seeds leave a difference's standard error near 1.5)")
    p.add_argument("--search-budget", type=int, default=None,
                   help="auto's head-search budget in seconds (default: the spec's default)")
    return p


def fresh_home(env: common.BenchEnv) -> None:
    """An empty TL_HOME: no cached pixels or features from the previous row."""
    shutil.rmtree(env.tl_home, ignore_errors=True)
    env.tl_home.mkdir()


def recipe_rows(
    args: argparse.Namespace, env: common.BenchEnv, split: common.FileSplit
) -> list[list[object]]:
    import keras_recipe

    common.reset_keras(args.seed)
    frozen = keras_recipe.run(split, env.weights_224, args.image_size, args.batch_size, args.epochs,
                              args.seed, RECIPE_RATES[0])
    common.reset_keras(args.seed)
    tuned = keras_recipe.run_then_finetune(split, env.weights_224, args.image_size, args.batch_size,
                                           (args.epochs, args.epochs), args.seed, RECIPE_RATES,
                                           FINETUNE_FRACTION)
    return [["recipe frozen", frozen.accuracy, frozen.fit_seconds + frozen.evaluate_seconds],
            ["recipe frozen + fine-tuned", tuned.accuracy, tuned.fit_seconds + tuned.evaluate_seconds]]


def studio_rows(args: argparse.Namespace, env: common.BenchEnv) -> list[list[object]]:
    from tlcore.config import TrainSpec

    rows = []
    frozen_default = {name: getattr(TrainSpec(), name) for name in ("epochs", "batch_size")}
    for label, fields in (("studio frozen (defaults)", {"strategy": "frozen"}),
                          ("studio auto", {"strategy": "auto", "fine_tune_epochs": args.epochs,
                                           **({"search_budget_seconds": args.search_budget}
                                              if args.search_budget else {})})):
        fresh_home(env)
        common.reset_keras(args.seed)
        spec = common.studio_spec(env, args, **fields)
        if label.endswith("(defaults)"):
            spec = dataclasses.replace(spec, train=dataclasses.replace(spec.train, **frozen_default))
        started = time.perf_counter()
        result = common.run_studio(spec)
        rows.append([label, result.accuracy, time.perf_counter() - started])
    return rows


def run(args: argparse.Namespace, env: common.BenchEnv) -> None:
    seeds = [int(seed) for seed in args.seeds.split(",") if seed.strip()]
    common.print_header("test accuracy: plain Keras recipe vs the studio's frozen default and auto", args,
                        {"seeds": seeds, "recipe rates": RECIPE_RATES,
                         "recipe fine-tune fraction": FINETUNE_FRACTION})
    common.warm_up(args.image_size)
    per_seed: dict[str, list[tuple[float, float]]] = {}
    for seed in seeds:
        args.seed = seed
        fresh_home(env)
        split = common.studio_split(env, args)
        print(f"\nseed {seed}: {split.counts()}")
        rows = recipe_rows(args, env, split) + studio_rows(args, env)
        print(common.table(("run", "test accuracy", "wall s"), rows))
        for label, accuracy, seconds in rows:
            per_seed.setdefault(label, []).append((accuracy, seconds))
    summary = {label: (statistics.mean(a for a, _ in values), statistics.mean(s for _, s in values))
               for label, values in per_seed.items()}
    print(f"\nmean over {len(seeds)} seed(s)")
    print(common.table(("run", "test accuracy", "wall s"), [[k, *v] for k, v in summary.items()]))
    auto, frozen = summary["studio auto"], summary["recipe frozen"]
    tuned = summary["recipe frozen + fine-tuned"]
    print(f"\nauto - recipe frozen: {100 * (auto[0] - frozen[0]):+.1f} points (target >= +2): "
          f"{common.verdict(auto[0] - frozen[0] >= 0.02)}")
    print(f"auto - recipe fine-tuned: {100 * (auto[0] - tuned[0]):+.1f} points (target >= 0): "
          f"{common.verdict(auto[0] >= tuned[0])}")
    print(f"auto wall time / recipe fine-tuned: {auto[1] / tuned[1]:.2f} (target < 1): "
          f"{common.verdict(auto[1] < tuned[1])}")


if __name__ == "__main__":
    common.main(options(), run)
