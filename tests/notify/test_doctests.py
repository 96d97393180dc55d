"""The notify core's docstring examples run (the default test paths do not collect stream/)."""

import doctest
import importlib

import pytest

MODULES = [
    "stream.settings.notify",
    "stream.notify.routing",
    "stream.notify.silences",
    "stream.notify.inhibit",
    "stream.notify.grouping",
]


@pytest.mark.parametrize("name", MODULES)
def test_the_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
