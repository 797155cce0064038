"""The uniform model interface, checked over every registered model at its own input size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from cnnlab import create_model, get_spec, list_models
from cnnlab.errors import CnnlabError
from cnnlab.models.classifier import Classifier

MODELS = list_models()
# name -> trainable parameters at the variant's default classes and channels; a change
# here means a model changed: regenerate deliberately with tools/record_params.py
RECORDED = json.loads((Path(__file__).parent / "recorded_params.json").read_text())


@pytest.mark.parametrize("name", MODELS)
def test_uniform_interface(name):
    torch.manual_seed(0)
    spec = get_spec(name)
    model = create_model(name)
    assert isinstance(model, Classifier)
    assert model.input_size == spec.input_size and model.num_classes == spec.num_classes
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == RECORDED[name]
    x = torch.randn(2, *model.input_size)

    # forward returns logits in training; with the auxiliary heads every parameter learns
    model.train()
    logits = model(x)
    assert isinstance(logits, torch.Tensor) and logits.shape == (2, spec.num_classes)
    main, aux = model.forward_with_aux(x)
    assert main.shape == logits.shape and all(a.shape == logits.shape for a in aux)
    sum(out.logsumexp(1).sum() for out in (main, *aux)).backward()
    silent = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not silent, f"parameters without a gradient: {silent[:5]}"

    model.eval()
    with torch.no_grad():
        # features then head is forward; stages yield 4-D feature maps in order
        seen: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        hooks = [
            modules[s].register_forward_hook(lambda m, i, o, s=s: seen.setdefault(s, o))
            for s in model.stages
        ]
        features = model.forward_features(x)
        for h in hooks:
            h.remove()
        assert features.shape == (2, model.num_features)
        torch.testing.assert_close(model.forward_head(features), model(x))
        assert list(seen) == list(model.stages) and all(o.dim() == 4 for o in seen.values())

        # reset_classifier replaces the classifiers (`output`, GoogLeNet's `output_aux*.output`)
        # and nothing else
        before = {k: v.clone() for k, v in model.named_parameters()}
        model.reset_classifier(3)
        assert model(x).shape == (2, 3)
        after = dict(model.named_parameters())
        changed = [k for k, v in before.items() if v.shape != after[k].shape]
        changed += [
            k for k, v in before.items() if k not in changed and not torch.equal(v, after[k])
        ]
        assert all(".output." in f".{k}" for k in changed), changed

    c, h, w = model.input_size
    with pytest.raises(CnnlabError, match="channel"):
        model.validate_input((c + 1, h, w))
    if model.fixed_input_size:
        with pytest.raises(CnnlabError, match="does not fit"):
            model.validate_input((c, h - 1, w))


def test_every_model_is_recorded():
    assert sorted(RECORDED) == MODELS


@pytest.mark.parametrize("name", ["lenet5", "lenet5_1998"])
def test_colour_input(name):
    model = create_model(name, in_chans=3)
    assert model(torch.randn(2, 3, *model.input_size[1:])).shape == (2, 10)
