"""Frozen backbone: the studio (features computed once, cached) against the plain Keras recipe.

Both train a softmax head on MobileNetV2 alpha 0.35 (ImageNet weights, frozen, BatchNorm in
inference mode) over the real flowers photos, with the same image size, epochs, batch size,
seed, learning rate and the same train/val/test files (the studio's split, written to
split.json and read back by the recipe). The recipe runs the base over every image in every
epoch; the studio runs it once per image and trains the head on the cached outputs. Phases and
their order: see ``compare.py``.

Run: ``.venv/bin/python bench/frozen_vs_recipe.py --epochs 10`` (``--quick`` for a sanity check).
"""

from __future__ import annotations

import compare

FROZEN = compare.Comparison(
    title="frozen backbone: studio vs plain Keras recipe",
    strategy="frozen",
    target_speedup=8.0,
    target_points=1.0,
    learning_rate=1e-3,
)


if __name__ == "__main__":
    compare.main(FROZEN, __doc__.splitlines()[0])
