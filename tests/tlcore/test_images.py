"""load_image: accepted input comes out as upright uint8 RGB, hostile input as BadImageError."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from imagegen import encode, halves, png_declaring, random_pixels
from PIL import Image, ImageOps

from tlcore.errors import BadImageError, ConfigError, UploadError
from tlcore.images import MAX_IMAGE_PIXELS, MAX_UPLOAD_BYTES, check_upload_size, load_image

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def assert_close(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 12) -> None:
    assert np.abs(pixel.astype(int) - colour).max() <= tolerance, (pixel, colour)


# --- accepted inputs ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP", "BMP", "GIF"])
def test_every_allowed_format_decodes_to_uint8_rgb(fmt: str) -> None:
    image = load_image(encode(halves(RED, BLUE), fmt))
    assert image.dtype == np.uint8 and image.shape == (20, 40, 3)
    assert_close(image[10, 5], RED, tolerance=40)
    assert_close(image[10, 35], BLUE, tolerance=40)


def test_path_and_bytes_give_the_same_pixels(tmp_path: Path) -> None:
    data = encode(random_pixels(1))
    (tmp_path / "a.png").write_bytes(data)
    from_path = load_image(tmp_path / "a.png")
    assert np.array_equal(from_path, load_image(data))
    assert np.array_equal(from_path, load_image(str(tmp_path / "a.png")))
    assert np.array_equal(from_path, random_pixels(1))


def test_resize_is_bilinear_to_a_square_without_cropping() -> None:
    image = load_image(encode(halves(RED, BLUE)), size=32)
    assert image.shape == (32, 32, 3)
    # Both halves survive: nothing was cropped from the wide image.
    assert_close(image[16, 2], RED)
    assert_close(image[16, 29], BLUE)


def test_exif_rotated_jpeg_comes_out_upright() -> None:
    # Stored 40 wide x 20 tall, red left / blue right. Orientation 6 tells viewers to turn it
    # 90 degrees clockwise, which puts the stored left column at the top.
    stored = halves(RED, BLUE)
    exif = Image.Exif()
    exif[0x0112] = 6
    image = load_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert image.shape == (40, 20, 3)
    assert_close(image[3, 10], RED, tolerance=30)
    assert_close(image[36, 10], BLUE, tolerance=30)


def _smooth_photo(width: int, height: int) -> Image.Image:
    """Gradients with a bright block in the top-left corner: smooth enough that two good
    resamplers agree closely, with a landmark that shows which way up the result is."""
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    pixels = np.stack([x * 200, y * 200, (1 - x) * 150], axis=-1)
    pixels[: height // 4, : width // 4] = 255
    return Image.fromarray(pixels.astype(np.uint8))


def _pil_reference(data: bytes, size: int) -> np.ndarray:
    """What the studio decoded before the scaled JPEG path: PIL's decode, then bilinear."""
    with Image.open(io.BytesIO(data)) as opened:
        upright = ImageOps.exif_transpose(opened).convert("RGB")
        return np.asarray(upright.resize((size, size), Image.Resampling.BILINEAR), dtype=float)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize(("width", "height", "size"), [(256, 256, 224), (1600, 1200, 224), (300, 180, 64)])
