"""Hostile settings found in the data pipeline: a cache cap of infinity is no traceback."""

from __future__ import annotations

import pytest

from tlcore.data.cache_keys import cache_limit_bytes


@pytest.mark.parametrize("value", ["inf", "1e400", "Infinity"])
def test_an_infinite_cache_size_setting_is_no_traceback(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TL_FEATURE_CACHE_MB", value)
    assert cache_limit_bytes("TL_FEATURE_CACHE_MB", 100) > 2**60
