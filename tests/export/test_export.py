"""`cnnlab export`: every family's small-input variant to ONNX (and a few to TorchScript),
checked against PyTorch, with metadata that other tools read back; the command's mistakes."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from cnnlab import __version__, create_model, get_spec, list_models
from cnnlab.checkpoint import CheckpointMeta, load_checkpoint, save_checkpoint
from cnnlab.cli.main import main
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.export import exporter
from cnnlab.export.check import CheckFailed, check_outputs, compare
from cnnlab.export.exporter import export_model
from cnnlab.export.metadata import export_metadata
from cnnlab.export.onnx_export import run_onnx
from cnnlab.registry import FAMILIES


def _small_input_variants() -> list[str]:
    """Per family its first `_small` variant, else its first variant for inputs of at most 32x32;
    and all of LeNet-5 (lenet5_1998: the connection-table C3 and the RBF output)."""
    names = []
    for family in FAMILIES:
        small = [n for n in family.VARIANTS if n.endswith("_small")][:1]
        small = small or [n for n, v in family.VARIANTS.items() if v.input_size[1] <= 32][:1]
        names += small
    return sorted({*names, *list_models("lenet5*")})


SMALL_INPUT = _small_input_variants()  # googlenet_small: its auxiliary heads must not break
TORCHSCRIPT = ["lenet5_1998", "googlenet_small", "shufflenet_v1_g3_small", "resnet20"]


def _checkpoint(folder: Path, name: str, **meta: object) -> Path:
    """A freshly initialised `name` saved as a checkpoint (no training needed)."""
    torch.manual_seed(0)
    spec = get_spec(name)
    fields = dict(
        model=name,
        num_classes=spec.num_classes,
        in_chans=spec.input_size[0],
        preprocessing=spec.recipe.preprocessing,
        classes=[f"class {i}" for i in range(spec.num_classes)],
        image_shape=spec.input_size,
    )
    path = folder / f"{name}.safetensors"
    model = create_model(name)
    _set_batch_norm(model, spec.input_size)
    save_checkpoint(path, model, CheckpointMeta(**{**fields, **meta}))
    return path


def _set_batch_norm(model: nn.Module, input_size: tuple[int, int, int]) -> None:
    """Random batch norm scales and shifts, and running statistics measured on random images
    as training would measure them: at their initial (0, 1) a fresh network's activations
    vanish layer by layer (MobileNet's logits ~1e-15) and the check would compare nothing."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: one batch gives its own statistics
        with torch.no_grad():
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0.0, 0.1)
    model.train()
    with torch.no_grad():
        model(torch.randn(32, *input_size))
    model.eval()


def _export(tmp_path: Path, name: str, fmt: str, **options: object):
    model, meta = load_checkpoint(_checkpoint(tmp_path, name))
    metadata = export_metadata(meta)
    batch = torch.randn(5, *metadata["input_shape"], generator=torch.Generator().manual_seed(1))
    out = tmp_path / f"{name}.{fmt}"
    result = export_model(model, metadata, fmt, out, check_batch=batch, **options)
    return model, out, result


@pytest.mark.parametrize("name", SMALL_INPUT)
def test_small_input_variant_exports_to_onnx_and_passes_its_check(tmp_path, name):
    model, out, result = _export(tmp_path, name, "onnx", opset=17)
    assert result is not None and result.passed and result.examples == 5, result
    assert result.top1_agreement == 5 and result.max_abs_logit > 1e-2  # logits worth comparing
    # any batch size: one image, though exported with two and checked with five
    one = torch.rand(1, *model.input_size)
    with torch.no_grad():
        assert check_outputs(model, one, run_onnx(out, one), "onnxruntime", 1e-5).passed
    graph = onnx.load(str(out)).graph
    (inp,), (output,) = graph.input, graph.output  # GoogLeNet's auxiliary heads: not outputs
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert (inp.name, output.name, dims) == ("input", "logits", ["batch", *model.input_size])


def test_every_family_is_exported():
    assert {get_spec(n).family for n in SMALL_INPUT} == {
        f.__name__.rsplit(".", 1)[-1] for f in FAMILIES
    }
    assert {"lenet5_1998", "googlenet_small", "resnet20"} <= set(SMALL_INPUT)


