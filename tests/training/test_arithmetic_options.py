"""--precision (autocast, Micikevicius et al. 2018), --channels-last and --compile on the
trainer: each acts where it says, and changes the result no more than rounding does."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.cli.main import main
from cnnlab.errors import CnnlabError
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig
from cnnlab.training.trainer import Trainer
from cnnlab.training.training_state import load_training_state


def _config(**kw) -> TrainConfig:
    settings = dict(
        epochs=1, limit_train=512, limit_test=256, batch_size=64, quiet=True, threads=2, seed=3
    )
    settings.update(kw)
    return TrainConfig.from_recipe("lenet5_modern", get_spec("lenet5_modern").recipe, **settings)


def _fit_watching_c1(cfg: TrainConfig, run_dir) -> dict:
    """Fit, recording the first convolution's output layout and dtype in training (its
    1-channel input is channels_last and contiguous at once)."""
    trainer = Trainer(cfg, run_dir)
    seen: dict = {}

    def hook(module, inputs, output):
        if module.training and not seen:
            seen["channels_last"] = output.is_contiguous(memory_format=torch.channels_last)
            seen["dtype"] = output.dtype

    conv = next(m for m in trainer.model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(hook)
    seen["error"] = trainer.fit().final["test_top1_error"]
    return seen


def _weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "checkpoints" / "last.safetensors")


def test_bf16_runs_the_convolutions_in_bf16_and_keeps_fp32_weights(mnist_env, tmp_path):
    plain = _fit_watching_c1(_config(), tmp_path / "fp32")
    bf16 = _fit_watching_c1(_config(precision="bf16"), tmp_path / "bf16")
    assert plain["dtype"] == torch.float32 and bf16["dtype"] == torch.bfloat16
    weights = _weights(tmp_path / "bf16")
    assert all(w.dtype in (torch.float32, torch.int64) for w in weights.values())
    assert abs(bf16["error"] - plain["error"]) < 0.05  # the same learning, rounded coarser
    assert "- Arithmetic: bf16" in (tmp_path / "bf16" / "report.md").read_text()


def test_fp16_scales_the_loss_and_the_scale_is_saved_for_resume(mnist_env, tmp_path):
    trainer = Trainer(_config(precision="fp16"), tmp_path / "fp16")
    assert trainer.scaler.is_enabled()
    trainer.fit()
    state = load_training_state(tmp_path / "fp16" / "checkpoints" / "last.state.safetensors")
    assert state["scaler"]["scale"] > 0
    resumed = Trainer(_config(precision="fp16", epochs=2), tmp_path / "fp16")
    assert resumed.restore()
    assert resumed.scaler.get_scale() == state["scaler"]["scale"]


# SGD below: Adam's step, about lr * sign(gradient), would magnify rounding differences;
# no dropout: compiled code draws its masks from its own generator
def test_channels_last_computes_in_channels_last_and_the_same(mnist_env, tmp_path):
    sgd = dict(optimizer="sgd", lr=0.01, model_args={"dropout": 0.0})
    plain = _fit_watching_c1(_config(**sgd), tmp_path / "nchw")
    last = _fit_watching_c1(_config(**sgd, channels_last=True), tmp_path / "nhwc")
    assert not plain["channels_last"] and last["channels_last"]
    a, b = _weights(tmp_path / "nchw"), _weights(tmp_path / "nhwc")
    for key in a:  # other kernels, other rounding, grown a little by 8 steps of batch norm
        torch.testing.assert_close(b[key].contiguous(), a[key], rtol=1e-2, atol=1e-3)


def test_compile_trains_the_same_model(mnist_env, tmp_path):
    settings = dict(
        limit_train=256, batch_size=128, optimizer="sgd", lr=0.01, model_args={"dropout": 0.0}
    )
    Trainer(_config(**settings), tmp_path / "eager").fit()
    compiled = Trainer(_config(**settings, compile=True), tmp_path / "jit")
    assert compiled.forward_with_aux is not compiled.model.forward_with_aux
    compiled.fit()
    a, b = _weights(tmp_path / "eager"), _weights(tmp_path / "jit")
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4)


def test_an_unknown_precision_is_refused(tmp_path, capsys):
    with pytest.raises(CnnlabError, match="--precision 'fp8': expected one of fp32, bf16, fp16"):
        _config(precision="fp8")
    config = tmp_path / "c.json"
    config.write_text('{"model": "lenet5", "precision": "int4"}')
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    assert "int4" in capsys.readouterr().err


def test_channels_last_is_on_by_default_only_where_it_was_measured_faster():
    # benchmarks/results/speed_options.md: faster for lenet5 and resnet20, slower for
    # lenet5_modern (its batch norm and max pooling in NHWC)
    models = ("lenet5", "resnet20", "plain56", "lenet5_modern", "lenet5_1998")
    default = {m: TrainConfig.from_recipe(m, get_spec(m).recipe).channels_last for m in models}
    assert default == {
        "lenet5": True, "resnet20": True, "plain56": True,
        "lenet5_modern": False, "lenet5_1998": False,
    }  # fmt: skip
    off = TrainConfig.from_recipe("lenet5", get_spec("lenet5").recipe, channels_last=False)
    assert not off.channels_last  # --no-channels-last
