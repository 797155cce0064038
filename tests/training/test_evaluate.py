"""Evaluation: per-class error from the confusion matrix, AlexNet's ten-crop testing
(Krizhevsky et al. 2012, Section 4.1), and `cnnlab eval`'s output."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab.checkpoint import CheckpointMeta, save_checkpoint
from cnnlab.cli.main import main
from cnnlab.data.dataset import ImageDataset
from cnnlab.data.loader import BatchLoader
from cnnlab.data.preprocessing import Preprocessing
from cnnlab.errors import CnnlabError
from cnnlab.registry import create_model, get_spec
from cnnlab.training.evaluate import TenCrop, evaluate, ten_crop_probabilities, ten_crops
from cnnlab.training.metrics import ClassificationMeter


def expected_crops(x: torch.Tensor, h: int, w: int) -> list[torch.Tensor]:
    """The paper's five patches by explicit slicing, then their reflections."""
    height, width = x.shape[-2:]
    top, left = (height - h) // 2, (width - w) // 2
    five = [
        x[..., :h, :w],
        x[..., :h, width - w :],
        x[..., height - h :, :w],
        x[..., height - h :, width - w :],
        x[..., top : top + h, left : left + w],
    ]
    return five + [torch.flip(c, dims=(3,)) for c in five]


def test_ten_crops_are_the_corners_the_centre_and_their_reflections():
    x = torch.arange(2 * 3 * 7 * 8, dtype=torch.float32).view(2, 3, 7, 8)
    crops = ten_crops(x, (4, 5))
    assert len(crops) == 10 and all(c.shape == (2, 3, 4, 5) for c in crops)
    for got, want in zip(crops, expected_crops(x, 4, 5)):
        assert torch.equal(got, want)
    assert torch.equal(crops[4], x[..., 1:5, 1:6])  # centre: floor((7-4)/2), floor((8-5)/2)
    assert torch.equal(crops[5][..., 0], x[..., :4, 4])  # a reflection's first column
    with pytest.raises(CnnlabError, match=r"^crop 8x8: larger than the 7x8 \(padded\) input$"):
        ten_crops(x, (8, 8))


def test_ten_crop_of_an_identity_model_averages_the_softmax_of_the_crops():
    torch.manual_seed(0)
    x = torch.randn(3, 2, 5, 6)
    fill = torch.tensor([-1.5, 2.0]).view(1, 2, 1, 1)
    padded = torch.cat([torch.full((3, 1, 7, 8), -1.5), torch.full((3, 1, 7, 8), 2.0)], dim=1)
    padded[:, :, 1:-1, 1:-1] = x
    identity = nn.Flatten()  # logits = the crop's pixels: 2 x 4 x 4 = 32 "classes"
    want = torch.stack([c.flatten(1).softmax(1) for c in expected_crops(padded, 4, 4)]).mean(0)
    got = ten_crop_probabilities(identity, x, TenCrop((4, 4), pad=1), fill)
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(got.sum(dim=1), torch.ones(3))


def test_evaluate_with_ten_crop_pads_with_what_pixel_0_becomes():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    labels = torch.randint(0, 4, (10,))
    dataset = ImageDataset(images, labels, ("a", "b", "c", "d"), "toy")
    prep = Preprocessing(mode="meanstd", mean=(0.5,), std=(0.25,))  # pixel 0 -> -2
    loader = BatchLoader(dataset, 4, prep)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 4)).train()  # the 2x2 crop -> 4 logits
    meter = evaluate(model, loader, 4, nn.CrossEntropyLoss(), TenCrop((2, 2), pad=1))
    assert model.training  # the mode is restored
    x = nn.functional.pad(prep(images), (1, 1, 1, 1), value=-2.0)
    with torch.no_grad():
        p = torch.stack([model(c).softmax(1) for c in expected_crops(x, 2, 2)]).mean(0)
    confusion = torch.zeros(4, 4, dtype=torch.int64)
    for t, q in zip(labels, p.argmax(1)):
        confusion[t, q] += 1
    assert torch.equal(meter.confusion, confusion)
    assert meter.loss == pytest.approx(-p[torch.arange(10), labels].log().mean().item(), rel=1e-5)
    assert meter.classes == ["a", "b", "c", "d"]


