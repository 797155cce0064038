"""torchvision-format state dicts onto cnnlab's ResNet, VGG and DenseNet.

torchvision is not installed: the reference modules below are written for this test and
reproduce only torchvision's parameter names and shapes (and the computation each name
stands for), so that a state dict saved from them looks like one saved from torchvision.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.models.torchvision_weights import (
    SUPPORTED,
    load_torchvision_state_dict,
    read_state_dict,
    torchvision_to_cnnlab_keys,
)

# -- reference layouts ---------------------------------------------------------------------


class RefBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = _projection(cin, width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class RefBottleneckV15(nn.Module):
    """torchvision's "v1.5" bottleneck: the stride sits in the 3x3 convolution."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, 4 * width, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(4 * width)
        self.downsample = _projection(cin, 4 * width, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


def _projection(cin: int, cout: int, stride: int) -> nn.Module | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class RefResNet(nn.Module):
    """conv1, bn1, maxpool, layer1..layer4, avgpool, fc."""

    def __init__(self, block: type[nn.Module], layers: tuple[int, ...], classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512)), start=1):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if i > 1 and j == 0 else 1))
                cin = width * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(cin, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


VGG_A = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")  # Table 1, column A


class RefVGG(nn.Module):
    """features.N (conv, [BN,] ReLU, ..., max pool), avgpool to 7x7, classifier.0-6."""

    def __init__(self, spec: tuple, batch_norm: bool, hidden: int, classes: int) -> None:
        super().__init__()
        layers, cin = [], 3
        for v in spec:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
                continue
            layers.append(nn.Conv2d(cin, v, 3, padding=1))
            layers += [nn.BatchNorm2d(v)] if batch_norm else []
            layers.append(nn.ReLU())
            cin = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(),
            nn.Linear(hidden, classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class RefDenseLayer(nn.Module):
    def __init__(self, cin: int, k: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 4 * k, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(4 * k)
        self.conv2 = nn.Conv2d(4 * k, k, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.norm2(self.conv1(F.relu(self.norm1(x))))))


class RefDenseBlock(nn.Module):
    def __init__(self, cin: int, n: int, k: int) -> None:
        super().__init__()
        for j in range(n):
            self.add_module(f"denselayer{j + 1}", RefDenseLayer(cin + j * k, k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = torch.cat([x, layer(x)], 1)
        return x


class RefDenseNet(nn.Module):
    """features.{conv0, norm0, pool0, denseblockB.denselayerL, transitionT, norm5}, classifier."""

    def __init__(self, blocks: tuple[int, ...], classes: int, k: int = 32) -> None:
        super().__init__()
        features = OrderedDict(
            conv0=nn.Conv2d(3, 2 * k, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(2 * k),
            relu0=nn.ReLU(),
            pool0=nn.MaxPool2d(3, 2, 1),
        )
        c = 2 * k
        for i, n in enumerate(blocks, start=1):
            features[f"denseblock{i}"] = RefDenseBlock(c, n, k)
            c += n * k
            if i < len(blocks):
                features[f"transition{i}"] = nn.Sequential(
                    OrderedDict(
                        norm=nn.BatchNorm2d(c),
                        relu=nn.ReLU(),
                        conv=nn.Conv2d(c, c // 2, 1, bias=False),
                        pool=nn.AvgPool2d(2, 2),
                    )
                )
                c //= 2
        features["norm5"] = nn.BatchNorm2d(c)
        self.features = nn.Sequential(features)
        self.classifier = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.features(x))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


@torch.no_grad()
def _randomise_norms_(model: nn.Module) -> nn.Module:
    """Distinct, non-default batch-norm parameters and statistics, so each must land right."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.1)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.num_batches_tracked.fill_(int(torch.randint(1, 1000, ())))
    return model.eval()


def _roundtrip(ref: nn.Module, tmp_path, fmt: str) -> dict[str, torch.Tensor]:
    state = {k: v.contiguous() for k, v in ref.state_dict().items()}
    if fmt == "safetensors":
        path = tmp_path / "weights.safetensors"
        save_file(state, str(path))
    else:
        path = tmp_path / "weights.pth"
        torch.save(state, path)
    return read_state_dict(path)


def _assert_every_tensor_arrived(name: str, ref_state: dict, model: nn.Module) -> None:
    mapping = torchvision_to_cnnlab_keys(name, list(ref_state))
    ours = model.state_dict()
    assert sorted(mapping.values()) == sorted(ours)  # one to one, nothing left out
    for tv_key, key in mapping.items():
        assert torch.equal(ours[key], ref_state[tv_key]), (tv_key, key)


# -- tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["safetensors", "torch.save"])
def test_resnet18_weights_land_in_place_and_compute_the_same(tmp_path, fmt):
    torch.manual_seed(0)
    ref = _randomise_norms_(RefResNet(RefBasicBlock, (2, 2, 2, 2), classes=1000))
    state = _roundtrip(ref, tmp_path, fmt)
    model = load_torchvision_state_dict("resnet18", state)
    _assert_every_tensor_arrived("resnet18", state, model)
    ours = model.state_dict()
    for tv_key, key in [
        ("conv1.weight", "stem.0.weight"),
        ("bn1.running_var", "stem.1.running_var"),
        ("layer3.0.downsample.0.weight", "layer3.0.shortcut.0.weight"),
        ("layer3.0.downsample.1.bias", "layer3.0.shortcut.1.bias"),
        ("layer4.1.bn2.num_batches_tracked", "layer4.1.bn2.num_batches_tracked"),
        ("fc.weight", "output.weight"),
    ]:
        assert torch.equal(ours[key], state[tv_key])
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def test_resnet50_v15_weights_compute_the_same_and_differ_from_the_papers_v1():
    torch.manual_seed(0)
    ref = _randomise_norms_(RefResNet(RefBottleneckV15, (3, 4, 6, 3), classes=10))
    state = ref.state_dict()
    model = load_torchvision_state_dict("resnet50", state)
    _assert_every_tensor_arrived("resnet50", state, model)
    assert model.num_classes == 10
    assert model.cfg.stride_at == "3x3"
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)
        v1 = load_torchvision_state_dict("resnet50", state, stride_at="1x1")
        assert not torch.allclose(v1(x), ref(x), rtol=1e-3, atol=1e-3)  # the paper's v1


@pytest.mark.parametrize("name", ["vgg11", "vgg11_bn"])
def test_vgg11_weights_land_in_place_and_compute_the_same(tmp_path, name):
    torch.manual_seed(0)
    # torchvision's hidden layers are 4096 wide; 64 keeps the test small, on both sides
    ref = _randomise_norms_(RefVGG(VGG_A, name.endswith("_bn"), hidden=64, classes=1000))
    state = _roundtrip(ref, tmp_path, "torch.save")
    model = load_torchvision_state_dict(name, state, fc_width=64)
    _assert_every_tensor_arrived(name, state, model)
    last_conv = "features.25.weight" if name.endswith("_bn") else "features.18.weight"
    assert torch.equal(model.state_dict()["block5.conv2.conv.weight"], state[last_conv])
    assert torch.equal(model.state_dict()["fc2.0.weight"], state["classifier.3.weight"])
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)


def test_densenet121_weights_land_in_place_in_new_and_old_names():
    torch.manual_seed(0)
    ref = _randomise_norms_(RefDenseNet((6, 12, 24, 16), classes=1000))
    state = ref.state_dict()
    model = load_torchvision_state_dict("densenet121", state)
    _assert_every_tensor_arrived("densenet121", state, model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)
    # torchvision's downloadable files spell denselayer modules norm.1, conv.1, norm.2, conv.2
    old = {
        k.replace(".norm1.", ".norm.1.")
        .replace(".conv1.", ".conv.1.")
        .replace(".norm2.", ".norm.2.")
        .replace(".conv2.", ".conv.2."): v
        for k, v in state.items()
    }
    assert any(".norm.1." in k for k in old)
    again = load_torchvision_state_dict("densenet121", old)
    assert all(torch.equal(again.state_dict()[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("name", ["alexnet", "plain18", "densenet264", "vgg16_1x1", "nope"])
def test_other_models_are_refused_naming_the_supported_ones(name):
    with pytest.raises(CnnlabError, match=r"resnet18, .*densenet201") as e:
        load_torchvision_state_dict(name, {})
    assert "\n" not in str(e.value)
    assert name not in SUPPORTED


def test_a_state_dict_of_another_layout_is_a_one_line_error():
    state = RefResNet(RefBasicBlock, (2, 2, 2, 2), classes=10).state_dict()
    with pytest.raises(CheckpointError, match="resnet34 layout: no weight for") as e:
        load_torchvision_state_dict("resnet34", state)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match=r"no 'classifier\.weight'"):
        load_torchvision_state_dict("densenet121", state)
    del state["layer1.0.bn1.num_batches_tracked"]  # older files lack it: still loads
    load_torchvision_state_dict("resnet18", state)


def test_read_state_dict_refuses_what_is_not_one(tmp_path):
    torch.save({"epoch": 3}, tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        read_state_dict(tmp_path / "state.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        read_state_dict(tmp_path / "missing.pth")


def test_import_weights_writes_a_checkpoint_that_eval_and_finetune_start_from(
    tmp_path, capsys, monkeypatch
):
    """`cnnlab import-weights`: the checkpoint computes what the torchvision-layout model
    computes, carries the class names and ImageNet's normalisation, and `finetune` trains
    a new head on it for a folder of images."""
    from PIL import Image

    from cnnlab.checkpoint import load_checkpoint
    from cnnlab.cli.main import main

    torch.manual_seed(0)
    ref = _randomise_norms_(RefResNet(RefBasicBlock, (2, 2, 2, 2), classes=3)).eval()
    weights = tmp_path / "resnet18-tv.pth"
    torch.save(ref.state_dict(), weights)
    names = tmp_path / "classes.txt"
    names.write_text("cat\ndog\n\nfish\n")
    ckpt = tmp_path / "resnet18.safetensors"
    args = ["import-weights", "resnet18", str(weights), "--out", str(ckpt)]
    assert main([*args, "--classes", str(names), "--input-size", "64"]) == 0
    assert "3 classes" in capsys.readouterr().out
    model, meta = load_checkpoint(ckpt)
    assert meta.classes == ["cat", "dog", "fish"] and meta.image_shape == (3, 64, 64)
    assert meta.preprocessing.mean == (0.485, 0.456, 0.406)
    assert meta.data_source == "torchvision weights resnet18-tv.pth"
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), rtol=1e-4, atol=1e-5)

    names.write_text("cat\ndog\n")
    assert main([*args, "--classes", str(names)]) == 2
    assert "2 names, but the classifier has 3 outputs" in capsys.readouterr().err

    folder = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 2)):
        for label in ("round", "square"):
            (folder / split / label).mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / label / f"{i}.png")
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    run_dir = tmp_path / "ft"
    code = main(
        ["finetune", str(ckpt), "--data", str(folder), "--out", str(run_dir), "--epochs", "1",
         "--batch-size", "4", "--quiet", "--augment", "flip", "--label-smoothing", "0.1"]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0 and "trained on torchvision weights resnet18-tv.pth (3 classes)" in out
    _, tuned = load_checkpoint(run_dir)
    assert tuned.classes == ["round", "square"] and tuned.data_source == "shapes"
    report = (run_dir / "report.md").read_text()
    assert "Augmentation of training batches: flip" in report
    assert "label smoothing 0.1" in report
