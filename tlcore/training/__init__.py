"""Training: the model, its freezing policy, the stages and the loop that fits them.

A stage trains either on images or on cached outputs of the frozen part below it; the loop
does not know which. Speed helpers (BatchNorm folding, the allocator, the feature cache) and
checkpoints live here too, because only training uses them.
"""
