"""ResNet against He et al. 2016: Table 1 (ImageNet), Section 4.2 and Table 6 (CIFAR-10)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model
from cnnlab.analysis.paper import compare
from cnnlab.errors import CnnlabError
from cnnlab.models.resnet import CIFAR10, ZeroPadShortcut
from cnnlab.registry import get_spec
from cnnlab.training.schedules import ScheduleFactor

IMAGENET = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34")
CIFAR = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110")
WITH_FIGURES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain34", *CIFAR)


def n_params(model: nn.Module, where: str = "") -> int:
    return sum(p.numel() for name, p in model.named_parameters() if where in name)


def stage_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Each named stage's output shape for one image of the model's input size."""
    seen: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())

    def hook(stage: str):
        def record(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen[stage] = tuple(output.shape[1:])

        return record

    hooks = [modules[s].register_forward_hook(hook(s)) for s in model.stages]
    with torch.no_grad():
        model.eval()(torch.randn(1, *model.input_size))
    for h in hooks:
        h.remove()
    return seen


@pytest.fixture(scope="module")
def resnet50() -> nn.Module:
    return create_model("resnet50")


@pytest.mark.parametrize("name", WITH_FIGURES)
def test_published_figures_match(name):
    comparisons = compare(name)
    assert comparisons, f"{name} carries no published figure"
    for c in comparisons:
        assert c.matches, (
            f"{name} {c.figure.quantity} ({c.figure.source}): paper {c.figure.printed}, "
            f"ours {c.rendered} ({c.computed:,.0f})"
        )


def test_depths_count_the_weighted_layers_of_the_main_path():
    # Table 1 and Section 4.2 count convolutions on the main path plus the FC.
    for name, depth in {"resnet18": 18, "resnet50": 50, "resnet20": 20, "plain56": 56}.items():
        model = create_model(name, init="default")
        weighted = [
            n
            for n, m in model.named_modules()
            if isinstance(m, (nn.Conv2d, nn.Linear)) and ".shortcut" not in n
        ]
        assert len(weighted) == depth, (name, len(weighted))


def test_imagenet_stage_shapes_follow_table_1(resnet50):
    assert stage_shapes(create_model("resnet18")) == {
        "stem": (64, 112, 112),
        "layer1": (64, 56, 56),
        "layer2": (128, 28, 28),
        "layer3": (256, 14, 14),
        "layer4": (512, 7, 7),
    }
    shapes = stage_shapes(resnet50)
    assert [shapes[f"layer{i}"] for i in range(1, 5)] == [
        (256, 56, 56),
        (512, 28, 28),
        (1024, 14, 14),
        (2048, 7, 7),
    ]
    assert resnet50.num_features == 2048


def test_cifar_stage_shapes_follow_section_4_2():
    model = create_model("resnet56")
    assert stage_shapes(model) == {
        "stem": (16, 32, 32),
        "layer1": (16, 32, 32),
        "layer2": (32, 16, 16),
        "layer3": (64, 8, 8),
    }
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [9, 9, 9]  # n = 9
    assert model.num_features == 64 and model.output.in_features == 64


def test_bottleneck_downsamples_in_its_first_1x1(resnet50):
    block = resnet50.layer2[0]
    assert block.conv1.kernel_size == (1, 1) and block.conv1.stride == (2, 2)
    assert block.conv2.kernel_size == (3, 3) and block.conv2.stride == (1, 1)
    assert block.conv3.kernel_size == (1, 1) and block.conv3.stride == (1, 1)
    assert (block.conv1.in_channels, block.conv1.out_channels) == (256, 128)
    assert block.conv3.out_channels == 512  # expansion 4
    assert block.shortcut[0].stride == (2, 2) and block.shortcut[0].kernel_size == (1, 1)
    assert resnet50.layer1[0].conv1.stride == (1, 1)


def test_basic_block_downsamples_in_its_first_3x3():
    block = create_model("resnet34", init="default").layer3[0]
    assert block.conv1.kernel_size == (3, 3) and block.conv1.stride == (2, 2)
    assert block.conv2.stride == (1, 1)


def test_every_conv_is_followed_by_batch_norm_and_has_no_bias(resnet50):
    convs = [m for m in resnet50.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in resnet50.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == len(bns) == 49 + 4  # main path + 4 projections
    assert all(c.bias is None for c in convs)


def test_shortcut_options_a_b_c():
    a, b, c = (create_model("resnet18", shortcut=s, init="default") for s in "ABC")
    assert n_params(a, "shortcut") == 0
    assert 0 < n_params(b, "shortcut") < n_params(c, "shortcut")
    assert n_params(a) < n_params(b) < n_params(c)
    # B projects only where the dimensions change: the first block of layers 2-4
    projections = [n for n, m in b.named_modules() if n.endswith("shortcut.0")]
    assert projections == ["layer2.0.shortcut.0", "layer3.0.shortcut.0", "layer4.0.shortcut.0"]
    assert sum(n.endswith("shortcut.0") for n, _ in c.named_modules()) == 8  # every block
    blocks = [blk for i in (1, 2, 3, 4) for blk in getattr(b, f"layer{i}")]
    assert sum(isinstance(blk.shortcut, nn.Identity) for blk in blocks) == 5  # the others
    a_blocks = [blk for i in (1, 2, 3, 4) for blk in getattr(a, f"layer{i}")]
    assert sum(isinstance(blk.shortcut, ZeroPadShortcut) for blk in a_blocks) == 3
    assert sum(isinstance(blk.shortcut, nn.Identity) for blk in a_blocks) == 5
    for name in CIFAR:  # the CIFAR nets use option A: every parameter is on the main path
        assert n_params(create_model(name), "shortcut") == 0


def test_option_a_subsamples_and_pads_with_zeros():
    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 4, 4)
    torch.testing.assert_close(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


def test_plain_nets_have_the_residual_nets_convolutions():
    for plain, residual in (("plain18", "resnet18"), ("plain34", "resnet34")):
        p = create_model(plain, init="default")
        r = create_model(residual, shortcut="A", init="default")
        assert {k: v.shape for k, v in p.state_dict().items()} == {
            k: v.shape for k, v in r.state_dict().items()
        }
    for depth in (20, 32, 44, 56, 110):
        p, r = create_model(f"plain{depth}"), create_model(f"resnet{depth}")
        assert n_params(p) == n_params(r)
        assert all(
            blk.shortcut is None for layer in ("layer1", "layer2") for blk in p.get_submodule(layer)
        )


def test_residual_flag_changes_the_computation():
    r = create_model("resnet20").eval()
    p = create_model("plain20").eval()
    p.load_state_dict(r.state_dict())  # same parameters, the shortcuts are the difference
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(r(x), p(x))
        assert torch.equal(r.stem(x), p.stem(x))


def test_paper_init_is_he_fan_in():
    torch.manual_seed(0)
    conv = create_model("resnet56").layer2[1].conv1  # 32 -> 32: fan_in 288
    assert conv.weight.std().item() == pytest.approx((2 / 288) ** 0.5, rel=0.05)
    conv = create_model("resnet56").layer2[0].conv1  # 16 -> 32: fan_in 144, fan_out 288
    assert conv.weight.std().item() == pytest.approx((2 / 144) ** 0.5, rel=0.05)
    conv = create_model("resnet56", init="kaiming_normal_fan_out").layer2[0].conv1
    assert conv.weight.std().item() == pytest.approx((2 / 288) ** 0.5, rel=0.05)


def test_global_pooling_accepts_other_input_sizes():
    model = create_model("resnet20").eval()
    assert not model.fixed_input_size
    model.validate_input((3, 40, 40))
    with torch.no_grad():
        assert model(torch.randn(1, 3, 40, 40)).shape == (1, 10)
    with pytest.raises(CnnlabError, match="channel"):
        model.validate_input((1, 32, 32))


def test_recipes():
    imagenet = get_spec("resnet50").recipe
    assert (imagenet.optimizer, imagenet.lr, imagenet.momentum) == ("sgd", 0.1, 0.9)
    assert (imagenet.weight_decay, imagenet.batch_size, imagenet.schedule) == (
        1e-4,
        256,
        "multistep",
    )
    cifar = get_spec("resnet110").recipe
    assert (cifar.lr, cifar.momentum, cifar.weight_decay, cifar.batch_size) == (
        0.1,
        0.9,
        1e-4,
        128,
    )
    assert cifar.preprocessing == CIFAR10 and CIFAR10.mean == (0.4914, 0.4822, 0.4465)
    assert "warm" in cifar.note and "per-pixel mean" in cifar.note
    # 32k, 48k, 64k iterations of batch 128 on the 50,000 training images (391 steps/epoch)
    f = ScheduleFactor(cifar.schedule, cifar.epochs, steps_per_epoch=391)
    first, second = (next(s for s in range(70_000) if f(s) < level) for level in (0.5, 0.05))
    assert 32_000 <= first < 32_000 + 391 and 48_000 <= second < 48_000 + 391
    assert 64_000 <= cifar.epochs * 391 < 64_000 + 391


@pytest.mark.parametrize(
    "option",
    [
        {"shortcut": "D"},
        {"block": "wide"},
        {"stem": "tiny"},
        {"norm": "batchnorm"},
        {"activation": "swish"},
        {"init": "orthogonal"},
        {"layers": ()},
        {"layers": (2, 0, 2, 2)},
        {"widths": (64, 128)},
        {"dropout": 1.0},
        {"residual": "yes"},
    ],
)
def test_bad_options_are_one_line_errors(option):
    with pytest.raises(CnnlabError) as err:
        create_model("resnet20", **option)
    key = next(iter(option))
    assert key in str(err.value) and "\n" not in str(err.value)
