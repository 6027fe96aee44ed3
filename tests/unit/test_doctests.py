"""The examples in docstrings are run, so they stay true."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import operators
import pipeline

MODULES = sorted(m.name for pkg in (pipeline, operators)
                 for m in pkgutil.walk_packages(pkg.__path__, prefix=pkg.__name__ + "."))


@pytest.mark.parametrize("name", [m for m in MODULES if "__main__" not in m])
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples in {name} failed"
