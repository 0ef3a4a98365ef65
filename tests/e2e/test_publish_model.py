"""`Hub.publish(model, adapter=...)`: a training script ends with one call; the adapter is saved on the way
with the base's fingerprint, installs back and attaches with the trained model's outputs."""

from __future__ import annotations

import pytest
import torch

import adapterhub_client as ah
from tests import models as tiny


def test_publish_an_adapter_straight_from_the_model(home):
    model = tiny.trained_tiny_lora("trained")
    with ah.Hub() as hub:
        done = hub.publish(model, adapter="trained", name="acme/from-model", version="1.0.0")
        assert (done.name, done.version, done.created) == ("acme/from-model", "1.0.0", True)
        fresh = tiny.tiny_bert()
        hub.attach(fresh, "acme/from-model@1.0.0", strict=True)  # exact: the fingerprint came from the model
        info = hub.info("acme/from-model")
    assert info.manifest["base_model"]["fingerprint"]["content"]
    ids = tiny.token_ids(96)
    with torch.no_grad():
        tiny.assert_close(fresh.eval()(input_ids=ids).last_hidden_state, model.eval()(input_ids=ids).last_hidden_state)


def test_publish_from_a_model_says_what_it_needs(home):
    model = tiny.tiny_bert()
    ah.add_adapter(model, "a", ah.LoRAConfig(r=2, target_modules=["query"]))
    with ah.Hub() as hub, pytest.raises(ah.UsageError, match="name="):
        hub.publish(model, adapter="a")