def test_the_tolerance_scales_with_logits_beyond_one():
    small, large = torch.tensor([[0.5, -0.25]]), torch.tensor([[190.0, -20.0]])
    assert compare(small, small + 9e-6, "rt", 1e-5).passed
    assert not compare(small, small + 2e-5, "rt", 1e-5).passed
    assert compare(large, large + 1.8e-3, "rt", 1e-5).passed  # 1e-5 x 190
    failed = compare(large, large + 2e-3, "rt", 1e-5)
    assert not failed.passed and "1e-05 x largest |logit| 190" in failed.describe()
    assert not compare(small, small * float("nan"), "rt", 1e-5).passed
    assert compare(small, torch.zeros(1, 3), "rt", 1e-5).max_abs_difference == math.inf


def test_googlenet_auxiliary_heads_are_not_in_the_onnx_graph(tmp_path):
    model, out, _ = _export(tmp_path, "googlenet_small", "onnx", opset=17)
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith("output_aux"))
    main = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("output_aux"))
    stored = sum(math.prod(t.dims) for t in onnx.load(str(out)).graph.initializer)
    assert aux > 0 and stored <= main  # batch norm folded into the convolutions: fewer still


@pytest.mark.parametrize("name", TORCHSCRIPT)
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_export_passes_its_check_and_carries_the_metadata(tmp_path, name):
    model, out, result = _export(tmp_path, name, "torchscript")
    assert result is not None and result.passed, result
    extra = {"cnnlab.json": ""}
    loaded = torch.jit.load(str(out), _extra_files=extra)
    recorded = json.loads(extra["cnnlab.json"])
    assert recorded["model"] == name and recorded["input_shape"] == list(model.input_size)
    one = torch.rand(1, *model.input_size)
    with torch.no_grad():
        assert check_outputs(model, one, loaded(one), "torch.jit", 1e-5).passed


def test_onnx_metadata_reads_back_with_onnxruntime(tmp_path):
    pre = Preprocessing(mode="meanstd", mean=(0.5,), std=(0.25,), pad_to=32)
    path = _checkpoint(
        tmp_path,
        "lenet5",
        preprocessing=pre,
        image_shape=(1, 28, 28),
        classes=list("abcdefghij"),
        model_args={},
        dataset="mnist",
        digits=True,
        epoch=3,
    )
    model, meta = load_checkpoint(path)
    out = tmp_path / "lenet5.onnx"
    assert export_model(model, export_metadata(meta), "onnx", out) is None
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    recorded = json.loads(session.get_modelmeta().custom_metadata_map["cnnlab"])
    assert recorded["model"] == "lenet5" and recorded["cnnlab_version"] == __version__
    assert recorded["input_shape"] == [1, 32, 32] and recorded["image_shape"] == [1, 28, 28]
    assert recorded["classes"] == list("abcdefghij") and recorded["num_classes"] == 10
    assert Preprocessing.from_dict(recorded["preprocessing"]) == pre
    assert any("(x[c] - mean[c]) / std[c]" in s for s in recorded["preprocessing_steps"])
    assert any("pad to at least 32x32" in s for s in recorded["preprocessing_steps"])
    assert (recorded["dataset"], recorded["digits"], recorded["epoch"]) == ("mnist", True, 3)


