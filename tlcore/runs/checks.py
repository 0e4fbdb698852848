"""Checks of a whole run spec before anything is saved, queued or trained.

They join the spec's own bounds with what only the backbone catalogue and the file system know
(width multipliers with weights, the smallest input size, a weights file that is not there), so
the Configure page, the job queue and the CLI refuse the same specs with the same words.
"""

from __future__ import annotations

from tlcore.backbones import backbone_block_table
from tlcore.backbones.catalogue import (
    CATALOGUE,
    check_image_size,
    get_backbone_info,
    resolve_alpha,
    weights_on_disk,
)
from tlcore.config import FINE_TUNING, RunSpec
from tlcore.errors import ConfigError, TLError
from tlcore.paths import resolve_weights_path


def spec_problems(spec: RunSpec) -> list[TLError]:
    """Everything that would make ``spec`` fail before training starts, as user errors.

    Covers :meth:`RunSpec.validate` plus the backbone's own limits (width multipliers with
    weights, the smallest input size) and a weights file that does not exist.
    """
    problems: list[TLError] = []
    try:
        spec.validate()
    except TLError as exc:
        problems.append(exc)
    backbone = spec.backbone
    if backbone.name in CATALOGUE:
        info = get_backbone_info(backbone.name)
        for check in (lambda: resolve_alpha(info, backbone.alpha),
                      lambda: check_image_size(info, spec.dataset.image_size)):
            try:
                check()
            except TLError as exc:
                problems.append(exc)
    elif not (backbone.is_hub or backbone.is_kerashub):
        problems.append(ConfigError(f"Unknown backbone {backbone.name!r}.",
                                    "Pick one from the catalogue or give a hub: handle."))
    if backbone.weights not in ("imagenet", "none"):
        problems.extend(_weights_file_problems(backbone.weights, problems))
    if spec.train.fine_tune_blocks and spec.train.strategy in FINE_TUNING and not problems:
        problems.extend(_blocks_problems(spec))
    return problems


def _blocks_problems(spec: RunSpec) -> list[TLError]:
    """A request for more blocks than the backbone has, or for blocks of a TF Hub model, refused
    before a run is queued rather than when its worker plans the stages."""
    backbone, wanted = spec.backbone, spec.train.fine_tune_blocks
    if backbone.is_hub:
        return [ConfigError("TF Hub models declare no blocks to unfreeze.",
                            "Unfreeze a number of layers or a share of them instead.")]
    try:
        blocks = backbone_block_table(backbone, spec.dataset.image_size)
    except TLError as exc:  # a preset that cannot be built here: say why, once
        return [exc]
    if not blocks:
        return [ConfigError(f"{backbone.name} declares no blocks to unfreeze.",
                            "Unfreeze a number of layers or a share of them instead.")]
    if wanted is not None and wanted > len(blocks):
        title = get_backbone_info(backbone.name).title if backbone.name in CATALOGUE else backbone.name
        return [ConfigError(f"{title} has {len(blocks)} blocks ({blocks[0].name} to {blocks[-1].name}); "
                            f"{wanted} cannot be unfrozen.", f"Choose at most {len(blocks)} blocks.")]
    return []


def _weights_file_problems(location: str, known: list[TLError]) -> list[TLError]:
    """A weights path outside the allowed folders is refused without saying whether it exists
    (a shared server must not answer questions about its file system); inside, a missing file
    is named."""
    try:
        path = resolve_weights_path(location)
    except TLError as exc:
        return [] if any(str(p) == str(exc) for p in known) else [exc]
    if path.is_file():
        return []
    return [ConfigError(
        f"The weights file {location!r} does not exist.",
        "Give the path of a .h5 or .weights.h5 file on the server, or choose imagenet / none.",
    )]


def spec_warnings(spec: RunSpec) -> list[str]:
    """Things worth knowing before training that do not stop it."""
    notes = []
    backbone = spec.backbone
    if backbone.weights == "imagenet" and backbone.name in CATALOGUE:
        try:
            on_disk = weights_on_disk(backbone.name, backbone.alpha, spec.dataset.image_size)
        except TLError:
            on_disk = True  # the invalid alpha is reported by spec_problems
        if not on_disk:
            notes.append(
                f"ImageNet weights for {get_backbone_info(backbone.name).title} are not on this "
                "server. Training will try to download them; without internet access it fails "
                "with a clear error. Choose weights 'none' or a backbone whose weights are on disk."
            )
    if backbone.weights == "none" and spec.train.strategy != "scratch":
        notes.append(
            "A frozen backbone with random weights has nothing to transfer: expect accuracy near "
            "chance. Use ImageNet or file weights, or the scratch strategy."
        )
    if spec.train.augmentations and spec.train.strategy == "frozen":
        notes.append("Augmentation makes every epoch of a frozen backbone pay the full forward pass.")
    return notes
