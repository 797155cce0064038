"""Transfer learning: freezing policies, frozen batch norm, the head replaced, parameter
groups, a run started from a checkpoint and its resumption."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.checkpoint import CheckpointMeta, save_checkpoint
from cnnlab.data.preprocessing import MNIST_32
from cnnlab.errors import CheckpointError, CnnlabError
from cnnlab.registry import create_model, get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.optimizers import create_optimizer
from cnnlab.training.trainer import Trainer
from cnnlab.training.transfer import (
    apply_freeze,
    frozen_parameter_names,
    head_prefixes,
    keep_frozen_norms_in_eval,
    load_pretrained_,
    parameter_groups,
)


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def _lenet(num_classes: int = 10, in_chans: int = 1, seed: int = 0):
    torch.manual_seed(seed)
    return create_model("lenet5_modern", num_classes=num_classes, in_chans=in_chans)


@pytest.fixture
def source(tmp_path):
    """A lenet5_modern checkpoint (10 classes) whose batch-norm statistics have moved."""
    model = _lenet(seed=1).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 32, 32) * 2 + 0.5)
    meta = CheckpointMeta(
        model="lenet5_modern",
        num_classes=10,
        in_chans=1,
        preprocessing=MNIST_32,
        classes=[str(i) for i in range(10)],
        image_shape=(1, 28, 28),
        dataset="mnist",
    )
    path = tmp_path / "source.safetensors"
    save_checkpoint(path, model, meta)
    return path


# -- policies ------------------------------------------------------------------------------


def test_all_but_head_leaves_only_the_classifier_trainable():
    model = _lenet()
    report = apply_freeze(model, "all-but-head")
    assert _trainable(model) == {"output.1.weight", "output.1.bias"}
    assert report.trainable == 84 * 10 + 10
    assert report.frozen == sum(p.numel() for p in model.parameters()) - report.trainable
    assert report.trainable_parts == ("output",)
    assert report.frozen_parts == ("c1", "c3", "c5", "f6")
    assert "850 trainable" in str(report)


def test_stages_n_freezes_the_first_n_stages_and_everything_before_them():
    model = create_model("resnet18", num_classes=5)  # stages: stem, layer1 ... layer4
    apply_freeze(model, "stages:2")
    parts = {n.partition(".")[0] for n in _trainable(model)}
    assert parts == {"layer2", "layer3", "layer4", "output"}
    model = create_model("resnet20")
    apply_freeze(model, "stages:1")
    assert {n.partition(".")[0] for n in _trainable(model)} == {
        "layer1",
        "layer2",
        "layer3",
        "output",
    }


def test_stages_n_counts_parameterless_stages_and_never_freezes_the_head():
    model = _lenet()  # stages c1, s2 (max pool, no parameters), c3, s4, c5
    assert frozen_parameter_names(model, "stages:2") == frozen_parameter_names(model, "stages:1")
    apply_freeze(model, "stages:5")
    assert {n.partition(".")[0] for n in _trainable(model)} == {"f6", "output"}


def test_googlenet_auxiliary_heads_count_as_classifiers():
    model = create_model("googlenet_small", num_classes=3)
    assert head_prefixes(model) == ("output", "output_aux1", "output_aux2")
    apply_freeze(model, "all-but-head")
    assert {n.partition(".")[0] for n in _trainable(model)} == set(head_prefixes(model))


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ("stages:6", "has 5 stages"),
        ("stages:0", "expected none, all-but-head or stages:N"),
        ("stages:two", "expected none, all-but-head or stages:N"),
        ("stages:\u00b2", "expected none, all-but-head or stages:N"),  # a digit int() refuses
        ("head", "expected none, all-but-head or stages:N"),
    ],
)
def test_bad_policies_are_one_line_errors(policy, message):
    with pytest.raises(CnnlabError, match=message) as e:
        apply_freeze(_lenet(), policy)
    assert "\n" not in str(e.value)


def test_config_refuses_a_bad_policy_and_a_zero_backbone_rate():
    recipe = get_spec("lenet5_modern").recipe
    with pytest.raises(CnnlabError, match="--freeze 'everything'"):
        TrainConfig.from_recipe("lenet5_modern", recipe, freeze="everything")
    with pytest.raises(CnnlabError, match="--backbone-lr-mult 0"):
        TrainConfig.from_recipe("lenet5_modern", recipe, backbone_lr_mult=0.0)
    with pytest.raises(CnnlabError, match="the backbone is frozen"):
        TrainConfig.from_recipe(
            "lenet5_modern", recipe, freeze="all-but-head", backbone_lr_mult=0.1
        )


# -- training with frozen parts ------------------------------------------------------------


def _steps(model, optimizer, steps: int = 3, freeze_norms: bool = True) -> None:
    torch.manual_seed(0)
    for _ in range(steps):
        model.train()
        if freeze_norms:
            keep_frozen_norms_in_eval(model)
        x, y = torch.randn(32, 1, 32, 32), torch.randint(0, 10, (32,))
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_the_optimizer_sees_and_updates_only_trainable_parameters():
    model = _lenet()
    apply_freeze(model, "stages:3")
    groups = parameter_groups(model, 0.1)
    optimizer = create_optimizer("sgd", groups, 0.1, weight_decay=1e-3)
    seen = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert seen == {id(p) for p in model.parameters() if p.requires_grad}
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _steps(model, optimizer)
    after = model.state_dict()
    for name, p in model.named_parameters():
        assert torch.equal(after[name], before[name]) != p.requires_grad, name


def test_frozen_batch_norm_keeps_its_running_statistics():
    model = _lenet()
    apply_freeze(model, "all-but-head")
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert before  # c1, c3 and c5 have batch norm
    optimizer = create_optimizer("adam", parameter_groups(model, 1e-3), 1e-3)
    _steps(model, optimizer)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    _steps(model, optimizer, freeze_norms=False)  # what the call prevents
    assert not any(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_trainable_batch_norm_still_learns_its_statistics():
    model = _lenet()
    apply_freeze(model, "stages:1")  # c1 frozen, c3 and c5 train
    c1, c3 = model.c1[1].running_mean.clone(), model.c3[1].running_mean.clone()
    _steps(model, create_optimizer("sgd", parameter_groups(model, 0.01), 0.01))
    assert torch.equal(model.c1[1].running_mean, c1)
    assert not torch.equal(model.c3[1].running_mean, c3)


def test_backbone_rate_multiplier_gives_the_backbone_its_own_group():
    model = _lenet()
    apply_freeze(model, "stages:1")
    groups = parameter_groups(model, 0.02, backbone_lr_mult=0.1)
    optimizer = create_optimizer("sgd", groups, 0.02)
    head, backbone = optimizer.param_groups
    assert head["lr"] == 0.02 and backbone["lr"] == pytest.approx(0.002)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.output.parameters()}
    assert len(backbone["params"]) == len(_trainable(model)) - 2
    apply_freeze(model, "all-but-head")  # no trainable backbone left: one group
    assert len(parameter_groups(model, 0.02, backbone_lr_mult=0.1)) == 1


# -- starting from a checkpoint ------------------------------------------------------------


def test_load_pretrained_copies_all_but_a_new_head_for_other_classes(source):
    saved = load_file(source)
    model = _lenet(num_classes=5, seed=7)
    fresh_head = model.output[1].weight.clone()
    load_pretrained_(model, source)
    state = model.state_dict()
    assert state["output.1.weight"].shape == (5, 84)
    assert torch.equal(state["output.1.weight"], fresh_head)
    for key, value in saved.items():
        if not key.startswith("output."):
            assert torch.equal(state[key], value), key


def test_load_pretrained_refuses_weights_that_do_not_fit(source, tmp_path):
    with pytest.raises(CheckpointError, match="1-channel images, these have 3") as e:
        load_pretrained_(_lenet(in_chans=3), source)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match=r"does not fit LeNet5: it (lacks|has an extra)"):
        load_pretrained_(create_model("lenet5", num_classes=10), source)


def _finetune_config(source, **kw) -> TrainConfig:
    settings = dict(
        epochs=2,
        limit_train=512,
        limit_test=200,
        batch_size=64,
        quiet=True,
        threads=2,
        seed=3,
        init_from=str(source),
        freeze="stages:2",
        backbone_lr_mult=0.1,
    )
    settings.update(kw)
    return TrainConfig.from_recipe("lenet5_modern", get_spec("lenet5_modern").recipe, **settings)


def test_a_run_from_a_checkpoint_keeps_frozen_weights_and_records_its_start(
    mnist_env, source, tmp_path
):
    run = tmp_path / "run"
    cfg = _finetune_config(source, epochs=1, freeze="all-but-head", backbone_lr_mult=1.0)
    Trainer(cfg, run).fit()
    saved = load_file(source)
    tuned = load_file(run / "checkpoints" / "last.safetensors")
    for key, value in saved.items():
        assert torch.equal(tuned[key], value) != key.startswith("output."), key
    config = json.loads((run / "config.json").read_text())
    assert config["init_from"] == str(source) and config["freeze"] == "all-but-head"
    report = (run / "report.md").read_text()
    assert f"Started from `{source}`" in report and "850 trainable parameters" in report


class _Crash(Exception):
    pass


def test_a_fine_tuning_run_resumes_bit_for_bit_without_its_source(
    mnist_env, source, tmp_path, monkeypatch
):
    cfg = _finetune_config(source)
    Trainer(cfg, tmp_path / "whole").fit()

    def crash_after_first_epoch(self, row):
        if row["epoch"] == 1:
            raise _Crash

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_print_epoch", crash_after_first_epoch)
        with pytest.raises(_Crash):
            Trainer(cfg, tmp_path / "cut").fit()
    source.unlink()  # the run's own checkpoint is what a resumed run starts from
    resumed = Trainer(cfg, tmp_path / "cut")
    assert resumed.restore() and resumed.start_epoch == 1
    assert len(resumed.optimizer.param_groups) == 2
    resumed.fit()
    whole = load_file(tmp_path / "whole" / "checkpoints" / "last.safetensors")
    cut = load_file(tmp_path / "cut" / "checkpoints" / "last.safetensors")
    assert whole.keys() == cut.keys()
    assert all(torch.equal(whole[k], cut[k]) for k in whole)
