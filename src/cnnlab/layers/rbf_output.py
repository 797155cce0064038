"""LeNet-5's output layer of Euclidean radial basis function units.

LeCun et al. 1998, Section II-B, equation (7): y_i = sum_j (x_j - w_ij)^2, the
squared distance between F6's 84 states and a fixed prototype per class. The
prototypes are "stylized images of the corresponding character class drawn on
a 7x12 bitmap", +1 for black and -1 for white (Fig. 3), and are not trained.
`DIGIT_BITMAPS` redraws the ten digits of Fig. 3 (the paper gives them only as
a picture). For other class counts the prototypes are random +-1 codes, which
the paper describes as the alternative ("chosen at random").

The layer returns the negated distances as logits, so that softmax, top-k and
cross-entropy treat it like any classifier; the paper's loss is
`cnnlab.training.losses.RBFMAPLoss`.
"""

from __future__ import annotations

import torch
from torch import nn

# 12 rows of 7 pixels each; '#' is +1 (black ink), '.' is -1 (white).
DIGIT_BITMAPS: tuple[tuple[str, ...], ...] = (
    (
        "..###..",
        ".#...#.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#...#.",
        "..###..",
        ".......",
    ),
    (
        "...#...",
        "..##...",
        ".#.#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        "...#...",
        ".#####.",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "......#",
        "......#",
        ".....#.",
        "....#..",
        "...#...",
        "..#....",
        ".#.....",
        "#......",
        "#######",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "......#",
        "......#",
        "......#",
        "..####.",
        "......#",
        "......#",
        "......#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        "....##.",
        "...#.#.",
        "..#..#.",
        ".#...#.",
        "#....#.",
        "#....#.",
        "#######",
        ".....#.",
        ".....#.",
        ".....#.",
        ".....#.",
        ".......",
    ),
    (
        "#######",
        "#......",
        "#......",
        "#......",
        "######.",
        "......#",
        "......#",
        "......#",
        "......#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        "..####.",
        ".#.....",
        "#......",
        "#......",
        "######.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        "#######",
        "......#",
        ".....#.",
        ".....#.",
        "....#..",
        "....#..",
        "...#...",
        "...#...",
        "..#....",
        "..#....",
        "..#....",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#####.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".#####.",
        ".......",
    ),
    (
        ".#####.",
        "#.....#",
        "#.....#",
        "#.....#",
        "#.....#",
        ".######",
        "......#",
        "......#",
        "......#",
        ".....#.",
        ".####..",
        ".......",
    ),
)


def digit_prototypes() -> torch.Tensor:
    """The ten 7x12 digit bitmaps as a (10, 84) tensor of +-1, row by row."""
    rows = [
        [1.0 if c == "#" else -1.0 for line in bitmap for c in line] for bitmap in DIGIT_BITMAPS
    ]
    return torch.tensor(rows)


def random_prototypes(num_classes: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Random +-1 codes, one per class, from a fixed seed (the same on every machine)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (num_classes, dim), generator=g).float() * 2 - 1


class EuclideanRBF(nn.Module):
    """Logits -y_i = -||x - w_i||^2 against fixed prototypes w_i (a buffer, not trained)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        use_digits = in_features == 84 and num_classes == 10
        prototypes = (
            digit_prototypes() if use_digits else random_prototypes(num_classes, in_features)
        )
        self.register_buffer("prototypes", prototypes)
        self.in_features = in_features
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # ||x - w||^2 = ||x||^2 - 2 x.w + ||w||^2; (N, 84) @ (84, 10) -> (N, 10)
        w = self.prototypes
        sq = (x * x).sum(1, keepdim=True) - 2 * x @ w.t() + (w * w).sum(1)
        return -sq.clamp_min(0)

    def cost(self, out: torch.Tensor) -> tuple[int, int]:
        """(multiply-adds, connections) for one example: one per input per unit."""
        links = self.in_features * self.num_classes
        return links, links

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, num_classes={self.num_classes}, fixed prototypes"
