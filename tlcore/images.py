"""The one place where an image is decoded: dataset files, uploads and predictions alike.

Every image the studio sees may be hostile (a user upload, a file in a shared folder), and a
model only behaves the same in training and in prediction when both read pixels the same way.
So there is exactly one decoder, :func:`load_image`, and it returns the same thing for every
input: a ``uint8`` RGB array of shape ``(H, W, 3)``.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import simplejpeg
from PIL import Image, ImageOps, UnidentifiedImageError

from tlcore.errors import BadImageError, ConfigError, UploadError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
"""File name endings (compared case-insensitively) that dataset loaders treat as images."""

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
"""Decoders PIL may use; the others (PSD, TGA, EPS, ...) are more attack surface than use."""

MAX_IMAGE_PIXELS = 40_000_000
"""Largest declared width x height accepted; a 40 MP photo is large, anything above is suspect."""

MAX_JPEG_SCANS = 100
"""Most scans a JPEG may hold; photos have 1 (baseline) to about 12 (progressive)."""

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest single image upload, checked by :func:`check_upload_size` before decoding."""

# PIL checks this at open time, from the header, before any pixel is decoded: above it PIL
# warns, above twice it raises DecompressionBombError. The warning band is closed by
# _check_pixel_count, which keeps this thread-safe (a warnings filter per call would not be).
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

_JPEG_FORMATS = ("JPEG", "MPO")
_FAST_JPEG_MODES = ("RGB", "L")
"""JPEG modes libjpeg-turbo brings to RGB itself; CMYK and YCCK go through PIL's conversion."""
_FAST_JPEG_COLORSPACES = ("YCbCr", "RGB", "Gray")
"""The same JPEGs as :data:`_FAST_JPEG_MODES`, as libjpeg-turbo's header names them."""
_EXIF_MARK = b"Exif\x00\x00"
_XMP_ORIENTATION_MARK = b"Orientation"
"""Pillow also takes the orientation from XMP's ``tiff:Orientation`` when EXIF has none."""
_EXIF_ORIENTATION = 0x0112
_UPRIGHT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: a.transpose(1, 0, 2)[:, ::-1],
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: a.transpose(1, 0, 2)[::-1],
}
"""What EXIF orientation asks for, as :func:`PIL.ImageOps.exif_transpose` applies it."""
_WHITE = (255, 255, 255)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")

ImageSource = bytes | str | os.PathLike[str] | np.ndarray


def load_image(source: ImageSource, size: int | None = None) -> np.ndarray:
    """Decode any accepted image source into upright 8-bit RGB pixels.

    Args:
        source: Encoded bytes, a file path, or a pixel array. Arrays may be ``HxW``,
            ``HxWx1``, ``HxWx3`` or ``HxWx4``; ``uint8`` arrays are taken as is. Both float
            conventions are common, so float arrays whose maximum is at most 1 are read as
            0..1 and other float arrays as 0..255 (an all-dark 0..255 image whose brightest
            pixel is 1 would be misread; that is the price of accepting both). Other integer
            arrays are read as 0..255, clipped. Four channels are RGBA.
        size: When given, the image is resized to ``size x size`` (bilinear, no crop) so
            that training and prediction see the same geometry.

    Returns:
        A ``uint8`` array of shape ``(H, W, 3)`` (``(size, size, 3)`` when size is given).

    Raises:
        BadImageError: The source is empty, not an image, corrupt, truncated, in a format
            that is not allowed, or declares more than :data:`MAX_IMAGE_PIXELS` pixels.
        ConfigError: ``size`` is not a positive number of pixels.
    """
    if size is not None and size < 1:
        raise ConfigError(f"Image size must be a positive number of pixels, got {size}.")
    image = _image_from_array(source) if isinstance(source, np.ndarray) else _decode(source, size)
    with _as_bad_image("The image could not be converted"):
        if isinstance(image, np.ndarray):  # scaled JPEG: pixels already, often at the size
            if image.shape[:2] == (size, size):
                return image
            image = Image.fromarray(image)
        if size is not None and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        return np.array(image, dtype=np.uint8)


