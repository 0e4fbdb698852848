"""How a library's error text is quoted in a message a person reads."""

from __future__ import annotations

from tlcore.errors import REASON_LIMIT, ConfigError, brief_reason


def test_the_first_line_of_a_logged_error_is_quoted() -> None:
    error = RuntimeError("\n  Conversion failed: op Erf is not supported  \nTraceback ...\n  File x\n")
    assert brief_reason(error) == "Conversion failed: op Erf is not supported"


def test_a_long_reason_is_cut_at_a_word_and_says_so() -> None:
    words = " ".join(f"word{i}" for i in range(100))
    reason = brief_reason(ValueError(words))
    assert len(reason) <= REASON_LIMIT
    assert reason.endswith("…")
    assert words.startswith(reason[:-1])
    assert reason[:-1].split(" ")[-1] in words.split(" ")  # no word cut in half


def test_a_reason_without_spaces_is_cut_at_the_limit() -> None:
    reason = brief_reason(OSError("x" * 1000))
    assert reason == "x" * (REASON_LIMIT - 1) + "…"


def test_an_error_without_text_is_named_by_its_type() -> None:
    assert brief_reason(KeyboardInterrupt()) == "KeyboardInterrupt"
    assert brief_reason(ValueError("   \n  ")) == "ValueError"


def test_a_studio_error_keeps_its_message_and_hint() -> None:
    assert brief_reason(ConfigError("Epochs must be positive.", "Set 1 or more.")) == (
        "Epochs must be positive. Set 1 or more.")
