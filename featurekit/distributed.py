"""Data-parallel training over several processes, on ``torch.distributed``.

One process per device (GPU, or a share of the CPU cores) trains a replica of
the model on its slice of every global batch; after each backward pass the
gradients are averaged over the processes, so every replica takes the same
step. ``batch_size`` stays the *global* batch: the same run on one process
and on N takes the same steps on the same samples (each global batch is cut
into N fixed, equal slices, in rank order).

Launch with ``torchrun`` (gloo on CPU, NCCL on GPU)::

    torchrun --nproc-per-node 4 -m featurekit fit simclr images/ -o model.pt
    featurekit fit simclr images/ -o model.pt --nproc 4      # the same, on one machine

or from your own script, started by ``torchrun``::

    import featurekit
    from featurekit import distributed

    distributed.init()                  # reads RANK, WORLD_SIZE, ... from torchrun
    est = featurekit.create("simclr", random_state=0).fit(X)
    if distributed.is_main():
        est.save("model.pt")

What the trainer does under a process group (``featurekit.training``):

- every rank starts from rank 0's seed and weights (broadcast);
- gradients of each optimizer's parameters are averaged in one flat
  all-reduce per step, which also carries the loss, so a non-finite loss on
  any rank stops every rank at the same step;
- ``ctx.all_gather`` concatenates a tensor over the ranks, and its backward
  pass hands each rank the gradient summed over every rank's use of its
  slice: SimCLR's cross-rank negatives and MoCo's queue keys come out as in
  one process with the global batch;
- ``init(sync_batchnorm=True)`` makes batch norm use global-batch statistics
  (torch's ``SyncBatchNorm`` on CUDA; :class:`GlobalBatchNorm` on other
  devices, where torch's has no kernel);
- batch-norm running statistics (and other float buffers) are averaged over
  the ranks at the end of every epoch, so every rank ends with the same model;
- the progress bar, checkpoints and plugin epoch hooks run on rank 0 only;
  ``history_`` holds the mean over ranks.

Augmentations are drawn from a generator per rank (seeded from the run's seed,
the epoch and the rank), so they are as random as on one process but not the
same draws. Methods declare ``supports_distributed = True`` once tested this
way (Supervised, SimCLR, MoCo v2); the trainer refuses the others, naming them.
"""

from __future__ import annotations

import datetime
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn
from torch.autograd import Function

from featurekit.exceptions import ParameterError, TrainingError

__all__ = ["init", "launch", "shutdown", "is_main", "rank", "world_size", "World", "current",
           "GlobalBatchNorm", "convert_sync_batchnorm", "revert_sync_batchnorm"]

_SYNC_BATCHNORM = False


def init(backend: str = "auto", *, sync_batchnorm: bool = False,
         timeout_s: float = 1800.0) -> World:
    """Join the process group that ``torchrun`` (or ``featurekit fit --nproc``) set up.

    Parameters
    ----------
    backend : {"auto", "gloo", "nccl"}, default="auto"
        "auto" is NCCL when CUDA is available, gloo otherwise.
    sync_batchnorm : bool, default=False
        Normalize with the global batch's statistics during training.
    timeout_s : float, default=1800
        How long a collective waits for the other ranks before failing.

    Returns
    -------
    World
        The rank and the number of processes.
    """
    global _SYNC_BATCHNORM
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
               if k not in os.environ]
    if missing and not dist.is_initialized():
        raise ParameterError(f"featurekit.distributed.init() needs the environment torchrun "
                             f"sets; {', '.join(missing)} missing. Launch with `torchrun "
                             "--nproc-per-node N your_script.py` (or `featurekit fit ... --nproc "
                             "N`)")
    if backend == "auto":
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend not in ("gloo", "nccl"):
        raise ParameterError(f"backend must be 'auto', 'gloo' or 'nccl'; got {backend!r}")
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    _SYNC_BATCHNORM = bool(sync_batchnorm)
    return World(dist.get_rank(), dist.get_world_size(), _SYNC_BATCHNORM)


def launch(fn: Callable[..., Any], nproc: int, args: tuple = (), *, backend: str = "auto",
           sync_batchnorm: bool = False, threads: int | None = None) -> None:
    """Run ``fn(*args)`` in ``nproc`` new local processes joined in one process group.

    What ``torchrun --standalone --nproc-per-node nproc`` does, from Python (and
    what ``featurekit fit --nproc`` uses): each process gets the environment
    torchrun would set, calls :func:`init`, runs ``fn`` and leaves the group.
    ``fn`` and ``args`` must be picklable (processes are spawned, not forked).
    On CPU each process uses ``threads`` intra-op threads (default: the cores
    divided by ``nproc``), so the processes do not oversubscribe the machine.
    An exception in any process is raised here once all have stopped.
    """
    if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
        raise ParameterError(f"nproc must be a positive int; got {nproc!r}")
    import torch.multiprocessing as mp

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    mp.start_processes(_worker, args=(fn, args, nproc, port, backend, sync_batchnorm, threads),
                       nprocs=nproc, join=True, start_method="spawn")


def _worker(local_rank: int, fn: Callable[..., Any], args: tuple, nproc: int, port: int,
            backend: str, sync_batchnorm: bool, threads: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(local_rank),
                      WORLD_SIZE=str(nproc), LOCAL_RANK=str(local_rank),
                      LOCAL_WORLD_SIZE=str(nproc))
    torch.set_num_threads(threads)
    init(backend, sync_batchnorm=sync_batchnorm)
    try:
        fn(*args)
    finally:
        shutdown()


def shutdown() -> None:
    """Leave the process group (a no-op without one)."""
    global _SYNC_BATCHNORM
    if dist.is_initialized():
        dist.destroy_process_group()
    _SYNC_BATCHNORM = False