def check_upload_size(
    n_bytes: int,
    limit: int = MAX_UPLOAD_BYTES,
    hint: str = "Resize or re-compress the image and upload it again.",
) -> None:
    """Refuse an upload before reading it when it is larger than ``limit`` bytes.

    Args:
        n_bytes: Size of the upload.
        limit: Largest size accepted; images use :data:`MAX_UPLOAD_BYTES`, other kinds of
            upload (archives) pass their own cap.
        hint: What the user can do about it.

    Raises:
        UploadError: The upload is too large.
    """
    if n_bytes > limit:
        size_mb = math.ceil(n_bytes * 10 / 2**20) / 10  # rounded up: 20 MB + 1 byte is 20.1 MB
        raise UploadError(
            f"The file is {size_mb:.1f} MB; uploads of this kind may be at most "
            f"{limit / 2**20:.0f} MB.",
            hint,
        )


@contextmanager
def _as_bad_image(what: str) -> Iterator[None]:
    """Turn whatever PIL raises on malformed data into one BadImageError.

    PIL signals bad input with many exception types (OSError, ValueError, SyntaxError,
    struct.error, EOFError, DecompressionBombError, ...), so the catch has to be broad;
    callers only ever see BadImageError.
    """
    try:
        yield
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels() from exc
    except UnidentifiedImageError as exc:
        raise BadImageError(
            f"{what}: it is not a {', '.join(ALLOWED_FORMATS)} image.",
            "Convert it to JPEG or PNG, or remove it.",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - see docstring: PIL has no common base error
        raise BadImageError(
            f"{what}: {str(exc) or type(exc).__name__}.",
            "Check that the file is a complete JPEG, PNG, WebP, BMP or GIF image.",
        ) from exc


def _too_many_pixels() -> BadImageError:
    return BadImageError(
        f"The image declares more than {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels.",
        "Downscale it before using it; images this large are refused as a safety measure.",
    )


def _decode(source: bytes | str | os.PathLike[str], size: int | None = None) -> Image.Image | np.ndarray:
    """Open, fully decode and normalise an encoded image (bytes or path).

    The file is read once: the JPEG scan check, the header and the decoder share its bytes.
    """
    data = _read_bytes(source)
    plain = _plain_jpeg(data, size) if size is not None else None
    if plain is not None:
        return plain
    with (
        _as_bad_image("The image could not be decoded"),
        Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as opened,
    ):
        _check_pixel_count(opened)
        if opened.format in _JPEG_FORMATS:
            _check_jpeg_scans(data)
            scaled = _scaled_jpeg(data, opened, size) if size is not None else None
            if scaled is not None:
                return scaled
        opened.load()  # Decode now, inside the guard: truncation shows up here.
        ImageOps.exif_transpose(opened, in_place=True)  # a copy here would cost a fifth of a decode
        return _to_rgb(opened)


def _read_bytes(source: bytes | str | os.PathLike[str]) -> bytes:
    if isinstance(source, bytes):
        if not source:
            raise BadImageError("The image is empty (0 bytes).", "Upload a real image file.")
        return source
    path = os.fspath(source)
    with _as_bad_image("The file could not be read"), open(path, "rb", buffering=0) as file:
        data = file.readall()
    if not data:
        raise BadImageError(f"{path!r} is empty (0 bytes).", "Replace or remove it.")
    return data


def _orientation(opened: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent), read from the header PIL already parsed."""
    value = opened.getexif().get(_EXIF_ORIENTATION, 1)
    return value if isinstance(value, int) else 1


def _plain_jpeg(data: bytes, size: int) -> np.ndarray | None:
    """A JPEG without EXIF or XMP metadata, decoded as :func:`_scaled_jpeg` would, but
    without PIL; None for every other file, which then takes the usual path.

    PIL parses a JPEG's header in Python, which cost as much as libjpeg-turbo's scaled decode
    of a 256 px photo and held the GIL that a forward pass beside the decoding threads waits
    for. Only the orientation needs that parse; a file with no metadata block before its first
    scan (FF DA) has none, so libjpeg-turbo's own header reader gives all that is needed.
    """
    first_scan = data.find(b"\xff\xda")
    if not data.startswith(b"\xff\xd8\xff") or first_scan < 0:
        return None
    header = data[:first_scan]
    if _EXIF_MARK in header or _XMP_ORIENTATION_MARK in header:
        return None
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError:
        return None
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_many_pixels()
    if colorspace not in _FAST_JPEG_COLORSPACES:
        return None
    _check_jpeg_scans(data)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size, strict=True)
    except ValueError:
        return None


def _scaled_jpeg(data: bytes, opened: Image.Image, size: int) -> np.ndarray | None:
    """Decode a colour or grey JPEG straight at the smallest scale that still covers ``size``;
    None when PIL must decide (other modes, or anything libjpeg-turbo warns about).

    libjpeg-turbo scales inside the inverse DCT by any of n/8, so a 256 px photo decodes at
    224 px with no resize at all, and a 12 MP phone photo at 1/8 of its side: 2-3x less CPU
    than a full decode and a resize for the first, 20x and more for the second. ``strict``
    makes libjpeg's warnings (a truncated file, an odd progression) errors, and such files
    take PIL's path, which accepts or refuses them exactly as before. The bilinear resize
    after it covers the rest (non-square sides). Pixels stay a NumPy array throughout: a
    round trip through a PIL image would cost two more copies, a third of the decode.
    """
    if opened.mode not in _FAST_JPEG_MODES:
        return None
    try:
        pixels = simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=size, min_width=size, strict=True)
    except ValueError:
        return None
    turn = _UPRIGHT.get(_orientation(opened))
    return pixels if turn is None else np.ascontiguousarray(turn(pixels))


def _check_pixel_count(image: Image.Image) -> None:
    """Refuse declared sizes PIL would only warn about (see the MAX_IMAGE_PIXELS note)."""
    if image.width * image.height > MAX_IMAGE_PIXELS:
        raise _too_many_pixels()


def _check_jpeg_scans(data: bytes) -> None:
    """Refuse a JPEG with more than :data:`MAX_JPEG_SCANS` scans before it is decoded.

    libjpeg decodes every scan over the whole image and only warns when a progression makes no
    sense, so a small file of repeated scans costs minutes of CPU (94 KB took 12 s at 4 MP).
    Scans start with the marker FF DA. Inside compressed data an FF byte is always followed by
    00 or a restart marker, so counting the pair overcounts only by chance pairs in metadata
    and by the scans of an embedded thumbnail: a handful, far below the cap.
    """
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise BadImageError(
            f"The JPEG holds {scans} scans; at most {MAX_JPEG_SCANS} are accepted (photos have "
            "1 to about 12), since each one costs a full decoding pass.",
            "Save it again as an ordinary JPEG or PNG.",
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    """Bring any decoded mode to 8-bit RGB.

    Transparent pixels are composited onto white, as viewers show them, rather than taking
    whatever colour happens to be stored under alpha 0. 16-bit grey is scaled, not
    clipped, so a 16-bit scan does not come out almost white.
    """
    if image.mode in _SIXTEEN_BIT_MODES or image.mode == "I":
        return _deep_grey_to_rgb(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _deep_grey_to_rgb(image: Image.Image) -> Image.Image:
    """Scale 16-bit grey to 0..255 and repeat it into RGB.

    ``I`` (32-bit) data, which older Pillow versions give for 16-bit PNGs, is taken as
    16-bit when any value exceeds 255 and as 8-bit otherwise.
    """
    values = np.asarray(image, dtype=np.float64)
    full_scale = 65535.0 if image.mode in _SIXTEEN_BIT_MODES or values.max() > 255 else 255.0
    grey = np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([grey] * 3, axis=-1))


def _image_from_array(array: np.ndarray) -> Image.Image:
    """Validate a pixel array and wrap it as a PIL image for the shared conversion path."""
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[-1] in (3, 4))):
        raise BadImageError(
            f"An image array must be HxW, HxWx1, HxWx3 or HxWx4, got shape {array.shape}.",
        )
    if array.size == 0:
        raise BadImageError(f"The image array is empty (shape {array.shape}).")
    return _to_rgb(Image.fromarray(_to_uint8(array)))


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Map array values to 0..255 ``uint8`` following the conventions in :func:`load_image`."""
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    values = array.astype(np.float64)
    if not np.isfinite(values).all():
        raise BadImageError("The image array contains NaN or infinite values.")
    if np.issubdtype(array.dtype, np.floating) and values.max() <= 1.0:
        values = values * 255.0
    return np.clip(np.rint(values), 0, 255).astype(np.uint8)
