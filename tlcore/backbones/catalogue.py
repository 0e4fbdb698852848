"""The catalogue of Keras applications: facts per backbone and where their weights live.

Everything here is pure data and file-system checks; nothing builds a model. That keeps the
catalogue cheap enough for a UI table that lists, for every row, the widths and sizes whose
ImageNet files are on disk, and for choosing a default backbone that works on this server.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tlcore.errors import BackboneError
from tlcore.paths import keras_models_dir

HUB_PREFIX = "hub:"

# Families whose Keras weight files are named by input size, and whose no-top convolution
# weights fit any input size: a cached 224 px file can stand in for a missing size.
SIZE_NAMED_FAMILIES = ("mobilenet", "mobilenet_v2")
FALLBACK_SIZE = 224

# Keras' own spelling of the MobileNet v1 width multiplier in file names.
_MOBILENET_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}


@dataclass(frozen=True)
class BackboneInfo:
    """Facts about one Keras application, as the UI, the CLI and the model builder need them.

    Attributes:
        name: Catalogue key, snake_case (``mobilenet_v2``).
        title: Name people know it by (``MobileNetV2``).
        family: Architecture family; decides width multipliers and weight-file naming.
        constructor: Name of the ``keras.applications`` function that builds it.
        default_size: Input side the published weights were trained at.
        params: Parameters without the classification top, at ``default_alpha``.
        top1: Published ImageNet top-1 accuracy in percent (Keras applications tables).
        preprocess: Mode of :class:`tlcore.backbones.Preprocess` that turns 0-255 RGB into what
            the backbone expects.
        weights_file: Keras' cache file name for ImageNet no-top weights, with ``{alpha}``,
            ``{alpha_text}`` and ``{rows}`` placeholders where Keras varies it.
        alphas: Width multipliers with ImageNet weights; empty for families without one.
        default_alpha: Width multiplier used when the spec gives none (``None`` without one).
        min_size: Smallest input side Keras accepts for this architecture.
        weight_sizes: Input sizes that have their own ImageNet file; other sizes load the
            224 px file. Empty when one file serves every size.
        notes: One line for people choosing a backbone.
    """

    name: str
    title: str
    family: str
    constructor: str
    default_size: int
    params: int
    top1: float
    preprocess: str
    weights_file: str
    alphas: tuple[float, ...] = ()
    default_alpha: float | None = None
    min_size: int = 32
    weight_sizes: tuple[int, ...] = ()
    notes: str = ""


# Positional fields: name, title, family, constructor, default_size, params, top1,
# preprocess, weights_file.
_ENTRIES = (
    BackboneInfo(
        "mobilenet", "MobileNet", "mobilenet", "MobileNet", 224, 3_228_864, 70.4, "tf",
        "mobilenet_{alpha_text}_{rows}_tf_no_top.h5",
        alphas=(0.25, 0.5, 0.75, 1.0), default_alpha=1.0, weight_sizes=(128, 160, 192, 224),
        notes="Fast and small; alpha 0.25-0.75 suits a 2-core CPU.",
    ),
    BackboneInfo(
        "mobilenet_v2", "MobileNetV2", "mobilenet_v2", "MobileNetV2", 224, 2_257_984, 71.3, "tf",
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{rows}_no_top.h5",
        alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4), default_alpha=1.0,
        weight_sizes=(96, 128, 160, 192, 224),
        notes="The default: good accuracy per CPU second; alphas 1.3 and 1.4 only at 224 px.",
    ),
    BackboneInfo(
        "mobilenet_v3_small", "MobileNetV3 Small", "mobilenet_v3", "MobileNetV3Small", 224,
        939_120, 68.1, "tf", "weights_mobilenet_v3_small_224_{alpha}_float_no_top_v2.h5",
        alphas=(0.75, 1.0), default_alpha=1.0,
        notes="Smallest and fastest; top-1 from the Keras MobileNetV3 table.",
    ),
    BackboneInfo(
        "mobilenet_v3_large", "MobileNetV3 Large", "mobilenet_v3", "MobileNetV3Large", 224,
        2_996_352, 75.6, "tf", "weights_mobilenet_v3_large_224_{alpha}_float_no_top_v2.h5",
        alphas=(0.75, 1.0), default_alpha=1.0,
        notes="More accurate than V2 at similar cost; top-1 from the Keras MobileNetV3 table.",
    ),
    BackboneInfo(
        "efficientnet_b0", "EfficientNet-B0", "efficientnet", "EfficientNetB0", 224, 4_049_571,
        77.1, "none", "efficientnetb0_notop.h5",
        notes="Rescales inside the model, so it takes 0-255 pixels as they are.",
    ),
    BackboneInfo(
        "efficientnet_v2_b0", "EfficientNetV2-B0", "efficientnet_v2", "EfficientNetV2B0", 224,
        5_919_312, 78.7, "torch", "efficientnetv2-b0_notop.h5",
        notes="Accurate for its size; trains faster than EfficientNet-B0.",
    ),
    BackboneInfo(
        "resnet50", "ResNet50", "resnet", "ResNet50", 224, 23_587_712, 74.9, "caffe",
        "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        notes="Classic baseline; slow on a CPU.",
    ),
    BackboneInfo(
        "inception_v3", "InceptionV3", "inception", "InceptionV3", 299, 21_802_784, 77.9, "tf",
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=75,
        notes="Trained at 299 px; needs at least 75 px.",
    ),
    BackboneInfo(
        "vgg16", "VGG16", "vgg", "VGG16", 224, 14_714_688, 71.3, "caffe",
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        notes="Simple and very slow; a teaching reference more than a practical choice.",
    ),
    BackboneInfo(
        "densenet121", "DenseNet121", "densenet", "DenseNet121", 224, 7_037_504, 75.0, "torch",
        "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
        notes="Few parameters for its accuracy, but many layers: slow per image.",
    ),
    BackboneInfo(
        "convnext_tiny", "ConvNeXt Tiny", "convnext", "ConvNeXtTiny", 224, 27_820_128, 81.3,
        "torch", "convnext_tiny_notop.h5",
        notes="Most accurate here and the heaviest; fine-tune it only with time to spare.",
    ),
    BackboneInfo(
        "xception", "Xception", "xception", "Xception", 299, 20_861_480, 79.0, "tf",
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5", min_size=71,
        notes="Trained at 299 px; needs at least 71 px.",
    ),
)

CATALOGUE: dict[str, BackboneInfo] = {info.name: info for info in _ENTRIES}

# Checksums Keras verifies for cached no-top files (md5, or sha256 when 64 hex digits), from
# keras/src/applications. A cached file that fails its check makes Keras download it again,
# deleting the cached copy when the download fails, so tlcore checks first. MobileNet v1 and
# v2 files have no checksum: Keras takes any file with the right name.
_KERAS_CHECKSUMS = {
    "weights_mobilenet_v3_small_224_0.75_float_no_top_v2.h5": "ebdb5cc8e0b497cd13a7c275d475c819",
    "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5": "d3e8ec802a04aa4fc771ee12a9a9b836",
    "weights_mobilenet_v3_large_224_0.75_float_no_top_v2.h5": "40af19a13ebea4e2ee0c676887f69a2e",
    "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5": "07fb09a5933dd0c8eaafa16978110389",
    "efficientnetb0_notop.h5": "50bc09e76180e00e4465e1a485ddc09d",
    "efficientnetv2-b0_notop.h5": "893217f2bb855e2983157299931e43ff",
    "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5": "4d473c1dd8becc155b73f8504c6f6626",
    "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5": "bcbd6486424b2319ff4ef7d526e38f63",
    "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5": "6d6bbae143d832006294945121d1f1fc",
    "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5": "30ee3e1110167f948a6b9946edeeb738",
    "convnext_tiny_notop.h5": "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
    "xception_weights_tf_dim_ordering_tf_kernels_notop.h5": "b0042744bf5b25fce3cb969f33bebb97",
}


def get_backbone_info(name: str) -> BackboneInfo:
    """The catalogue entry for ``name``.

    Raises:
        BackboneError: ``name`` is not in the catalogue (TF Hub models have no entry).
    """
    try:
        return CATALOGUE[name]
    except KeyError:
        raise BackboneError(
            f"Unknown backbone {name!r}.",
            f"Choose one of {', '.join(CATALOGUE)}, or hub:URL_OR_FOLDER for a TF Hub model.",
        ) from None


def resolve_alpha(info: BackboneInfo, alpha: float | None) -> float | None:
    """The width multiplier to build with: ``alpha`` checked against the family, or the default.

    Raises:
        BackboneError: ``alpha`` is given for a family without one, or has no ImageNet weights.
    """
    if alpha is None:
        return info.default_alpha
    if not info.alphas:
        raise BackboneError(
            f"{info.title} has no width multiplier, but alpha={alpha} was given.",
            "Leave alpha empty; only the MobileNet backbones take one.",
        )
    if float(alpha) not in info.alphas:
        raise BackboneError(
            f"{info.title} has no ImageNet weights for alpha={alpha}.",
            f"Choose alpha from {', '.join(str(a) for a in info.alphas)}.",
        )
    return float(alpha)


def check_image_size(info: BackboneInfo, image_size: int) -> None:
    """Refuse sizes the architecture cannot take, before Keras fails in a less clear way."""
    if image_size < info.min_size:
        raise BackboneError(
            f"{info.title} needs images of at least {info.min_size} px, got {image_size} px.",
            f"Raise the image size to {info.min_size} or more, or choose another backbone.",
        )


def expected_weight_file(name: str, alpha: float | None, image_size: int) -> str:
    """The file name Keras looks for in its cache for ImageNet no-top weights of this config.

    MobileNet and MobileNetV2 name files by input size, but only for the sizes that have
    weights; for any other size Keras loads the 224 px file, and so does this name.

    Args:
        name: Catalogue name.
        alpha: Width multiplier; ``None`` means the family default.
        image_size: Input side in pixels.

    Raises:
        BackboneError: Unknown name or invalid alpha.
    """
    info = get_backbone_info(name)
    width = resolve_alpha(info, alpha)
    rows = image_size if image_size in info.weight_sizes else FALLBACK_SIZE
    return info.weights_file.format(
        alpha=width, alpha_text=_MOBILENET_ALPHA_TEXT.get(width, ""), rows=rows
    )


def fallback_weight_file(name: str, alpha: float | None, image_size: int) -> str | None:
    """The 224 px no-top file that can stand in for a missing size-named file, if any.

    ``None`` when the family's files do not depend on the size, or when the expected file
    already is the 224 px one.
    """
    info = get_backbone_info(name)
    if info.family not in SIZE_NAMED_FAMILIES:
        return None
    fallback = expected_weight_file(name, alpha, FALLBACK_SIZE)
    return None if fallback == expected_weight_file(name, alpha, image_size) else fallback


def cached_file_state(file_name: str) -> str:
    """State of a Keras cache file: ``"missing"``, ``"usable"`` or ``"bad-checksum"``."""
    path = keras_models_dir() / file_name
    if not path.is_file():
        return "missing"
    expected = _KERAS_CHECKSUMS.get(file_name)
    if expected is None:
        return "usable"
    stat = path.stat()
    actual = _file_digest(str(path), len(expected), stat.st_size, stat.st_mtime_ns)
    return "usable" if actual == expected else "bad-checksum"


@lru_cache(maxsize=64)
def _file_digest(path: str, hex_length: int, size: int, mtime_ns: int) -> str:
    """Digest the way Keras checks it; size and mtime in the key make an edited file re-hash."""
    del size, mtime_ns  # only part of the cache key
    digest = hashlib.sha256() if hex_length == 64 else hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def weights_on_disk(name: str, alpha: float | None = None, image_size: int | None = None) -> bool:
    """Whether ImageNet weights for this config can be loaded from the cache, without network.

    Counts the 224 px stand-in of MobileNet and MobileNetV2 (see :func:`fallback_weight_file`)
    and refuses files that Keras would reject for their checksum. For ``hub:`` names, whether
    the handle is a local SavedModel folder (a URL is only known to work once loaded).

    Args:
        name: Catalogue name or ``hub:URL_OR_FOLDER``.
        alpha: Width multiplier; ``None`` means the family default.
        image_size: Input side; ``None`` means the backbone's default size.
    """
    if name.startswith(HUB_PREFIX):
        return (Path(name[len(HUB_PREFIX):]).expanduser() / "saved_model.pb").is_file()
    size = image_size or get_backbone_info(name).default_size
    candidates = [expected_weight_file(name, alpha, size), fallback_weight_file(name, alpha, size)]
    return any(file and cached_file_state(file) == "usable" for file in candidates)


@dataclass(frozen=True)
class WeightsOnDisk:
    """The ImageNet no-top weights of one width of a backbone that are in Keras' cache.

    Attributes:
        alpha: Width multiplier; ``None`` for families without one.
        sizes: Input sizes whose own file is on disk (MobileNet, MobileNetV2); empty for
            families whose one file serves every size.
        any_size: Every input size can load weights: the family's one file is there, or the
            224 px no-top file that stands in for the other MobileNet and MobileNetV2 sizes.
    """

    alpha: float | None
    sizes: tuple[int, ...]
    any_size: bool

    def describe(self) -> str:
        """``α 0.35 (224 px)``, ``α 0.5 (128, 160 px only)``, ``α 0.75 (any size)``, ``any size``.

        "only" marks sizes without the 224 px file, which would stand in for the others.
        """
        sizes = f"{', '.join(str(size) for size in self.sizes)} px" if self.sizes else "any size"
        if self.sizes and not self.any_size:
            sizes += " only"
        return f"α {self.alpha:g} ({sizes})" if self.alpha is not None else sizes


def weights_found(name: str) -> list[WeightsOnDisk]:
    """Per width of a catalogue backbone, the ImageNet no-top files Keras would load from its cache.

    MobileNet and MobileNetV2 have one file per width and input size; the 224 px one stands in
    for every size (see :func:`fallback_weight_file`). Other families have one file per width
    for every size. Files that fail Keras' checksum do not count.

    Raises:
        BackboneError: ``name`` is not in the catalogue.
    """
    info = get_backbone_info(name)
    found = []
    for alpha in info.alphas or (None,):
        if info.family in SIZE_NAMED_FAMILIES:
            sizes = tuple(size for size in info.weight_sizes
                          if cached_file_state(expected_weight_file(name, alpha, size)) == "usable")
            if sizes:
                found.append(WeightsOnDisk(alpha, sizes, any_size=FALLBACK_SIZE in sizes))
        elif cached_file_state(expected_weight_file(name, alpha, info.default_size)) == "usable":
            found.append(WeightsOnDisk(alpha, (), any_size=True))
    return found


def describe_catalogue() -> list[dict[str, Any]]:
    """One row per catalogue entry for a UI table or the CLI, with the weights found on disk.

    ``weights_on_disk`` says whether any width has ImageNet weights here, ``widths_on_disk``
    which widths, ``on_disk`` the same in words and ``weights`` per width the sizes (as
    :class:`WeightsOnDisk`). ``size_rule`` states the 224 px stand-in for the families it
    applies to.
    """
    rows = []
    for info in CATALOGUE.values():
        found = weights_found(info.name)
        rows.append({
            "name": info.name,
            "title": info.title,
            "params": info.params,
            "top1": info.top1,
            "default_size": info.default_size,
            "alphas": info.alphas,
            "weights_on_disk": bool(found),
            "widths_on_disk": [entry.alpha for entry in found if entry.alpha is not None],
            "on_disk": ", ".join(entry.describe() for entry in found) or "none",
            "weights": [dataclasses.asdict(entry) for entry in found],
            "size_rule": SIZE_RULE if info.family in SIZE_NAMED_FAMILIES else "",
        })
    return rows


SIZE_RULE = (f"one file per width and input size; the {FALLBACK_SIZE} px no-top file stands in for "
             "any size (without the top, the convolution weights do not depend on the input size)")
"""How MobileNet and MobileNetV2 weights map to input sizes, for the table and the CLI."""


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone and width to start from, and why, in a line for the pages.

    Attributes:
        name: Catalogue name.
        alpha: Width multiplier (``None`` for families without one).
        on_disk: Whether its ImageNet weights are on this server for the image size asked.
        reason: One line saying why this backbone was chosen.
    """

    name: str
    alpha: float | None
    on_disk: bool
    reason: str

    @property
    def title(self) -> str:
        """``MobileNetV2 ×0.35``: the backbone as people read it."""
        width = f" ×{self.alpha:g}" if self.alpha is not None else ""
        return f"{get_backbone_info(self.name).title}{width}"


