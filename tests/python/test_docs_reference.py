"""docs/reference.md names every public name of allcores and of its public modules, so a name
added to an __all__ without its reference entry fails here."""
import importlib
import pathlib
import re

import pytest

REFERENCE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "reference.md"
MODULES = ["allcores", "allcores.aio", "allcores.shared", "allcores.gil", "allcores.errors"]


@pytest.mark.parametrize("module", MODULES)
def test_reference_names_every_public_name(module):
    text = REFERENCE.read_text(encoding="utf-8")
    names = importlib.import_module(module).__all__
    # in code: `Name...`, `allcores.Name...`, `await aio.name(...)`
    missing = [name for name in names if not re.search(rf"`(?:[\w ]*\.)?{name}\b", text)]
    assert not missing, f"docs/reference.md lacks {module}: {missing}"
