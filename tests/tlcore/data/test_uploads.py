import io
import zipfile

import pytest

from tlcore.data.uploads import MAX_ZIP_UPLOAD_BYTES, archives_dir, check_zip_size, save_upload
from tlcore.errors import UploadError
from tlcore.paths import tl_home


def small_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("cats/1.png", b"not really a png")
    return buffer.getvalue()


def test_uploads_are_stored_by_content_under_tl_home():
    first = save_upload(small_zip(), "My Data (1).zip")
    again = save_upload(small_zip(), "renamed.zip")
    assert first.parent == archives_dir() and first.is_relative_to(tl_home())
    assert first.name.endswith("-My-Data-1.zip")
    assert again.read_bytes() == first.read_bytes() and again.name[:16] == first.name[:16]
    assert zipfile.is_zipfile(first)


@pytest.mark.parametrize("filename", ["../../evil.zip", "/etc/passwd", "..", "\x00.zip"])
def test_file_names_cannot_escape(filename):
    path = save_upload(small_zip(), filename)
    assert path.parent == archives_dir()


def test_refuses_empty_non_zip_and_oversized_uploads():
    with pytest.raises(UploadError, match="empty"):
        save_upload(b"", "a.zip")
    with pytest.raises(UploadError, match="not a zip"):
        save_upload(b"PK but not really", "a.zip")
    with pytest.raises(UploadError, match="at most 200 MB"):
        check_zip_size(MAX_ZIP_UPLOAD_BYTES + 1)
    check_zip_size(MAX_ZIP_UPLOAD_BYTES)
    assert not list(archives_dir().glob("*"))


def test_an_archive_just_over_the_cap_does_not_read_as_the_cap():
    with pytest.raises(UploadError) as caught:
        check_zip_size(MAX_ZIP_UPLOAD_BYTES + 300_000)
    assert "200.3 MB" in caught.value.message and "at most 200 MB" in caught.value.message