def default_backbone(image_size: int, preferred: str = "mobilenet_v2",
                     preferred_alpha: float | None = None) -> BackboneChoice:
    """The backbone and width a new experiment starts from: one whose ImageNet weights are here.

    The preferred backbone and width when their weights are on disk for ``image_size``; else
    the first backbone with weights on disk, the preferred one first and then catalogue order
    (the light MobileNets first), at the width nearest its default (the wider on a tie). With
    no weights on disk at all, the preferred backbone, and a reason that says so.

    Args:
        image_size: Input side the experiment will use.
        preferred: Catalogue name to keep when its weights are there (the configured default).
        preferred_alpha: Its width; ``None`` means the family default.
    """
    usual = BackboneChoice(preferred, preferred_alpha or get_backbone_info(preferred).default_alpha,
                           False, "")
    for name in [preferred, *(name for name in CATALOGUE if name != preferred)]:
        info = get_backbone_info(name)
        wanted = usual.alpha if name == preferred else info.default_alpha
        for alpha in sorted(info.alphas or (None,), key=lambda a: (abs((a or 0) - (wanted or 0)), -(a or 0))):
            if image_size >= info.min_size and weights_on_disk(name, alpha, image_size):
                choice = BackboneChoice(name, alpha, True, "")
                reason = (f"{choice.title}: its ImageNet weights are on this server."
                          if (name, alpha) == (usual.name, usual.alpha) else
                          f"{choice.title}, because its ImageNet weights are on this server "
                          f"and those of the usual default, {usual.title}, are not.")
                return dataclasses.replace(choice, reason=reason)
    return dataclasses.replace(usual, reason=(
        f"No ImageNet weights are on this server (Keras' cache, $KERAS_HOME/models, has none): "
        f"{usual.title} will try to download them. Copy the weight files there, or train from scratch."))


