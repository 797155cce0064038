"""DenseNet against Huang et al. 2017: Table 1 (ImageNet), Section 3 and Table 2 (CIFAR)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab import create_model, get_spec
from cnnlab.analysis.paper import compare
from cnnlab.errors import CnnlabError
from cnnlab.models.densenet import DenseLayer, DenseNet, cifar_blocks
from cnnlab.training.schedules import ScheduleFactor

IMAGENET = ("densenet121", "densenet169", "densenet201", "densenet264")
CIFAR = (
    "densenet40_k12",
    "densenet100_k12",
    "densenet100_k24",
    "densenet_bc100_k12",
    "densenet_bc250_k24",
    "densenet_bc190_k40",
)
# convolutions + fc; the paper's "DenseNet-264" (blocks 6-12-64-48) has 265 by its own count
DEPTH = {"densenet121": 121, "densenet169": 169, "densenet201": 201, "densenet264": 265}
DEPTH |= {
    name: int(name.split("_k")[0].removeprefix("densenet").removeprefix("_bc")) for name in CIFAR
}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _stage_shapes(model: DenseNet) -> dict[str, tuple[int, ...]]:
    seen: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen.setdefault(name, tuple(output.shape[1:]))

        return hook

    hooks = [modules[s].register_forward_hook(record(s)) for s in model.stages]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *model.input_size))
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("name", ["densenet121", *CIFAR])
def test_published_figures_match(name):
    results = compare(name)
    assert results
    for c in results:
        assert c.matches, f"{name} {c.figure.quantity}: paper {c.figure.printed}, ours {c.rendered}"


def test_torchvision_counts_of_densenet169_and_201():
    # not paper figures: the counts of the authors' released (and torchvision's) models
    assert _params(create_model("densenet169")) == 14_149_480
    assert _params(create_model("densenet201")) == 20_013_928


@pytest.mark.parametrize("name", [*IMAGENET, *CIFAR])
def test_depth_counts_convolutions_and_the_classifier(name):
    model = create_model(name)
    layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert layers == DEPTH[name]


def test_cifar_depth_arithmetic():
    assert cifar_blocks(40, bottleneck=False) == (12, 12, 12)
    assert cifar_blocks(100, bottleneck=True) == (16, 16, 16)
    assert cifar_blocks(190, bottleneck=True) == (31, 31, 31)
    assert cifar_blocks(250, bottleneck=True) == (41, 41, 41)
    with pytest.raises(CnnlabError, match="depth=41"):
        cifar_blocks(41, bottleneck=False)


def test_densenet121_output_sizes_follow_table_1():
    assert _stage_shapes(create_model("densenet121")) == {
        "stem": (64, 56, 56),
        "block1": (256, 56, 56),
        "transition1": (128, 28, 28),
        "block2": (512, 28, 28),
        "transition2": (256, 14, 14),
        "block3": (1024, 14, 14),
        "transition3": (512, 7, 7),
        "block4": (1024, 7, 7),
        "final": (1024, 7, 7),
    }


@pytest.mark.parametrize(
    ("name", "features"),
    [("densenet121", 1024), ("densenet169", 1664), ("densenet201", 1920), ("densenet264", 2688)],
)
def test_imagenet_classifier_widths(name, features):
    model = create_model(name)
    assert model.num_features == features
    assert model.output.in_features == features and model.output.out_features == 1000


def test_basic_cifar_densenet_keeps_every_map():
    # 16 + 12 * 12 = 160 maps, no compression in the transitions, 32 -> 16 -> 8
    assert _stage_shapes(create_model("densenet40_k12")) == {
        "stem": (16, 32, 32),
        "block1": (160, 32, 32),
        "transition1": (160, 16, 16),
        "block2": (304, 16, 16),
        "transition2": (304, 8, 8),
        "block3": (448, 8, 8),
        "final": (448, 8, 8),
    }


def test_densenet_bc_compresses_and_uses_bottlenecks():
    model = create_model("densenet_bc100_k12")
    shapes = _stage_shapes(model)
    assert shapes["stem"] == (24, 32, 32)  # 2k
    assert shapes["block1"] == (216, 32, 32) and shapes["transition1"] == (108, 16, 16)
    assert shapes["block2"] == (300, 16, 16) and shapes["transition2"] == (150, 8, 8)
    assert shapes["final"] == (342, 8, 8)
    layer = model.block1.layer1
    assert layer.conv1.kernel_size == (1, 1) and layer.conv1.out_channels == 48  # 4k
    assert layer.conv2.kernel_size == (3, 3) and layer.conv2.out_channels == 12


def test_layers_are_pre_activation_without_conv_biases():
    layer = create_model("densenet121").block2.layer3
    kinds = [type(m) for m in layer.children() if not isinstance(m, nn.Identity)]
    assert kinds == [nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d]
    assert layer.norm1.num_features == (64 + 6 * 32) // 2 + 2 * 32  # transition1's 128 + 2k
    assert all(m.bias is None for m in layer.modules() if isinstance(m, nn.Conv2d))


def test_each_layer_appends_k_maps_to_its_input():
    model = create_model("densenet_bc100_k12", dropout=0.0).eval()
    x = torch.randn(1, 24, 8, 8)
    with torch.no_grad():
        y = model.block1.layer1(x)
        out = model.block1(x)
    assert y.shape == (1, 12, 8, 8)
    torch.testing.assert_close(out[:, :24], x)  # the block input passes through unchanged
    torch.testing.assert_close(out[:, 24:36], y)


def test_dropout_follows_every_convolution_but_the_first():
    model = create_model("densenet_bc100_k12")  # the paper's C10 setting
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == DEPTH["densenet_bc100_k12"] - 2 and all(d.p == 0.2 for d in drops)
    assert not any(isinstance(m, nn.Dropout) for m in create_model("densenet121").modules())


def test_options_change_the_structure():
    base = create_model("densenet40_k12")
    wider = create_model("densenet40_k12", growth_rate=24)
    assert wider.num_features == 16 + 3 * 12 * 24
    assert not any(isinstance(m, DenseLayer) and hasattr(m, "conv1") for m in base.modules())
    bc = create_model("densenet40_k12", bottleneck=True, compression=0.5)
    assert bc.transition1.conv.out_channels == 80 and hasattr(bc.block1.layer1, "conv1")
    assert _params(bc) < _params(base)
    gn = create_model("densenet_bc100_k12", norm="group", activation="silu")
    assert isinstance(gn.block1.layer1.norm1, nn.GroupNorm)
    assert isinstance(gn.final[1], nn.SiLU)
    assert create_model("densenet121", stem_channels=96).stem[0].out_channels == 96


def test_paper_init_is_he_normal_fan_out():
    torch.manual_seed(0)
    model = create_model("densenet_bc100_k12")
    conv = model.block3.layer10.conv1  # 1x1, 48 output maps
    assert conv.weight.std().item() == pytest.approx((2 / 48) ** 0.5, rel=0.05)
    assert torch.all(model.output.bias == 0)
    other = create_model("densenet_bc100_k12", init="xavier_uniform").block3.layer10.conv1
    assert other.weight.std().item() != pytest.approx(conv.weight.std().item(), rel=0.05)


def test_other_input_sizes_pass_the_global_pool():
    model = create_model("densenet40_k12").eval()
    assert not model.fixed_input_size
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 40)).shape == (1, 10)
    model.validate_input((3, 4, 4))
    with pytest.raises(CnnlabError, match="does not fit"):
        model.validate_input((3, 3, 32))
    imagenet = create_model("densenet121")
    imagenet.validate_input((3, 29, 29))  # one 1x1 map left after the last transition
    with pytest.raises(CnnlabError, match="does not fit"):
        imagenet.validate_input((3, 28, 28))


def test_recipes():
    cifar = get_spec("densenet_bc100_k12").recipe
    assert (cifar.lr, cifar.momentum, cifar.nesterov, cifar.weight_decay) == (0.1, 0.9, True, 1e-4)
    assert (cifar.batch_size, cifar.epochs) == (64, 300)
    drops = ScheduleFactor(cifar.schedule, cifar.epochs, 1)
    assert [e for e in range(1, 300) if drops(e) != drops(e - 1)] == [150, 225]
    assert cifar.preprocessing.mean == (0.4914, 0.4822, 0.4465)
    assert cifar.preprocessing.std == (0.2470, 0.2435, 0.2616)
    imagenet = get_spec("densenet121").recipe
    assert (imagenet.batch_size, imagenet.epochs, imagenet.nesterov) == (256, 90, True)
    steps = ScheduleFactor(imagenet.schedule, imagenet.epochs, 1)
    assert [e for e in range(1, 90) if steps(e) != steps(e - 1)] == [30, 60]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("growth_rate", 0),
        ("block_config", ()),
        ("block_config", (6, 0)),
        ("compression", 0.0),
        ("compression", 1.5),
        ("dropout", 1.0),
        ("bn_size", 0),
        ("stem", "resnet"),
        ("stem_channels", 0),
        ("norm", "weight"),
        ("activation", "swish"),
        ("init", "orthogonal"),
    ],
)
def test_bad_option_values_are_one_line_errors(option, value):
    with pytest.raises(CnnlabError, match=option):
        create_model("densenet40_k12", **{option: value})
