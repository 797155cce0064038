"""The technique options (--norm, --act, --init, --dropout) on every family, and label
smoothing (Szegedy et al. 2016, Section 7)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import fields, replace

import pytest
import torch
from torch import nn

from cnnlab.checkpoint import load_checkpoint
from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.layers import ACTIVATIONS, INIT_SCHEMES, NORMS, LocalResponseNorm
from cnnlab.models.technique_options import PLACES, technique_overrides
from cnnlab.registry import create_model, get_spec, list_models
from cnnlab.training.config import TrainConfig
from cnnlab.training.losses import create_loss
from cnnlab.training.trainer import Trainer

# one cheap model of each family; each but lenet5_modern and googlenet has batch norm
MODELS = {
    "convnet": "convnet",
    "lenet": "lenet5_modern",
    "alexnet": "alexnet_small",
    "vgg": "vgg11_bn_small",
    "googlenet": "googlenet_small",
    "resnet": "resnet20",
    "densenet": "densenet40_k12",
    "mobilenet": "mobilenet_v1_small",
    "shufflenet": "shufflenet_v1_g3_small",
}
CANDIDATES = {
    "norm": ("lrn", *NORMS),
    "act": tuple(ACTIVATIONS),
    "init": ("paper", *INIT_SCHEMES),
}


def build(name: str, **options) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, **technique_overrides(name, get_spec(name).family, **options))


def names_of(model: nn.Module, kind: type) -> dict[str, nn.Module]:
    return {n: m for n, m in model.named_modules() if isinstance(m, kind)}


def test_every_family_has_its_places():
    assert set(PLACES) == {get_spec(n).family for n in list_models()} == set(MODELS)
    for family, places in PLACES.items():
        config_fields = {f.name for f in fields(get_spec(MODELS[family]).config)}
        for place in places.values():
            assert {place.field, place.lrn_switch} - {""} <= config_fields


@pytest.mark.parametrize("family", sorted(MODELS))
def test_the_supported_values_are_what_the_family_accepts(family):
    spec = get_spec(MODELS[family])
    for option, candidates in CANDIDATES.items():
        place = PLACES[family][option]
        for value in candidates:
            cfg = replace(spec.config, **place.overrides(value))
            try:
                spec.family_module._check_config(cfg)
                accepted = True
            except CnnlabError:
                accepted = False
            assert accepted == (value in place.values), (family, option, value)


@pytest.mark.parametrize("family", sorted(set(MODELS) - {"lenet"}))
def test_norm_group_puts_group_norm_where_batch_norm_was(family):
    name = MODELS[family]
    batch = names_of(build(name), nn.BatchNorm2d)
    model = build(name, norm="group")
    group = names_of(model, nn.GroupNorm)
    assert len(batch) > 2 and not names_of(model, nn.BatchNorm2d)
    assert group.keys() == batch.keys()
    assert all(group[n].num_channels == batch[n].num_features for n in batch)
    # Wu and He's 32 groups, or the largest divisor of the channels below that
    assert all(1 < g.num_groups <= 32 for g in group.values())
    assert all(g.num_channels % g.num_groups == 0 for g in group.values())


def test_norm_none_removes_it_and_lenet_offers_batch_only():
    assert len(names_of(build("lenet5"), nn.BatchNorm2d)) == 0
    assert sorted(names_of(build("lenet5", norm="batch"), nn.BatchNorm2d)) == [
        "c1.1",
        "c3.1",
        "c5.1",
    ]
    plain = build("resnet20", norm="none")
    assert not names_of(plain, nn.BatchNorm2d) and not names_of(plain, nn.GroupNorm)
    with pytest.raises(
        CnnlabError, match=r"--norm group: lenet5_modern \(lenet\) supports none\|batch$"
    ):
        build("lenet5_modern", norm="group")


def test_norm_lrn_where_the_family_has_it():
    alex = build("alexnet_small", norm="lrn")
    assert (
        names_of(alex, LocalResponseNorm).keys()
        == names_of(build("alexnet_small"), nn.BatchNorm2d).keys()
    )
    paper = build("googlenet")  # LRN and no batch norm, as published
    assert len(names_of(paper, LocalResponseNorm)) == 2 and not names_of(paper, nn.BatchNorm2d)
    bn = build("googlenet", norm="batch")  # batch norm replaces the LRN
    assert not names_of(bn, LocalResponseNorm) and len(names_of(bn, nn.BatchNorm2d)) > 50
    small = build("googlenet_small", norm="lrn")
    assert len(names_of(small, LocalResponseNorm)) == 2 and not names_of(small, nn.BatchNorm2d)
    with pytest.raises(CnnlabError) as e:
        build("resnet20", norm="lrn")
    assert str(e.value) == "--norm lrn: resnet20 (resnet) supports batch|layer|instance|group|none"


@pytest.mark.parametrize("family", sorted(MODELS))
def test_act_puts_the_activation_where_relu_was(family):
    name, new = MODELS[family], ("tanh" if family == "lenet" else "silu")
    relus = names_of(build(name), nn.ReLU)
    model = build(name, act=new)
    assert len(relus) > 2 and not names_of(model, nn.ReLU)
    assert names_of(model, type(ACTIVATIONS[new]())).keys() == relus.keys()


def test_lenet_activations_are_its_own():
    with pytest.raises(
        CnnlabError, match=r"--act silu: lenet5_modern \(lenet\) supports scaled_tanh\|tanh\|relu"
    ):
        build("lenet5_modern", act="silu")


def weight_variances(model: nn.Module, kinds: tuple[type, ...]) -> list[tuple[float, int]]:
    """(sample variance, fan-in) of every weight of `kinds` with at least 4,096 values."""
    return [
        (m.weight.var().item(), m.weight[0].numel())
        for m in model.modules()
        if isinstance(m, kinds) and m.weight.numel() >= 4096
    ]


@pytest.mark.parametrize("family", sorted(set(MODELS) - {"lenet"}))
def test_init_kaiming_normal_gives_variance_2_over_fan_in(family):
    measured = weight_variances(build(MODELS[family], init="kaiming_normal"), (nn.Conv2d,))
    assert len(measured) >= 2
    for variance, fan_in in measured:
        assert variance == pytest.approx(2 / fan_in, rel=0.15)


def test_init_on_lenet_is_the_papers_uniform_or_pytorchs():
    model = build("lenet5_modern", init="lecun1998")
    measured = weight_variances(model, (nn.Conv2d, nn.Linear))
    assert len(measured) >= 2
    for variance, fan_in in measured:  # U(-2.4/F, 2.4/F): variance (2.4 / F)^2 / 3
        assert variance == pytest.approx((2.4 / fan_in) ** 2 / 3, rel=0.15)
    with pytest.raises(CnnlabError, match=r"supports lecun1998\|default$"):
        build("lenet5_modern", init="kaiming_normal")


@pytest.mark.parametrize("family", sorted(MODELS))
def test_dropout_sets_the_models_dropout(family):
    model = build(MODELS[family], dropout=0.3)
    dropouts = {n: m.p for n, m in names_of(model, nn.Dropout).items() if "aux" not in n}
    assert dropouts and set(dropouts.values()) == {0.3}
    assert not {
        n: m
        for n, m in names_of(build(MODELS[family], dropout=0.0), nn.Dropout).items()
        if "aux" not in n
    }


@pytest.mark.parametrize("value", [1.0, -0.1, "half"])
def test_dropout_must_be_a_probability(value):
    with pytest.raises(CnnlabError, match=r"^--dropout .*: expected a probability in \[0, 1\)$"):
        technique_overrides("resnet20", "resnet", dropout=value)


def test_a_family_without_the_place_is_a_one_line_error():
    with pytest.raises(CnnlabError, match=r"^--norm: mynet \(myfamily\) has no place for it$"):
        technique_overrides("mynet", "myfamily", norm="batch")


# -- label smoothing --------------------------------------------------------------------


def test_label_smoothing_is_cross_entropy_against_the_smoothed_target():
    torch.manual_seed(0)
    logits, target, eps, k = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0]), 0.1, 5
    smoothed = (1 - eps) * nn.functional.one_hot(target, k).float() + eps / k  # q'(k)
    expected = -(smoothed * logits.log_softmax(dim=1)).sum(dim=1).mean()
    torch.testing.assert_close(create_loss("cross_entropy", eps)(logits, target), expected)
    plain = -logits.log_softmax(dim=1)[torch.arange(6), target].mean()
    torch.testing.assert_close(create_loss("cross_entropy", 0.0)(logits, target), plain)


def test_the_trainer_minimises_the_smoothed_loss(mnist_env, tmp_path):
    recipe = get_spec("lenet5_modern").recipe
    cfg = TrainConfig.from_recipe(
        "lenet5_modern", recipe, label_smoothing=0.1, epochs=1, limit_train=64, quiet=True
    )
    trainer = Trainer(cfg, tmp_path / "run")
    logits, target = torch.randn(4, 10), torch.tensor([1, 2, 3, 4])
    smoothed = create_loss("cross_entropy", 0.1)(logits, target)
    torch.testing.assert_close(trainer.loss_fn(logits, target), smoothed)
    assert not torch.allclose(create_loss("cross_entropy")(logits, target), smoothed)


def test_label_smoothing_is_refused_where_it_is_undefined():
    with pytest.raises(CnnlabError, match="cross_entropy only"):
        create_loss("rbf_map", 0.1)
    with pytest.raises(CnnlabError, match="cross_entropy only"):
        TrainConfig.from_recipe("lenet5_1998", get_spec("lenet5_1998").recipe, label_smoothing=0.1)
    recipe = get_spec("lenet5_modern").recipe
    assert (
        TrainConfig.from_recipe("lenet5_modern", recipe, label_smoothing=0.1).label_smoothing == 0.1
    )
    for eps in (1.0, -0.1):
        with pytest.raises(CnnlabError, match=r"expected a number in \[0, 1\)"):
            TrainConfig.from_recipe("lenet5_modern", recipe, label_smoothing=eps)


# -- the command line -------------------------------------------------------------------


def test_train_refuses_an_unsupported_technique_in_one_line(capsys, tmp_path):
    code = main(["train", "resnet20", "--norm", "lrn", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0
    assert "resnet20" in err and "--norm lrn" in err and "batch|layer" in err
    (tmp_path / "config.json").write_text("{}")
    code = main(["train", "--resume", str(tmp_path), "--act", "tanh"])
    assert code == 2 and "--act" in capsys.readouterr().err


def test_train_flags_reach_the_config_the_trained_model_and_the_report(
    mnist_data_dir, tmp_path, capsys
):
    run_dir = tmp_path / "run"
    argv = ["train", "lenet5_modern", "--data-dir", str(mnist_data_dir), "--out", str(run_dir)]
    argv += ["--epochs", "1", "--limit-train", "512", "--limit-test", "256", "--quiet"]
    argv += ["--model-arg", "dropout=0.5", "--model-arg", "subsampling=avg"]
    argv += ["--norm", "none", "--act", "tanh", "--dropout", "0.2", "--label-smoothing", "0.1"]
    assert main(argv) == 0
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["label_smoothing"] == 0.1
    assert cfg["model_args"] == {
        "subsampling": "avg",
        "norm": "none",
        "activation": "tanh",
        "dropout": 0.2,
    }
    report = (run_dir / "report.md").read_text()
    assert "label smoothing 0.1" in report and "Per-class test error, worst first: " in report
    model, _ = load_checkpoint(run_dir / "checkpoints" / "last.safetensors", "cpu")
    counts = Counter(type(m).__name__ for m in model.modules())
    assert counts["Tanh"] == 4 and counts["BatchNorm2d"] == 0 and counts["AvgPool2d"] == 2


def test_the_cifar_resnets_augment_as_the_paper_and_none_turns_it_off():
    """He et al. 2016, Section 4.2: 4-pixel padding, random 32x32 crops, flips."""
    recipe = get_spec("resnet20").recipe
    on_cifar = TrainConfig.from_recipe("resnet20", recipe, data="cifar10")
    assert on_cifar.augment == ("crop:4", "flip") and "is off" not in on_cifar.recipe_note
    plain = TrainConfig.from_recipe("plain56", get_spec("plain56").recipe, data="cifar10")
    assert plain.augment == ("crop:4", "flip")
    assert TrainConfig.from_recipe("lenet5_modern", get_spec("lenet5_modern").recipe).augment == ()
    assert TrainConfig.from_recipe("resnet20", recipe, augment=["none"]).augment == ()
    assert TrainConfig.from_recipe("resnet20", recipe, augment=["flip"]).augment == ("flip",)


def test_a_recipe_augments_only_the_data_it_was_written_for(caplog):
    """Flipped or shifted digits are not the CIFAR recipe's augmentation: on MNIST or an
    image folder it stays off, says so in the run's notes, and --augment still asks for it."""
    recipe = get_spec("resnet20").recipe
    with caplog.at_level("INFO"):
        on_mnist = TrainConfig.from_recipe("resnet20", recipe, data="mnist")
    assert on_mnist.augment == ()
    assert "augmentation (crop:4 flip) is for cifar10, so it is off on mnist" in caplog.text
    assert "so it is off on mnist" in on_mnist.recipe_note
    on_folder = TrainConfig.from_recipe("resnet20", recipe, data="photos/")
    assert on_folder.augment == () and "off on photos/" in on_folder.recipe_note
    asked = TrainConfig.from_recipe("resnet20", recipe, data="mnist", augment=["crop:2"])
    assert asked.augment == ("crop:2",) and "is off" not in asked.recipe_note
