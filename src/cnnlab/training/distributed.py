"""Multi-process training on PyTorch's distributed engine (`torch.distributed`):
which process this is, the process group, and what the processes must agree on.

`torchrun --nproc-per-node N -m cnnlab train ...` starts N processes and tells each
its place through the environment: WORLD_SIZE, RANK, LOCAL_RANK (and MASTER_ADDR,
MASTER_PORT for the rendezvous). `current_world()` reads it; with WORLD_SIZE unset or
1 the run is a single process and nothing here is used. The group runs over gloo on
the CPU and over NCCL on CUDA, one GPU per process (cuda:LOCAL_RANK).

The model trains under DistributedDataParallel (`data_parallel`), which averages the
gradients of the processes in backward. Each process computes its loss as the mean over
its share of the global batch times share * N / batch (`share_weight`), so that the
average over processes is the mean over the whole global batch, whether or not the
shares are equal.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cnnlab.data.loader import batch_share
from cnnlab.errors import CnnlabError
from cnnlab.models.classifier import Classifier


@dataclass(frozen=True)
class World:
    """This process's place among `size` processes: `rank` overall, `local_rank` among the
    `local_size` on its machine (which GPU it uses)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that prints and writes files."""
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This process's contiguous share of a global batch of `n` examples."""
        return batch_share(n, self.rank, self.size)

    def share_weight(self, n: int) -> float:
        """share * size / n for a global batch of `n`: the factor on this process's mean
        loss that makes the average over processes the mean over the global batch."""
        share = self.share(n)
        return (share.stop - share.start) * self.size / n


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise CnnlabError(f"{name}={value!r} in the environment: expected an integer") from None


def current_world() -> World:
    """The process group already joined (by a caller), else what torchrun's environment
    (WORLD_SIZE, RANK, LOCAL_RANK) says, else a single process."""
    if dist.is_available() and dist.is_initialized():
        size, rank = dist.get_world_size(), dist.get_rank()
    else:
        size, rank = _env_int("WORLD_SIZE", 1), _env_int("RANK", 0)
    if not 0 <= rank < size:
        raise CnnlabError(f"RANK={rank} with WORLD_SIZE={size}: expected 0 <= RANK < WORLD_SIZE")
    return World(size, rank, _env_int("LOCAL_RANK", rank), _env_int("LOCAL_WORLD_SIZE", size))


def rank_device(world: World, device: torch.device) -> torch.device:
    """The device of this process: cuda:LOCAL_RANK on CUDA (made current), else `device`."""
    if device.type != "cuda":
        return device
    if world.local_rank >= torch.cuda.device_count():
        raise CnnlabError(
            f"LOCAL_RANK={world.local_rank}: this machine has {torch.cuda.device_count()} "
            "CUDA GPUs; expected one GPU per process (--nproc-per-node at most that many)"
        )
    device = torch.device("cuda", world.local_rank)
    torch.cuda.set_device(device)
    return device


def init_process_group(world: World, device: torch.device) -> bool:
    """Join the group of `world.size` processes (gloo on CPU, NCCL on CUDA) unless a caller
    already has; True when this call joined it (and its caller must `destroy_process_group`)."""
    if not world.distributed:
        return False
    if not dist.is_available():
        raise CnnlabError(f"WORLD_SIZE={world.size}: this PyTorch build has no torch.distributed")
    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=world.rank, world_size=world.size)
    return True


def destroy_process_group() -> None:
    dist.destroy_process_group()


def all_reduce_sum_(tensor: torch.Tensor) -> torch.Tensor:
    """Replace `tensor` by its sum over the processes of the group (in place)."""
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def average_running_statistics_(model: nn.Module, world: World) -> None:
    """Replace every normalisation layer's running mean and variance by their average over
    the processes. Each process's are a moving average of its shares' statistics; their
    average is the moving average of the global batches' means (equal shares), as one
    process would keep it, and every process then evaluates and saves the same model."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            for stat in (module.running_mean, module.running_var):
                if stat is not None:
                    all_reduce_sum_(stat).div_(world.size)


def rank_seed(seed: int, epoch: int, rank: int) -> int:
    """A seed for the global RNG (dropout) of process `rank` in `epoch`, from these alone:
    different in every process, the same after a resume with any number of processes."""
    digest = hashlib.blake2b(f"cnnlab-rank {seed} {epoch} {rank}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little") & (2**63 - 1)


class _ForwardWithAux(nn.Module):
    """`forward` is the classifier's `forward_with_aux`, so that DDP wraps that call."""

    def __init__(self, model: Classifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.model.forward_with_aux(x)


def data_parallel(model: Classifier, device: torch.device) -> DistributedDataParallel:
    """`model.forward_with_aux` under DistributedDataParallel: it returns (logits, aux
    logits) and its backward averages the gradients over the processes. On CUDA batch norm
    becomes SyncBatchNorm (statistics of the global batch); on the CPU, where PyTorch has
    no SyncBatchNorm, each process normalises by its own share's statistics."""
    if device.type == "cuda":  # in place: the classifier's batch-norm children are replaced
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    # each process keeps its own running statistics: average_running_statistics_ joins them
    return DistributedDataParallel(
        _ForwardWithAux(model), device_ids=ids, forward_sync_buffers=False
    )