# ---- keras-hub presets ---------------------------------------------------------------------

KERAS_HUB_PREFIX = "kerashub:"
PRESET_FILES = ("config.json", "model.weights.h5")
"""What keras-hub reads to build a preset's backbone with its weights (unsharded presets)."""


@dataclass(frozen=True)
class KerasHubPreset:
    """An image preset of keras-hub that the studio lists, as keras-hub's registry describes it.

    Attributes:
        name: keras-hub's preset name (``efficientnet_b0_ra_imagenet``).
        title: Name people know it by.
        family: keras-hub's backbone class.
        params: Parameters of the backbone, from keras-hub's registry.
        default_size: Input side it was trained at; transformers take only that size.
        handle: The versioned Kaggle handle keras-hub downloads it from (and caches it under).
        notes: One line for people choosing a backbone.
    """

    name: str
    title: str
    family: str
    params: int
    default_size: int
    handle: str
    notes: str = ""


# Positional fields: name, title, family, params, default_size, handle (keras-hub 0.32's registry).
_KERAS_HUB_ENTRIES = (
    KerasHubPreset("mobilenet_v3_small_100_imagenet", "MobileNetV3 Small (keras-hub)", "MobileNetBackbone",
                   939_120, 224, "kaggle://keras/mobilenetv3/keras/mobilenet_v3_small_100_imagenet/1",
                   "The smallest; the same network as the catalogue's, with keras-hub's weights."),
    KerasHubPreset("efficientnet_lite0_ra_imagenet", "EfficientNet-Lite0", "EfficientNetBackbone",
                   4_652_008, 224, "kaggle://keras/efficientnet/keras/efficientnet_lite0_ra_imagenet/2",
                   "EfficientNet without squeeze-excite and swish: quick on CPUs and phones."),
    KerasHubPreset("efficientnet_b0_ra_imagenet", "EfficientNet-B0 (RandAugment)", "EfficientNetBackbone",
                   5_288_548, 224, "kaggle://keras/efficientnet/keras/efficientnet_b0_ra_imagenet/2",
                   "timm's RandAugment recipe: more accurate than the Keras application of the same size."),
    KerasHubPreset("resnet_18_imagenet", "ResNet-18", "ResNetBackbone", 11_186_112, 224,
                   "kaggle://keras/resnetv1/keras/resnet_18_imagenet/3", "A light ResNet; blocks by stage."),
    KerasHubPreset("resnet_50_imagenet", "ResNet-50 (keras-hub)", "ResNetBackbone", 23_561_152, 224,
                   "kaggle://keras/resnetv1/keras/resnet_50_imagenet/3"),
    KerasHubPreset("resnet_v2_50_imagenet", "ResNetV2-50", "ResNetBackbone", 23_561_152, 224,
                   "kaggle://keras/resnetv2/keras/resnet_v2_50_imagenet/3", "Pre-activation ResNet."),
    KerasHubPreset("resnet_vd_50_ssld_v2_imagenet", "ResNet-vd-50 SSLD", "ResNetBackbone", 25_629_512, 224,
                   "kaggle://keras/resnet_vd/keras/resnet_vd_50_ssld_v2_imagenet/2",
                   "PaddleClas' distilled ResNet-50: far above the classic one at the same cost."),
    KerasHubPreset("densenet_121_imagenet", "DenseNet-121 (keras-hub)", "DenseNetBackbone", 7_037_504, 224,
                   "kaggle://keras/densenet/keras/densenet_121_imagenet/3"),
    KerasHubPreset("hgnetv2_b4_ssld_stage2_ft_in1k", "HGNetV2-B4", "HGNetV2Backbone", 13_599_072, 224,
                   "kaggle://keras/hgnetv2/keras/hgnetv2_b4_ssld_stage2_ft_in1k/1",
                   "Built for fast inference; distilled on ImageNet-22k."),
    KerasHubPreset("deit_tiny_distilled_patch16_224_imagenet", "DeiT Tiny (distilled)", "DeiTBackbone",
                   5_524_800, 224, "kaggle://keras/deit/keras/deit_tiny_distilled_patch16_224_imagenet/1",
                   "The smallest vision transformer here; takes 224 px only."),
    KerasHubPreset("vit_base_patch16_224_imagenet", "ViT-B/16", "ViTBackbone", 85_798_656, 224,
                   "kaggle://keras/vit/keras/vit_base_patch16_224_imagenet/4",
                   "Vision transformer; 224 px only, blocks are its transformer layers; heavy on a CPU."),
    KerasHubPreset("vit_base_patch16_224_imagenet21k", "ViT-B/16 (ImageNet-21k)", "ViTBackbone", 85_798_656,
                   224, "kaggle://keras/vit/keras/vit_base_patch16_224_imagenet21k/3",
                   "Pre-trained on 21k classes: often transfers better than the 1k one."),
    KerasHubPreset("swin_tiny_patch4_window7_224", "Swin-T", "SwinTransformerBackbone", 27_519_354, 224,
                   "kaggle://keras/swin-transformer/keras/swin_tiny_patch4_window7_224/1",
                   "Shifted-window transformer; 224 px only."),
)

