"""Fixtures shared by the interop tests: AdapterHub's fixture inputs / expected outputs and its tiny base."""

from __future__ import annotations

from pathlib import Path

import pytest

ADAPTERHUB_FIXTURES = Path(__file__).parents[1] / "fixtures" / "adapterhub"


@pytest.fixture(scope="module")
def data():
    """(inputs, expected outputs) written by tools/make_adapterhub_fixtures.py with AdapterHub's library."""
    from safetensors.torch import load_file

    return (
        load_file(str(ADAPTERHUB_FIXTURES / "inputs.safetensors")),
        load_file(str(ADAPTERHUB_FIXTURES / "expected.safetensors")),
    )


@pytest.fixture(scope="module")
def base_model():
    """The fixtures' tiny BertModel (no pooler), in eval mode."""
    from transformers import BertModel

    return BertModel.from_pretrained(str(ADAPTERHUB_FIXTURES / "base"), add_pooling_layer=False).eval()
