"""Losses, optimisers and learning-rate schedules."""

from __future__ import annotations

import math

import pytest
import torch

from cnnlab.errors import CnnlabError
from cnnlab.training.losses import RBFMAPLoss, SoftmaxMSELoss, create_loss
from cnnlab.training.metrics import ClassificationMeter
from cnnlab.training.optimizers import create_optimizer
from cnnlab.training.schedules import ScheduleFactor, create_schedule


def test_rbf_map_loss_is_equation_9():
    distances = torch.tensor([[0.5, 3.0, 9.0], [4.0, 1.0, 2.0]])
    target = torch.tensor([0, 2])
    j = 1.0
    expected = torch.stack(
        [
            distances[p, target[p]] + torch.log(math.exp(-j) + torch.exp(-distances[p]).sum())
            for p in range(2)
        ]
    ).mean()
    torch.testing.assert_close(RBFMAPLoss(j)(-distances, target), expected)


def test_softmax_mse_is_zero_for_a_confident_correct_answer():
    logits = torch.tensor([[50.0, 0.0, 0.0]])
    assert SoftmaxMSELoss()(logits, torch.tensor([0])).item() == pytest.approx(0.0, abs=1e-9)
    assert SoftmaxMSELoss()(logits, torch.tensor([1])).item() == pytest.approx(2 / 3)


def test_unknown_names_are_one_line_errors():
    with pytest.raises(CnnlabError, match="unknown loss 'hinge'"):
        create_loss("hinge")
    with pytest.raises(CnnlabError, match="unknown optimizer 'lbfgs'"):
        create_optimizer("lbfgs", [torch.nn.Parameter(torch.zeros(1))], 0.1)
    with pytest.raises(CnnlabError, match="unknown schedule"):
        ScheduleFactor("linear", 10, 100)


def test_lenet1998_schedule_follows_the_papers_passes():
    f = ScheduleFactor("lenet1998", epochs=20, steps_per_epoch=10)
    per_pass = [f(10 * p) for p in range(20)]
    # 0.0005 for passes 1-2, 0.0002 for 3-5, 0.0001 for 6-8, 0.00005 for 9-12, 0.00001 after
    paper = [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    assert per_pass == pytest.approx([r / 5e-4 for r in paper])


def test_step_multistep_cosine_and_onecycle_shapes():
    step = ScheduleFactor("step", 10, 5, gamma=0.5, step_size=3)
    assert [step(5 * e) for e in (0, 2, 3, 6)] == [1, 1, 0.5, 0.25]
    multi = ScheduleFactor("multistep", 10, 5, gamma=0.1, milestones=(4, 8))
    assert [multi(5 * e) for e in (3, 4, 8)] == pytest.approx([1, 0.1, 0.01])
    cosine = ScheduleFactor("cosine", 10, 5)
    assert cosine(0) == 1 and cosine(25) == pytest.approx(0.5) and cosine(50) == pytest.approx(0)
    one = ScheduleFactor("onecycle", 10, 10)
    values = [one(s) for s in range(100)]
    assert values[0] < 0.05 and max(values) == pytest.approx(1, abs=0.02) and values[-1] < 0.01


def test_scheduler_state_resumes_the_same_rate():
    def make():
        opt = create_optimizer("sgd", [torch.nn.Parameter(torch.zeros(1))], 0.1)
        return opt, create_schedule(opt, ScheduleFactor("cosine", 4, 10))

    opt, sched = make()
    for _ in range(17):
        opt.step()
        sched.step()
    opt2, sched2 = make()
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(sched.state_dict())
    for _ in range(3):
        opt.step(), sched.step(), opt2.step(), sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] < 0.1


def test_meter_counts_top1_top5_and_confusion():
    meter = ClassificationMeter(6)
    logits = torch.tensor([[9.0, 8, 7, 6, 5, 4], [0, 1, 2, 3, 4, 5]])
    meter.update(logits, torch.tensor([0, 0]), loss=1.0)
    assert meter.top1_error == 0.5 and meter.top5_error == 0.5
    assert meter.confusion[0, 5] == 1 and meter.loss == 1.0


def test_a_restored_schedule_keeps_the_new_length():
    # resuming with more epochs: the saved scheduler state must not bring the old length back
    params = [torch.nn.Parameter(torch.zeros(1))]
    short = create_schedule(torch.optim.SGD(params, lr=1.0), ScheduleFactor("cosine", 1, 10))
    for _ in range(10):
        short.step()
    longer = create_schedule(torch.optim.SGD(params, lr=1.0), ScheduleFactor("cosine", 2, 10))
    longer.load_state_dict(short.state_dict())
    longer.step()
    assert longer.last_epoch == 11
    assert longer.get_last_lr()[0] == pytest.approx(0.5 * (1 + math.cos(math.pi * 11 / 20)))
