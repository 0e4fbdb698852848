"""Every example in docs/api.md runs, so the page that teaches the Python API cannot go stale."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

import tlcore

PAGE = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.mark.timeout(600)
def test_every_example_in_the_api_page_runs(isolated_home):
    result = doctest.testfile(str(PAGE), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False,
                              report=True, globs={})
    assert result.attempted >= 20
    assert result.failed == 0


def test_the_package_exports_a_handful_of_documented_names():
    assert sorted(tlcore.__all__) == sorted(["RunSpec", "DatasetSpec", "BackboneSpec", "TrainSpec", "train",
                                             "submit", "follow", "run", "load", "compare", "export"])
    page = PAGE.read_text()
    for name in tlcore.__all__:
        value = getattr(tlcore, name)
        assert value.__doc__ and len(value.__doc__.strip()) > 20, name
        assert f"`{name}" in page, name
        if callable(value) and name[0].islower():
            assert "Example:" in value.__doc__, name
    with pytest.raises(AttributeError):
        tlcore.not_a_name  # noqa: B018 - the lookup is the test
