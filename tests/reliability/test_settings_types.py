"""Training settings of the wrong type are one-line errors wherever they come from (a caller, a
--config file, a run's config.json), never a TypeError deep in training (issue 9)."""

from __future__ import annotations

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.registry import get_spec
from cnnlab.training.config import TrainConfig

RECIPE = get_spec("lenet5_modern").recipe


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"epochs": "3"}, "epochs='3': expected a whole number"),
        ({"epochs": True}, "epochs=True: expected a whole number"),
        ({"lr": float("inf")}, "lr=inf: expected a finite number"),
        ({"grad_clip": "big"}, "grad_clip='big': expected a finite number or null"),
        ({"milestones": (1, "2")}, "milestones=(1, '2'): expected a list, each a whole number"),
        ({"model_args": ["norm"]}, "model_args=['norm']: expected a JSON object"),
    ],
)
def test_a_wrong_type_from_a_caller_is_a_one_line_error(setting, message):
    with pytest.raises(CnnlabError) as caught:
        TrainConfig.from_recipe("lenet5_modern", RECIPE, **setting)
    assert str(caught.value) == message


def test_numbers_may_be_written_as_json_writes_them():
    cfg = TrainConfig.from_recipe("lenet5_modern", RECIPE, lr=1, milestones=[2, 4], augment="flip")
    assert cfg.lr == 1 and cfg.milestones == [2, 4] and cfg.augment == ("flip",)


def test_a_runs_config_json_reads_back_as_it_was_written():
    cfg = TrainConfig.from_recipe("lenet5_modern", RECIPE, milestones=(2, 4), grad_clip=1.5)
    assert TrainConfig.from_json(cfg.to_json()) == cfg


def test_a_config_json_names_itself_in_its_errors():
    with pytest.raises(CnnlabError, match=r"^runs/x/config.json: unknown settings \['lrr'\] "):
        TrainConfig.from_json('{"model": "lenet5_modern", "lrr": 0.1}', "runs/x/config.json")
    with pytest.raises(CnnlabError, match=r"^runs/x/config.json: no 'model' setting"):
        TrainConfig.from_json('{"lr": 0.1}', "runs/x/config.json")