def test_jpegs_decoded_at_scale_match_a_full_decode_and_resize(
    orientation: int, width: int, height: int, size: int
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(_smooth_photo(width, height), "JPEG", exif=exif.tobytes(), quality=92)
    decoded = load_image(data, size)
    assert decoded.shape == (size, size, 3) and decoded.dtype == np.uint8
    reference = _pil_reference(data, size)
    assert np.abs(decoded - reference).mean() < 2.0
    corner = np.unravel_index(np.argmax(reference.sum(axis=-1)), reference.shape[:2])
    assert decoded[corner].min() > 200, "the landmark is where PIL's upright image has it"


def test_orientation_given_only_in_xmp_is_applied_as_pillow_applies_it() -> None:
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/'
           b'22-rdf-syntax-ns#"><rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" '
           b'tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')
    data = encode(_smooth_photo(64, 32), "JPEG", xmp=xmp, quality=92)
    assert b"Exif" not in data
    decoded = load_image(data, 16)
    assert np.abs(decoded - _pil_reference(data, 16)).mean() < 2.0
    assert decoded[:4, -4:].min() > 200, "the top-left landmark turned to the top right"


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_jpegs_without_metadata_decode_exactly_as_with_an_upright_exif_block(mode: str) -> None:
    photo = _smooth_photo(300, 200).convert(mode)
    plain = encode(photo, "JPEG", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 1
    tagged = encode(photo, "JPEG", quality=90, exif=exif.tobytes())
    assert b"Exif" not in plain and b"Exif" in tagged
    for size in (64, 224):
        assert np.array_equal(load_image(plain, size), load_image(tagged, size))


def test_a_jpeg_declaring_too_many_pixels_is_refused_from_its_header() -> None:
    data = bytearray(encode(_smooth_photo(32, 32), "JPEG"))
    frame = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[frame + 5:frame + 9] = (20_000).to_bytes(2, "big") * 2
    with pytest.raises(BadImageError, match="megapixels"):
        load_image(bytes(data), 224)


def test_grey_jpeg_at_a_size_gives_three_equal_channels() -> None:
    grey = Image.fromarray(np.tile(np.linspace(0, 255, 64, dtype=np.uint8), (48, 1)), "L")
    image = load_image(encode(grey, "JPEG", quality=95), 32)
    assert image.shape == (32, 32, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    assert image[:, 0].mean() < 30 and image[:, -1].mean() > 225


def test_cmyk_jpeg_becomes_rgb() -> None:
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # full magenta + yellow = red
    image = load_image(encode(cmyk, "JPEG", quality=95))
    assert image.shape == (16, 16, 3)
    assert_close(image[8, 8], RED, tolerance=30)


def test_sixteen_bit_grey_png_is_scaled_not_clipped() -> None:
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    source = Image.fromarray(values)
    assert source.mode.startswith("I;16")
    image = load_image(encode(source, "PNG"))
    assert image.shape == (1, 3, 3)
    assert image[0, :, 0].tolist() == [0, 128, 255]
    assert (image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()


def test_greyscale_becomes_three_equal_channels() -> None:
    grey = Image.fromarray(np.array([[10, 200]], dtype=np.uint8), mode="L")
    image = load_image(encode(grey, "PNG"))
    assert image.tolist() == [[[10, 10, 10], [200, 200, 200]]]


@pytest.mark.parametrize("mode, opaque, clear", [
    ("RGBA", (255, 0, 0, 255), (0, 0, 0, 0)),
    ("LA", (0, 255), (0, 0)),
])
def test_transparency_is_composited_onto_white(mode: str, opaque: tuple, clear: tuple) -> None:
    image = load_image(encode(halves(opaque, clear, mode=mode), "PNG"))
    assert image.shape == (20, 40, 3)
    assert_close(image[10, 35], WHITE, tolerance=0)
    assert_close(image[10, 5], RED if mode == "RGBA" else (0, 0, 0), tolerance=0)


def test_palette_image_with_transparent_index_is_composited_onto_white() -> None:
    palette = halves(RED, BLUE).quantize(2)
    transparent = palette.getpixel((35, 10))
    image = load_image(encode(palette, "PNG", transparency=transparent))
    assert_close(image[10, 35], WHITE, tolerance=0)
    assert_close(image[10, 5], RED, tolerance=0)


def test_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), RED), Image.new("RGB", (8, 8), BLUE)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert_close(load_image(data)[4, 4], RED, tolerance=0)


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1), (6, 5, 3), (6, 5, 4)])
def test_arrays_of_every_accepted_shape_become_rgb(shape: tuple[int, ...]) -> None:
    array = np.full(shape, 200, dtype=np.uint8)
    if shape[-1] == 4:
        array[..., 3] = 255  # opaque, so compositing onto white changes nothing
    image = load_image(array)
    assert image.shape == (6, 5, 3) and image.dtype == np.uint8
    assert (image == 200).all()