KERAS_HUB_PRESETS: dict[str, KerasHubPreset] = {preset.name: preset for preset in _KERAS_HUB_ENTRIES}


def kaggle_cache_folder(handle: str) -> Path | None:
    """The folder of kagglehub's cache where a versioned ``kaggle://`` handle's files are kept.

    ``None`` without kagglehub (keras-hub is not installed) or for a handle kagglehub cannot
    parse. kagglehub's own layout is used, so ``$KAGGLEHUB_CACHE`` is honoured.
    """
    try:
        from kagglehub.cache import Cache
        from kagglehub.handle import parse_model_handle
    except ImportError:
        return None
    try:
        parsed = parse_model_handle(handle.removeprefix("kaggle://"))
    except ValueError:
        return None
    return Path(Cache().get_path(parsed))


def preset_cached(handle: str) -> bool:
    """Whether keras-hub can build this preset's backbone from kagglehub's cache, without network.

    keras-hub fetches a preset file by file and kagglehub marks each one complete, so every
    file in :data:`PRESET_FILES` must be there and marked; a half-finished download is not.
    """
    try:
        from kagglehub.cache import Cache
        from kagglehub.handle import parse_model_handle
        parsed = parse_model_handle(handle.removeprefix("kaggle://"))
    except (ImportError, ValueError):
        return False
    cache = Cache()
    return all(cache.load_from_cache(parsed, file) is not None for file in PRESET_FILES)


def is_preset_folder(location: str) -> bool:
    """Whether ``location`` holds a preset saved with keras-hub's ``save_to_preset``."""
    return (Path(location).expanduser() / "config.json").is_file()


def describe_kerashub_presets() -> list[dict[str, Any]]:
    """One row per listed keras-hub preset for a UI table or the CLI, saying which need a download.

    ``on_disk`` is whether kagglehub's cache already holds it (it then loads offline);
    ``download`` says the same in words, with the rough size of what would be fetched.
    Presets in a folder need no row: ``kerashub:/path/to/folder`` always loads from disk.
    """
    rows = []
    for preset in KERAS_HUB_PRESETS.values():
        cached = preset_cached(preset.handle)
        rows.append({
            "name": KERAS_HUB_PREFIX + preset.name,
            "title": preset.title,
            "family": preset.family,
            "params": preset.params,
            "default_size": preset.default_size,
            "on_disk": cached,
            "download": ("cached: loads offline" if cached else
                         f"needs a download (about {preset.params * 4 / 1e6:.0f} MB) or a preset folder"),
            "handle": preset.handle,
            "notes": preset.notes,
        })
    return rows
