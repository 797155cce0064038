"""Top-k error, the confusion matrix and the per-class error, accumulated over batches
(and, in multi-process training, summed over the processes)."""

from __future__ import annotations

import torch

from cnnlab.training.distributed import all_reduce_sum_


class ClassificationMeter:
    """Accumulates loss, top-1 and top-5 errors and a confusion matrix."""

    def __init__(
        self,
        num_classes: int,
        device: torch.device | str = "cpu",
        classes: list[str] | None = None,
    ) -> None:
        self.num_classes = num_classes
        self.classes = (
            list(classes) if classes is not None else [str(i) for i in range(num_classes)]
        )
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
        self.loss_sum = torch.zeros((), dtype=torch.float64, device=device)  # summed per example
        self.top5_wrong = torch.zeros((), dtype=torch.int64, device=device)
        self.count = 0

    def update(
        self, logits: torch.Tensor, target: torch.Tensor, loss: torch.Tensor | float | None = None
    ) -> None:
        """Add a batch; `loss` is the batch's mean loss (kept on the device, no sync)."""
        logits, target = logits.detach(), target.detach()
        n = target.shape[0]
        pred = logits.argmax(dim=1)
        flat = target * self.num_classes + pred
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view_as(
            self.confusion
        )
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        self.top5_wrong += (~(top == target[:, None]).any(dim=1)).sum()
        if loss is not None:
            self.loss_sum += torch.as_tensor(loss).detach().to(self.loss_sum) * n
        self.count += n

    def all_reduce_(self) -> ClassificationMeter:
        """Sum the meters of every process of the group into each: the figures of all the
        examples the processes saw together. Every process must call it."""
        count = torch.tensor(self.count, dtype=torch.int64, device=self.confusion.device)
        for total in (self.confusion, self.loss_sum, self.top5_wrong, count):
            all_reduce_sum_(total)
        self.count = int(count.item())
        return self

    @property
    def top1_error(self) -> float:
        correct = self.confusion.diagonal().sum().item()
        return 1.0 - correct / max(1, self.count)

    @property
    def top5_error(self) -> float:
        return self.top5_wrong.item() / max(1, self.count)

    @property
    def loss(self) -> float:
        return self.loss_sum.item() / max(1, self.count)

    @property
    def per_class_error(self) -> list[float | None]:
        """Per true class: the fraction of its examples predicted as another class (one minus
        the confusion matrix's diagonal over its row sums); None for a class with none."""
        counts = self.confusion.sum(dim=1).tolist()
        correct = self.confusion.diagonal().tolist()
        return [None if n == 0 else 1.0 - c / n for c, n in zip(correct, counts)]

    def worst_classes(self, k: int = 10) -> str:
        """'8 3.10%, 9 2.81%, ...': the `k` classes of highest error, worst first."""
        errors = [(e, c) for e, c in zip(self.per_class_error, self.classes) if e is not None]
        worst = sorted(errors, key=lambda ec: -ec[0])[:k]
        return ", ".join(f"{c} {100 * e:.2f}%" for e, c in worst)