def test_per_class_error_is_the_confusion_matrix_computation():
    torch.manual_seed(1)
    meter = ClassificationMeter(5, classes=["a", "b", "c", "d", "e"])
    target = torch.randint(0, 4, (200,))  # class e has no examples
    logits = torch.randn(200, 5) + 2.0 * nn.functional.one_hot(target, 5)
    for i in range(0, 200, 64):
        meter.update(logits[i : i + 64], target[i : i + 64])
    pred = logits.argmax(1)
    want = [(pred[target == c] != c).float().mean().item() for c in range(4)]
    assert meter.per_class_error[:4] == pytest.approx(want)
    assert meter.per_class_error[4] is None
    c = meter.confusion
    assert meter.per_class_error[:4] == pytest.approx((1 - c.diag() / c.sum(1))[:4].tolist())
    worst = max(range(4), key=lambda k: want[k])
    assert meter.worst_classes(2).startswith(f"{'abcd'[worst]} {100 * want[worst]:.2f}%, ")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """An untrained lenet5_modern saved as if trained on MNIST."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("eval") / "model.safetensors"
    meta = CheckpointMeta(
        model="lenet5_modern",
        num_classes=10,
        in_chans=1,
        preprocessing=get_spec("lenet5_modern").recipe.preprocessing,
        classes=[str(i) for i in range(10)],
        image_shape=(1, 28, 28),
        dataset="mnist",
        digits=True,
    )
    save_checkpoint(path, create_model("lenet5_modern").eval(), meta)
    return path


def eval_cli(capsys, checkpoint, data_dir, *flags: str) -> tuple[int, str, str]:
    argv = ["eval", str(checkpoint), "--data-dir", str(data_dir), "--limit", "300", *flags]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_json_has_errors_per_class_and_the_confusion_matrix(
    checkpoint, mnist_data_dir, capsys
):
    code, out, _ = eval_cli(capsys, checkpoint, mnist_data_dir, "--format", "json")
    result = json.loads(out)
    assert code == 0 and result["examples"] == 300 and result["ten_crop"] is None
    assert set(result) == {
        "checkpoint",
        "model",
        "data",
        "data_source",
        "split",
        "examples",
        "top1_error",
        "top5_error",
        "ten_crop",
        "per_class_error",
        "confusion",
    }
    confusion = torch.tensor(result["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 300
    assert result["top1_error"] == pytest.approx(1 - confusion.trace().item() / 300)
    assert list(result["per_class_error"]) == [str(i) for i in range(10)]
    rows = confusion.sum(1)
    want = [1 - confusion[i, i].item() / rows[i].item() for i in range(10)]
    assert list(result["per_class_error"].values()) == pytest.approx(want)


def test_eval_ten_crop_pads_32x32_inputs_by_4(checkpoint, mnist_data_dir, capsys):
    code, out, err = eval_cli(capsys, checkpoint, mnist_data_dir, "--ten-crop", "--format", "json")
    result = json.loads(out)
    assert code == 0 and result["ten_crop"] == {"size": [32, 32], "pad": 4}
    assert "digits are not mirror-symmetric" in err  # a checkpoint trained on digits
    assert torch.tensor(result["confusion"]).sum() == 300
    code, out, _ = eval_cli(capsys, checkpoint, mnist_data_dir, "--ten-crop", "--crop-pad", "2")
    lines = out.splitlines()
    assert code == 0 and "300 examples, ten 32x32 crops" in lines[0]
    assert lines[1].split() == ["class", "examples", "error"] and len(lines) == 13


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--ten-crop", "--crop-size", "28"), "input size 28x28 does not fit: this model expects"),
        (("--ten-crop", "--crop-pad", "-1"), "ten-crop size (32, 32), pad -1: expected"),
        (("--crop-pad", "2"), "--crop-size and --crop-pad: expected together with --ten-crop"),
    ],
)
def test_eval_ten_crop_mistakes_are_one_line_errors(
    checkpoint, mnist_data_dir, capsys, flags, message
):
    code, _, err = eval_cli(capsys, checkpoint, mnist_data_dir, *flags)
    assert code == 2 and message in err and err.strip().count("\n") == 0
