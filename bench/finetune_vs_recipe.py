"""Fine-tuning the top quarter: the studio (frozen lower part cached) against the Keras recipe.

The recipe unfreezes the top quarter of MobileNetV2 alpha 0.35's layers (BatchNorm layers kept
frozen, so they stay in inference mode), compiles at a low learning rate and fits over the
image files, so every epoch runs the whole base forward and the top quarter backward. The
studio's ``finetune`` strategy with ``fine_tune_fraction=0.25`` unfreezes the same layers, runs
the frozen part below the last single-tensor cut once per image and trains the rest on those
cached feature maps. Same data, split, size, epochs, batch size, seed and learning rate.
Phases and their order: see ``compare.py``.

Run: ``.venv/bin/python bench/finetune_vs_recipe.py --epochs 10`` (``--quick`` for a sanity check).
"""

from __future__ import annotations

import compare

FINETUNE = compare.Comparison(
    title="fine-tuning the top quarter: studio vs plain Keras recipe",
    strategy="finetune",
    target_speedup=2.5,
    target_points=None,
    learning_rate=1e-4,
    finetune_fraction=0.25,
)


if __name__ == "__main__":
    compare.main(FINETUNE, __doc__.splitlines()[0])
