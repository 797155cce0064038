"""Image-specific class saliency (Simonyan et al. 2013, Section 3) and its localisation mask."""

from __future__ import annotations

import pytest
import torch
from captum.attr import Saliency
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model
from cnnlab.viz.saliency import resolve_target, saliency, saliency_mask


def _model(name: str) -> nn.Module:
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return create_model(name).eval()


@pytest.mark.parametrize("name", ["lenet5", "resnet20", "densenet40_k12"])
def test_equals_captum_saliency(name):
    model = _model(name)
    x = torch.randn(2, *model.input_size, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([3, 7])
    ours = saliency(model, x, target)
    reference = Saliency(model).attribute(x.clone().requires_grad_(), target=target, abs=True)
    reference = reference.amax(dim=1)  # max over channels, as the paper
    assert ours.shape == (2, *model.input_size[1:]) and ours.dtype == torch.float32
    assert ours.abs().max() > 0
    assert (ours - reference).abs().max().item() <= 1e-5
    # Default target: the predicted class.
    predicted = model(x).argmax(dim=1)
    assert torch.equal(saliency(model, x), saliency(model, x, predicted))


def test_is_the_gradient_of_the_logit_not_the_softmax():
    """For a linear classifier S_c(x) = w_c . x + b_c the map is max_k |w_c,k| per pixel."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6)).eval()
    x = torch.randn(2, 3, 4, 5)
    expected = model[1].weight[[2, 4]].abs().view(2, 3, 4, 5).amax(dim=1)
    torch.testing.assert_close(saliency(model, x, [2, 4]), expected, rtol=0, atol=0)
    # A softmax-score gradient would depend on x; the logit's does not.
    torch.testing.assert_close(saliency(model, 10 * x, [2, 4]), expected, rtol=0, atol=0)


def test_leaves_parameters_without_gradients():
    model = _model("lenet5")
    saliency(model, torch.randn(1, 1, 32, 32))
    assert all(p.grad is None for p in model.parameters())


def test_targets_and_errors():
    logits = torch.zeros(3, 10)
    logits[:, 4] = 1
    assert resolve_target(logits, None).tolist() == [4, 4, 4]
    assert resolve_target(logits, 7).tolist() == [7, 7, 7]
    assert resolve_target(logits, [1, 2, 3]).tolist() == [1, 2, 3]
    for bad, words in [(10, "0..9"), (-1, "0..9"), ([1, 2], "expected 1 or 3"), (1.5, "integer")]:
        with pytest.raises(CnnlabError, match=words):
            resolve_target(logits, bad)
    model = _model("lenet5")
    with pytest.raises(CnnlabError, match="out of range"):
        saliency(model, torch.randn(1, 1, 32, 32), target=10)
    with pytest.raises(CnnlabError, match=r"expected a batch \(N, C, H, W\)"):
        saliency(model, torch.randn(1, 32, 32))
    with pytest.raises(CnnlabError, match="channel"):
        saliency(model, torch.randn(1, 3, 32, 32))


def test_mask_keeps_the_largest_8_connected_region_above_the_quantile():
    m = torch.zeros(10, 10)
    m[1, 1] = m[2, 2] = m[3, 3] = 5.0  # a diagonal line: one region with 8-connectivity
    m[8, 6] = m[8, 7] = 4.0  # a smaller region
    mask = saliency_mask(m, quantile=0.9)  # 5 of 100 pixels lie above the 90% quantile
    assert mask.shape == (10, 10) and mask.dtype == torch.bool
    assert mask.nonzero().tolist() == [[1, 1], [2, 2], [3, 3]]
    batch = saliency_mask(torch.stack([m, m.flip(0), torch.ones(10, 10)]), quantile=0.9)
    assert batch.shape == (3, 10, 10)
    assert torch.equal(batch[1], mask.flip(0))
    assert not batch[2].any()  # a constant map has nothing above its quantile
    with pytest.raises(CnnlabError, match="strictly between 0 and 1"):
        saliency_mask(m, quantile=1.0)
    with pytest.raises(CnnlabError, match=r"expected \(N, H, W\)"):
        saliency_mask(torch.zeros(1, 1, 4, 4))


def test_mask_of_a_real_saliency_map_is_one_region():
    model = _model("resnet20")
    maps = saliency(model, torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    mask = saliency_mask(maps, quantile=0.95)
    assert mask.shape == maps.shape
    for m, s in zip(mask, maps):
        assert 0 < m.sum() <= 0.05 * m.numel() + 1
        assert s[m].min() > torch.quantile(s.flatten(), 0.95)  # only seeds above the quantile
