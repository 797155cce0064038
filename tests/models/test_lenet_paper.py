"""LeNet-5 against the numbers LeCun et al. 1998 publish (Section II-B)."""

from __future__ import annotations

import pytest
import torch

from cnnlab import create_model
from cnnlab.analysis.summary import summarize
from cnnlab.errors import CnnlabError
from cnnlab.registry import get_spec

# layer: (trainable parameters, connections), as printed in Section II-B
PAPER = {
    "c1": (156, 122_304),
    "s2": (12, 5_880),
    "c3": (1_516, 151_600),
    "s4": (32, 2_000),
    "c5": (48_120, 48_120),
    "f6": (10_164, 10_164),
    "output": (0, 840),  # 10 RBF units of 84 inputs each, fixed prototypes
}


def test_lenet5_1998_layers_match_the_paper():
    summary = summarize(create_model("lenet5_1998"))
    got = {r.name: (r.params, r.connections) for r in summary.layers}
    assert got == PAPER
    assert summary.total["params"] == 60_000
    assert summary.total["connections"] == 340_908


def test_lenet5_1998_shapes_follow_figure_2():
    shapes = {r.name: r.output_shape for r in summarize(create_model("lenet5_1998")).layers}
    assert shapes == {
        "c1": (6, 28, 28),
        "s2": (6, 14, 14),
        "c3": (16, 10, 10),
        "s4": (16, 5, 5),
        "c5": (120, 1, 1),
        "f6": (84,),
        "output": (10,),
    }


def test_lecture_lenet5_has_61706_parameters():
    assert sum(p.numel() for p in create_model("lenet5").parameters()) == 61_706


def test_lenet5_1998_uses_the_papers_activation_and_input_range():
    model = create_model("lenet5_1998")
    f6_out = model.forward_features(torch.randn(4, 1, 32, 32) * 10)
    assert f6_out.abs().max() <= 1.7159 + 1e-4
    pre = get_spec("lenet5_1998").recipe.preprocessing
    x = pre(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2))
    torch.testing.assert_close(x[0, 0, 15, 15:17], torch.tensor([-0.1, 1.175]))
    assert x.shape == (1, 1, 32, 32) and x[0, 0, 0, 0] == pytest.approx(-0.1)


def test_unknown_config_value_is_a_one_line_error():
    with pytest.raises(CnnlabError, match="activation='swish'"):
        create_model("lenet5", activation="swish")
