"""Loss functions by name: cross-entropy (optionally with label smoothing), MSE, and
LeNet-5's RBF loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError


class RBFMAPLoss(nn.Module):
    """LeCun et al. 1998, equation (9), for logits that are negated RBF distances -y_i.

    E = y_D + log(exp(-j) + sum_i exp(-y_i)): pulls the correct class's
    distance down and pushes the others up, with a constant "rubbish class" of
    penalty j so that distances already large get no further push. The paper
    leaves j unspecified; 1.0 here.
    """

    def __init__(self, j: float = 1.0) -> None:
        super().__init__()
        self.j = j

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        rubbish = logits.new_full((logits.shape[0], 1), -self.j)
        log_z = torch.logsumexp(torch.cat([logits, rubbish], dim=1), dim=1)
        return (log_z - logits.gather(1, target[:, None]).squeeze(1)).mean()


class SoftmaxMSELoss(nn.Module):
    """Mean squared error between the softmax probabilities and the one-hot target."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        one_hot = F.one_hot(target, logits.shape[1]).to(logits.dtype)
        return F.mse_loss(logits.softmax(dim=1), one_hot)


LOSSES = {"cross_entropy": nn.CrossEntropyLoss, "mse": SoftmaxMSELoss, "rbf_map": RBFMAPLoss}


def check_label_smoothing(loss: str, eps: float) -> None:
    """Label smoothing (Szegedy et al. 2016, "Rethinking the Inception architecture",
    Section 7) trains on q'(k) = (1 - eps) [k = y] + eps / K instead of the one-hot
    target: it is defined for the cross-entropy only. RBF-MAP has no target distribution
    to smooth (equation 9 is a margin between distances), and for the MSE a smoothed
    target would be another loss than the one asked for, so both refuse it."""
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0.0 <= eps < 1.0:
        raise CnnlabError(f"--label-smoothing {eps!r}: expected a number in [0, 1)")
    if eps > 0 and loss != "cross_entropy":
        raise CnnlabError(
            f"--label-smoothing {eps} with --loss {loss}: label smoothing applies to "
            "cross_entropy only"
        )


def create_loss(name: str, label_smoothing: float = 0.0) -> nn.Module:
    """Loss `name`; `label_smoothing` eps is for cross_entropy (check_label_smoothing)."""
    if name not in LOSSES:
        raise CnnlabError(f"unknown loss {name!r}: expected one of {', '.join(LOSSES)}")
    check_label_smoothing(name, label_smoothing)
    if name == "cross_entropy":
        # PyTorch mixes the one-hot target with the uniform u(k) = 1/K exactly as Section 7
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    return LOSSES[name]()