def test_float_arrays_up_to_one_are_read_as_zero_to_one() -> None:
    assert load_image(np.full((2, 2, 3), 0.5))[0, 0].tolist() == [128, 128, 128]
    assert load_image(np.full((2, 2, 3), 1.0, dtype=np.float32))[0, 0].tolist() == [255] * 3


def test_float_arrays_above_one_are_read_as_zero_to_255() -> None:
    assert load_image(np.full((2, 2, 3), 100.4))[0, 0].tolist() == [100, 100, 100]
    assert load_image(np.full((2, 2, 3), 300.0))[0, 0].tolist() == [255, 255, 255]


def test_rgba_array_alpha_is_composited_onto_white() -> None:
    array = np.zeros((2, 2, 4), dtype=np.uint8)  # black, fully transparent
    assert (load_image(array) == 255).all()


def test_array_is_resized_like_a_file() -> None:
    pixels = np.asarray(halves(RED, BLUE))
    assert np.array_equal(load_image(pixels, 16), load_image(encode(halves(RED, BLUE)), 16))


# --- refused inputs -----------------------------------------------------------------------

def _jpeg() -> bytes:
    return encode(random_pixels(3, 64, 64), "JPEG")


@pytest.mark.parametrize("data", [
    pytest.param(b"", id="zero-bytes"),
    pytest.param(b"just some notes, not a picture\n", id="text"),
    pytest.param(_jpeg()[: len(_jpeg()) // 2], id="truncated-jpeg"),
    pytest.param(_jpeg()[:30] + bytes(range(256)) * 8, id="corrupt-jpeg"),
    pytest.param(encode(random_pixels(4, 64, 64))[:300], id="truncated-png"),
    pytest.param(encode(random_pixels(5), "TIFF"), id="format-not-allowed"),
])
def test_hostile_bytes_raise_bad_image_error(data: bytes) -> None:
    with pytest.raises(BadImageError) as caught:
        load_image(data)
    assert caught.value.hint


def test_zero_byte_file_and_text_named_jpg_are_refused(tmp_path: Path) -> None:
    empty, text = tmp_path / "empty.jpg", tmp_path / "notes.jpg"
    empty.write_bytes(b"")
    text.write_text("hello, I am not a JPEG")
    for path in (empty, text):
        with pytest.raises(BadImageError):
            load_image(path)


def test_missing_file_is_a_bad_image(tmp_path: Path) -> None:
    with pytest.raises(BadImageError):
        load_image(tmp_path / "nowhere.png")


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("width, height", [
    (50_000, 50_000),  # far past PIL's own error threshold
    (8_000, 6_000),  # 48 MP: above our limit, in the band where PIL would only warn
])
def test_decompression_bomb_is_refused_from_its_header(width: int, height: int) -> None:
    assert width * height > MAX_IMAGE_PIXELS
    with pytest.raises(BadImageError, match="megapixels"):
        load_image(png_declaring(width, height))


def test_an_image_just_under_the_pixel_limit_header_is_not_called_a_bomb() -> None:
    with pytest.raises(BadImageError) as caught:  # fails later, on the missing pixel data
        load_image(png_declaring(6_000, 6_000))
    assert "megapixels" not in str(caught.value)


@pytest.mark.parametrize("array", [
    np.zeros((4, 4, 2), dtype=np.uint8),
    np.zeros((2, 4, 4, 3), dtype=np.uint8),
    np.zeros((0, 4, 3), dtype=np.uint8),
    np.full((2, 2, 3), np.nan),
])
def test_unusable_arrays_are_refused(array: np.ndarray) -> None:
    with pytest.raises(BadImageError):
        load_image(array)


def test_non_positive_size_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        load_image(random_pixels(0), size=0)


def test_upload_size_cap() -> None:
    check_upload_size(MAX_UPLOAD_BYTES)
    with pytest.raises(UploadError, match="at most 20 MB"):
        check_upload_size(MAX_UPLOAD_BYTES + 1)
    check_upload_size(MAX_UPLOAD_BYTES + 1, limit=2 * MAX_UPLOAD_BYTES)
    with pytest.raises(UploadError, match="split it") as caught:
        check_upload_size(2**30, limit=2**20, hint="split it")
    assert caught.value.hint == "split it"
