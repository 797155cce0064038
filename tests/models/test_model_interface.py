"""The uniform model interface, checked over every registered model."""

from __future__ import annotations

import pytest
import torch

from cnnlab import create_model, list_models
from cnnlab.errors import CnnlabError
from cnnlab.models.classifier import Classifier

MODELS = list_models()


@pytest.mark.parametrize("name", MODELS)
def test_forward_returns_logits_in_train_and_eval(name):
    model = create_model(name, num_classes=7)
    x = torch.randn(3, *model.input_size)
    assert isinstance(model, Classifier)
    for mode in (True, False):
        model.train(mode)
        out = model(x)
        assert isinstance(out, torch.Tensor) and out.shape == (3, 7)


@pytest.mark.parametrize("name", MODELS)
def test_features_then_head_equals_forward(name):
    model = create_model(name).eval()
    x = torch.randn(2, *model.input_size)
    features = model.forward_features(x)
    assert features.shape == (2, model.num_features)
    torch.testing.assert_close(model.forward_head(features), model(x))


@pytest.mark.parametrize("name", MODELS)
def test_reset_classifier_changes_the_class_count_only(name):
    model = create_model(name).eval()
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("output")}
    model.reset_classifier(3)
    assert model(torch.randn(2, *model.input_size)).shape == (2, 3)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


@pytest.mark.parametrize("name", MODELS)
def test_named_stages_yield_feature_maps(name):
    model = create_model(name).eval()
    seen = {}
    modules = dict(model.named_modules())
    for stage in model.stages:
        modules[stage].register_forward_hook(lambda m, i, o, s=stage: seen.setdefault(s, o))
    model(torch.randn(1, *model.input_size))
    assert list(seen) == list(model.stages)


@pytest.mark.parametrize("name", MODELS)
def test_colour_input_and_wrong_shapes(name):
    model = create_model(name, in_chans=3)
    assert model(torch.randn(2, *model.input_size)).shape == (2, 10)
    with pytest.raises(CnnlabError, match="channel"):
        model.validate_input((1, *model.input_size[1:]))
    with pytest.raises(CnnlabError, match="does not fit"):
        model.validate_input((3, 28, 28))