class _Cancels(nn.Module):
    """(x + 1e4) - 1e4: x exactly in float64, x rounded to 2^-10 (1e-3) in float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x + 1e4) - 1e4


def test_beyond_the_tolerance_float32_rounding_passes_and_a_wrong_graph_does_not():
    x = torch.rand(4, 3, generator=torch.Generator().manual_seed(0))
    rounded = check_outputs(_Cancels(), x, x.clone(), "rt", 1e-5)  # the file: exact logits
    assert rounded.max_abs_difference > rounded.allowed and rounded.passed
    assert "(float32 rounding: the limit is 4x PyTorch's)" in rounded.describe()
    wrong = check_outputs(_Cancels(), x, x + 0.01, "rt", 1e-5)
    assert not wrong.passed and "more than float32 rounding" in wrong.describe()


def test_a_failed_check_writes_nothing_and_keeps_an_earlier_file(tmp_path, monkeypatch):
    out = tmp_path / "lenet5.onnx"
    out.write_bytes(b"an earlier export")
    off = replace(exporter.FORMATS["onnx"], run=lambda path, x: run_onnx(path, x) + 1)
    monkeypatch.setitem(exporter.FORMATS, "onnx", off)
    model, meta = load_checkpoint(_checkpoint(tmp_path, "lenet5"))
    with pytest.raises(CheckFailed, match=r"max \|onnxruntime - PyTorch\| = 1 > "):
        export_model(
            model, export_metadata(meta), "onnx", out, check_batch=torch.rand(3, 1, 32, 32)
        )
    assert out.read_bytes() == b"an earlier export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lenet5.onnx", "lenet5.safetensors"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exports_lenet5_checked_on_real_mnist(mnist_env, tmp_path, capsys):
    ckpt = _checkpoint(
        tmp_path,
        "lenet5",
        image_shape=(1, 28, 28),
        classes=[str(i) for i in range(10)],
        dataset="mnist",
        data_source="mnist",
        digits=True,
    )
    for fmt, name in (("onnx", "lenet5.onnx"), ("torchscript", "lenet5.pt")):
        code, out, err = run(
            capsys, "export", str(ckpt), "--format", fmt, "--out", str(tmp_path / name)
        )
        assert code == 0, err
        assert "check passed on the mnist test set" in out and "256 images" in out, out
        assert (tmp_path / name).is_file()


def test_cli_failed_check_exits_1_with_the_figures(mnist_env, tmp_path, capsys, monkeypatch):
    off = replace(exporter.FORMATS["onnx"], run=lambda path, x: run_onnx(path, x) * 2)
    monkeypatch.setitem(exporter.FORMATS, "onnx", off)
    ckpt = _checkpoint(tmp_path, "lenet5", image_shape=(1, 28, 28), dataset="mnist")
    out = tmp_path / "lenet5.onnx"
    code, _, err = run(capsys, "export", str(ckpt), "--format", "onnx", "--out", str(out))
    assert code == 1 and "export check failed: max |onnxruntime - PyTorch|" in err, err
    assert "top-1 agrees on" in err and "nothing written" in err and not out.exists()


def _one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert err.startswith("cnnlab: error: ") and err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_cli_mistakes_exit_2_with_one_line(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "lenet5")  # trained on no recorded dataset
    onnx_out = str(tmp_path / "m.onnx")

    def export(*argv: str) -> tuple[int, str]:
        code, _, err = run(capsys, "export", *argv)
        return code, err

    _one_line_error(*export(str(ckpt), "--format", "onnx", "--out", onnx_out), "--no-check")
    _one_line_error(*export(str(tmp_path), "--format", "onnx", "--out", onnx_out), "checkpoint")
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint at all")
    _one_line_error(*export(str(text), "--format", "onnx", "--out", onnx_out), "notes.txt")
    _one_line_error(*export(str(ckpt), "--format", "onnx", "--out", str(tmp_path)), "directory")
    under_file = str(text / "m.onnx")
    _one_line_error(*export(str(ckpt), "--format", "onnx", "--out", under_file), "cannot write")
    _one_line_error(
        *export(str(ckpt), "--format", "onnx", "--out", onnx_out, "--opset", "99"), "opset 99"
    )
    _one_line_error(
        *export(str(ckpt), "--format", "torchscript", "--out", onnx_out, "--opset", "17"),
        "onnx only",
    )
    _one_line_error(
        *export(str(ckpt), "--format", "onnx", "--out", onnx_out, "--no-check", "--data", "mnist"),
        "--no-check",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = ("--format", "onnx", "--out", onnx_out, "--data", "mnist", "--data-dir", str(empty))
    _one_line_error(*export(str(ckpt), *missing), "mnist", "--no-check")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(ckpt), "--format", "tflite", "--out", onnx_out])
    assert exit_info.value.code == 2 and "invalid choice: 'tflite'" in capsys.readouterr().err


def test_cli_no_check_needs_no_data(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path, "lenet5")
    out = tmp_path / "lenet5.onnx"
    code, printed, _ = run(
        capsys, "export", str(ckpt), "--format", "onnx", "--out", str(out), "--no-check"
    )
    assert code == 0 and "not checked (--no-check)" in printed and out.is_file()
