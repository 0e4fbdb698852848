"""Writing a file so that readers only ever see the old content or the whole new content.

Several processes read what others write (the app reads a worker's model, two workers share the
feature cache), and a crash or a full disk may stop a write half way. So every file the studio
publishes is written beside its target under a hidden temporary name, then renamed over it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

Content = bytes | str | Callable[[Path], None]
"""What to write: bytes, text (UTF-8), or a function that writes the file at the path it gets."""


def atomic_write(target: Path, content: Content, *, keep_suffix: bool = False) -> Path:
    """Write ``content`` to ``target`` atomically; on any failure nothing is left behind.

    Args:
        target: The file to create or replace. Its folder must exist.
        content: Bytes, text, or a writer such as ``model.save`` that takes a path.
        keep_suffix: End the temporary name with ``target``'s own name, for writers that
            insist on a suffix (Keras wants ``.keras`` and ``.weights.h5``). Leave it off when
            another reader globs the folder by suffix (the array caches), so half-written files
            are never listed.

    Returns:
        ``target``.
    """
    target = Path(target)
    suffix = f"-{target.name}" if keep_suffix else ".partial"
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=suffix)
    partial = Path(name)
    os.close(fd)
    try:
        if callable(content):
            content(partial)
        else:
            partial.write_bytes(content.encode() if isinstance(content, str) else content)
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target
