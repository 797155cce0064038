"""Sanity checks: Adebayo, Gilmer, Muelly, Goodfellow, Hardt and Kim, "Sanity Checks for
Saliency Maps", NeurIPS 2018 (model parameter randomisation, Section 3.1); and every
attribution method on one model of each family, leaving the model as it was.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model
from cnnlab.viz.gradcam import grad_cam, guided_backprop, guided_grad_cam
from cnnlab.viz.occlusion import occlusion
from cnnlab.viz.saliency import saliency


def _ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 0..n-1 of a 1-D tensor (argsort of argsort), ties given their average rank."""
    order = v.argsort(stable=True)
    ranks = order.argsort().double()  # rank of each element, ties broken by position
    _, group, counts = torch.unique(v, return_inverse=True, return_counts=True)
    # The average rank of a tie group of size k starting at rank r is r + (k - 1) / 2.
    first = torch.zeros(len(counts), dtype=torch.float64).scatter_reduce(
        0, group, ranks, reduce="amin", include_self=False
    )
    return first[group] + (counts[group].double() - 1) / 2


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman's rank correlation of two maps of the same shape (Pearson of the ranks)."""
    ra, rb = _ranks(a.flatten()), _ranks(b.flatten())
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return (ra @ rb / (ra.norm() * rb.norm())).item()


def test_spearman():
    a = torch.tensor([0.1, 0.5, 0.3, 0.9])
    assert spearman(a, a) == pytest.approx(1.0)
    assert spearman(a, a.exp() * 3) == pytest.approx(1.0)  # invariant to monotone maps
    assert spearman(a, -a) == pytest.approx(-1.0)
    assert _ranks(torch.tensor([2.0, 0.0, 2.0, 1.0])).tolist() == [2.5, 0.0, 2.5, 1.0]
    # Known value: 1 - 6 sum d^2 / (n (n^2 - 1)) with ranks (0,1,2,3,4) vs (1,0,2,4,3).
    x, y = torch.arange(5.0), torch.tensor([1.0, 0.0, 2.0, 4.0, 3.0])
    assert spearman(x, y) == pytest.approx(1 - 6 * 4 / (5 * 24))


def _randomised_lenet() -> nn.Module:
    """The same architecture with fresh random weights (a seed other than training's 0)."""
    with torch.random.fork_rng():
        torch.manual_seed(1)
        return create_model("lenet5").eval()


def _mean_rank_correlation(trained: torch.Tensor, random: torch.Tensor) -> float:
    """Mean over examples of Spearman's rho; examples with a constant map are left out."""
    keep = (trained.flatten(1).std(dim=1) > 0) & (random.flatten(1).std(dim=1) > 0)
    assert keep.sum() >= 12, f"only {int(keep.sum())} of {len(keep)} maps are not constant"
    return sum(spearman(a, b) for a, b in zip(trained[keep], random[keep])) / int(keep.sum())


def test_maps_depend_on_the_learned_weights(trained_lenet):
    """Trained vs re-initialised LeNet-5: the maps' rank correlation is far below 1.

    Measured: saliency 0.33, Grad-CAM (default layer s4) -0.02, means over 16 digits.
    """
    x, labels = trained_lenet.images, trained_lenet.labels
    random = _randomised_lenet()
    rho_saliency = _mean_rank_correlation(
        saliency(trained_lenet.model, x, labels), saliency(random, x, labels)
    )
    rho_cam = _mean_rank_correlation(
        grad_cam(trained_lenet.model, x, labels).map, grad_cam(random, x, labels).map
    )
    assert rho_saliency < 0.5, f"saliency: trained vs random rho = {rho_saliency:.3f}"
    assert rho_cam < 0.5, f"Grad-CAM: trained vs random rho = {rho_cam:.3f}"
    # The measure can see agreement: the trained model's maps of a slightly noisier input.
    noisy = x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    rho_same = _mean_rank_correlation(
        saliency(trained_lenet.model, x, labels), saliency(trained_lenet.model, noisy, labels)
    )
    assert rho_same > 0.9, f"saliency: same model, noisy input rho = {rho_same:.3f}"


FAMILIES = [
    "lenet5",
    "alexnet_small",
    "vgg11_bn_small",
    "googlenet_small",
    "resnet20",
    "densenet40_k12",
    "mobilenet_v1_small",
    "shufflenet_v1_g3_small",
]

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_pre_hooks_with_kwargs",
)


def _snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "hooks": [len(getattr(m, d)) for m in model.modules() for d in HOOK_DICTS],
    }


def _assert_unchanged(model: nn.Module, before: dict) -> None:
    after = _snapshot(model)
    assert after["modes"] == before["modes"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["hooks"] == before["hooks"]
    assert all(torch.equal(before["state"][k], v) for k, v in after["state"].items())
    assert all(p.grad is None for p in model.parameters())
    assert torch._C._len_torch_function_stack() == 0  # no TorchFunctionMode left active


METHODS = {
    "saliency": saliency,
    "grad_cam": lambda model, x: grad_cam(model, x).map,
    "guided_backprop": lambda model, x: guided_backprop(model, x).abs().amax(dim=1),
    "guided_grad_cam": guided_grad_cam,
    "occlusion": lambda model, x: occlusion(model, x, patch=8, stride=8),
}


def _calibrated(model: nn.Module, x: torch.Tensor) -> nn.Module:
    """Batch-norm statistics of a random input, then eval mode.

    A fresh network's running statistics (mean 0, variance 1) leave its activations
    unnormalised in eval mode (mobilenet_v1_small's logits are ~1e-16); one pass in
    training mode sets them to the batch's, so the maps are not degenerate.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: after one batch, that batch's statistics
    model.train()
    with torch.no_grad():
        model(x)
    return model.eval()


@pytest.mark.parametrize("in_chans", [1, 3])
@pytest.mark.parametrize("name", FAMILIES)
def test_every_method_on_every_family(name, in_chans):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        try:
            model = create_model(name, in_chans=in_chans)
        except CnnlabError as err:
            pytest.skip(f"{name} cannot be built yet ({err})")
        model = _calibrated(model, torch.randn(8, *model.input_size))
        x = torch.randn(2, *model.input_size)
    before = _snapshot(model)
    for method, run in METHODS.items():
        result = run(model, x)
        assert result.shape == (2, *model.input_size[1:]), method
        assert result.dtype == torch.float32 and result.device.type == "cpu", method
        assert torch.isfinite(result).all(), method
        # Not constant over the batch (Grad-CAM of a random network may be all zero for one
        # example, where the weighted sum of the maps is negative everywhere).
        assert result.max() > result.min(), f"{method} gives a constant map"
        _assert_unchanged(model, before)
