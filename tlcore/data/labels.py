"""Class names as labels people and programs read: invisible characters spelled out.

Dataset sources refuse class names holding such characters; runs made before that, TFDS
names and hub models can still carry them, so every place that prints or writes a label
line by line (``labels.txt``, the CLI's tables) goes through :func:`visible_label`.
"""

from __future__ import annotations

import unicodedata

INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
"""Unicode categories that print as nothing or as something else: controls (line breaks
included), format characters (direction overrides, zero-width), surrogates, private use,
unassigned code points, line and paragraph separators."""


def is_invisible(char: str) -> bool:
    return unicodedata.category(char) in INVISIBLE_CATEGORIES


def visible_label(name: str) -> str:
    r"""``name`` with every invisible character spelled out (``a\u000ab``), the rest unchanged.

    Written raw, a line break makes ``labels.txt`` one line longer than the model has
    outputs, so every label after it names the wrong class, and a right-to-left override
    shows a terminal or a file viewer another name than the one stored.
    """
    return "".join(
        (rf"\u{ord(char):04x}" if ord(char) <= 0xFFFF else rf"\U{ord(char):08x}")
        if is_invisible(char) else char
        for char in name
    )