def rank() -> int:
    """This process's rank; 0 without a process group."""
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    """The number of processes; 1 without a process group."""
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    """Whether this process is rank 0 (the one that saves, logs and prints)."""
    return rank() == 0


def current() -> World | None:
    """The process group as the trainer sees it, or None when training on one process."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return None
    return World(dist.get_rank(), dist.get_world_size(), _SYNC_BATCHNORM)


@dataclass(frozen=True)
class World:
    """The collectives the trainer needs, for ``size`` processes."""

    rank: int
    size: int
    sync_batchnorm: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast_seed(self, seed: int) -> int:
        """Rank 0's seed, on every rank (``random_state=None`` draws one per process)."""
        box = [seed]
        dist.broadcast_object_list(box, src=0)
        return int(box[0])

    def broadcast_module(self, module: nn.Module) -> None:
        """Copy rank 0's parameters and buffers into every rank's ``module``."""
        with torch.no_grad():
            for t in [*module.parameters(), *module.buffers()]:
                dist.broadcast(t.data, src=0)

    def sync_buffers(self, module: nn.Module) -> None:
        """Average float buffers (batch-norm statistics) over the ranks; copy rank 0's
        others (counters), so that every rank holds the same model."""
        with torch.no_grad():
            for b in module.buffers():
                if b.is_floating_point():
                    dist.all_reduce(b.data)
                    b.data.div_(self.size)
                else:
                    dist.broadcast(b.data, src=0)

    def sync(self, params: list[torch.Tensor], loss: torch.Tensor) -> float:
        """Average the gradients of ``params`` over the ranks in one flat all-reduce;
        return the sum of every rank's ``loss`` (non-finite if any rank's is)."""
        grads = [p.grad for p in params if p.grad is not None]
        flat = torch.cat([g.reshape(-1).float() for g in grads]
                         + [loss.detach().float().reshape(1).to(loss.device)])
        dist.all_reduce(flat)
        flat[:-1].div_(self.size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()
        return float(flat[-1])

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the ranks (every rank must pass the same keys)."""
        keys = sorted(values)
        gathered: list[list[str]] = [[] for _ in range(self.size)]
        dist.all_gather_object(gathered, keys)
        if any(g != keys for g in gathered):
            raise TrainingError(f"the ranks logged different values ({gathered}); every rank "
                                "must call ctx.log with the same names")
        t = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        dist.all_reduce(t)
        return {k: float(v) / self.size for k, v in zip(keys, t.tolist())}

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` concatenated over the ranks along dim 0 (equal sizes), with gradients."""
        return _AllGather.apply(tensor)


class _AllGather(Function):
    """All-gather whose backward sums each slice's gradient over the ranks.

    Every rank computes its loss from the gathered tensor, so the gradient of
    rank r's slice is the sum of all ranks' gradients for it; the trainer's
    gradient averaging then gives the one-process gradient.
    """

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D401
        tensor = tensor.contiguous()
        size = dist.get_world_size()
        out = torch.empty((size * tensor.shape[0], *tensor.shape[1:]), dtype=tensor.dtype,
                          device=tensor.device)
        dist.all_gather(list(out.chunk(size)), tensor)
        ctx.rows = tensor.shape[0]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        if dist.get_backend() == "nccl":
            out = torch.empty((ctx.rows, *grad.shape[1:]), dtype=grad.dtype, device=grad.device)
            dist.reduce_scatter_tensor(out, grad)
            return out
        dist.all_reduce(grad)  # gloo has no reduce-scatter: reduce all, keep our slice
        r = dist.get_rank()
        return grad[r * ctx.rows:(r + 1) * ctx.rows]


class _AllReduceSum(Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm over the global batch of all ranks, on any device and backend.

    A stand-in for ``torch.nn.SyncBatchNorm`` where that has no kernel (CPU,
    gloo): the per-channel sums and squared sums are all-reduced (with
    gradients), so training normalizes as one process would with the whole
    global batch. In eval mode, or on one process, it is plain batch norm.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input (got {x.dim()}-D)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        xf = x.float()
        count = torch.tensor([x.numel() / x.shape[1]], device=x.device)
        stats = _AllReduceSum.apply(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]))
        c = x.shape[1]
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else \
                    1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                unbiased = var.detach() * n / (n - 1).clamp_min(1)
                self.running_var.mul_(1 - m).add_(unbiased, alpha=m)
        shape = (1, c) + (1,) * (x.dim() - 2)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _swap(module: nn.Module, make) -> nn.Module:
    new = make(module)
    if new is not module:
        # Same Parameter objects: the optimizers built on the old module keep working.
        if module.affine:
            new.weight, new.bias = module.weight, module.bias
        if module.track_running_stats:
            new.running_mean, new.running_var = module.running_mean, module.running_var
            new.num_batches_tracked = module.num_batches_tracked
        new.training = module.training
        return new
    for name, child in module.named_children():
        module.add_module(name, _swap(child, make))
    return module


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every batch norm layer of ``module`` (in place) by a synchronized one."""
    cls = nn.SyncBatchNorm if device.type == "cuda" else GlobalBatchNorm

    def make(m: nn.Module) -> nn.Module:
        if not isinstance(m, _BATCH_NORMS):
            return m
        new = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
                  device=device)
        new._featurekit_original = type(m)
        return new

    return _swap(module, make)


def revert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Undo :func:`convert_sync_batchnorm` (in place), giving back the original classes."""

    def make(m: nn.Module) -> nn.Module:
        original = getattr(m, "_featurekit_original", None)
        if original is None:
            return m
        return original(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)

    return _swap(module, make)
