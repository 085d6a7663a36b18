"""The training loop: the only place that steps optimizers.

It owns device placement, bf16 autocast, per-optimizer learning-rate
schedules, gradient clipping, the NaN/inf guard, progress, ``history_``,
checkpoints, epoch hooks and, under a process group, data parallelism
(:mod:`featurekit.distributed`). The method only computes losses and hands
them to ``ctx.optimize``.
"""

from __future__ import annotations

import math
import sys
import time
from collections import defaultdict
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from featurekit import distributed
from featurekit.checkpoint import Checkpointer
from featurekit.exceptions import ParameterError, TrainingError
from featurekit.method import OPTIMIZERS, SCHEDULES, Batch, OptimizerSpec


def schedule_factor(spec: OptimizerSpec, progress: float) -> float:
    """The learning-rate multiplier of ``spec.schedule`` at ``progress`` in [0, 1]."""
    if spec.schedule == "constant":
        return 1.0
    if spec.schedule == "constant_then_linear":
        start = 1.0 - spec.decay
        return 1.0 if progress < start else max(0.0, (1.0 - progress) / max(spec.decay, 1e-12))
    if progress < spec.warmup:
        return (progress + 1e-3) / spec.warmup
    rest = (progress - spec.warmup) / max(1.0 - spec.warmup, 1e-12)
    return 0.5 * (1.0 + math.cos(math.pi * min(rest, 1.0)))


def build_optimizer(spec: OptimizerSpec) -> torch.optim.Optimizer:
    """A torch optimizer for an already resolved :class:`OptimizerSpec`."""
    groups = list(spec.params)
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    for g in groups:
        g.setdefault("fixed_lr", False)
        g["base_lr"] = g.get("lr", spec.lr)
    if spec.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum,
                               weight_decay=spec.weight_decay)
    cls = torch.optim.AdamW if spec.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=spec.lr, betas=spec.betas, weight_decay=spec.weight_decay)


def resolve_optimizer_specs(specs: dict[str, OptimizerSpec], *, optimizer: Any, lr: Any,
                            weight_decay: Any, batch_size: int, owner: str) -> dict[str, dict]:
    """Apply the user's ``optimizer``/``lr``/``weight_decay`` (each "auto", a value,
    or a ``{optimizer_name: value}`` dict) and batch-size scaling, in place.

    Returns the resolved values per optimizer (the estimator's ``optimizer_params_``).
    """
    def pick(value: Any, name: str, default: Any) -> Any:
        if isinstance(value, dict):
            unknown = set(value) - set(specs)
            if unknown:
                raise ParameterError(f"{owner} has optimizers {sorted(specs)}; got settings for "
                                     f"unknown ones {sorted(unknown)}")
            return value.get(name, default)
        return default if value == "auto" else value

    resolved = {}
    for name, spec in specs.items():
        spec.optimizer = pick(optimizer, name, spec.optimizer)
        if spec.optimizer not in OPTIMIZERS:
            raise ParameterError(f"The 'optimizer' parameter of {owner} must be one of "
                                 f"{OPTIMIZERS} or 'auto'. Got {spec.optimizer!r} instead.")
        user_lr = pick(lr, name, None)
        if user_lr is not None:
            spec.lr = float(user_lr)
        elif spec.lr_batch_scaling:
            spec.lr = spec.lr * batch_size / 256
        spec.weight_decay = float(pick(weight_decay, name, spec.weight_decay))
        if spec.schedule not in SCHEDULES:
            raise ParameterError(f"optimizer {name!r} of {owner}: schedule must be one of "
                                 f"{SCHEDULES}; got {spec.schedule!r}")
        resolved[name] = {"optimizer": spec.optimizer, "lr": spec.lr,
                          "weight_decay": spec.weight_decay, "schedule": spec.schedule}
    return resolved


class Context:
    """What ``training_step`` may use: ``optimize``, ``all_gather``, ``log``, ``progress``."""

    def __init__(self, trainer: Trainer):
        self._trainer = trainer
        self.epoch = 0
        self.step = 0
        self.progress = 0.0
        self.rank = 0
        self.world_size = 1

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        """Backpropagate ``loss`` and step the optimizer called ``name``."""
        self._trainer.optimize(name, loss)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate ``tensor`` over all processes (the identity on one process).

        Gradients flow back to each process's own slice, summed over every
        process's use of it (see :mod:`featurekit.distributed`).
        """
        world = self._trainer.world
        return tensor if world is None else world.all_gather(tensor)

    def log(self, **values: float | torch.Tensor) -> None:
        """Record scalars; their per-epoch means go into ``history_``."""
        for k, v in values.items():
            self._trainer.epoch_logs[k].append(float(v))


class Trainer:
    """Runs ``method.training_step`` over epochs. Built and driven by ``FeatureExtractor.fit``."""

    def __init__(self, *, method: Any, modules: nn.ModuleDict,
                 optimizer_specs: dict[str, OptimizerSpec], preprocessor: Any,
                 views: list[Callable], device: torch.device, autocast_dtype: torch.dtype | None,
                 max_epochs: int, batch_size: int, seed: int, verbose: int,
                 gradient_clip: float | None, num_workers: int,
                 checkpointer: Checkpointer | None, evaluate: Callable[[], float] | None,
                 n_iter_no_change: int | None, on_epoch_end: Callable[[int, dict], None]):
        self.method, self.modules, self.specs = method, modules, optimizer_specs
        self.prep, self.views, self.device = preprocessor, views, device
        self.autocast_dtype = autocast_dtype
        self.max_epochs, self.batch_size, self.seed = max_epochs, batch_size, seed
        self.verbose, self.gradient_clip, self.num_workers = verbose, gradient_clip, num_workers
        self.checkpointer, self.evaluate = checkpointer, evaluate
        self.n_iter_no_change, self.on_epoch_end = n_iter_no_change, on_epoch_end
        self.optimizers = {name: build_optimizer(s) for name, s in optimizer_specs.items()}
        self.aug_generator = torch.Generator(device=device)
        self.aug_generator.manual_seed(seed + 1)
        self.ctx = Context(self)
        self.history: dict[str, list[float]] = defaultdict(list)
        self.epoch_logs: dict[str, list[float]] = defaultdict(list)
        self.start_epoch = 0
        self.world = distributed.current()
        if self.world is not None:
            self.ctx.rank, self.ctx.world_size = self.world.rank, self.world.size
            if not getattr(method, "supports_distributed", False):
                raise TrainingError(
                    f"{type(method).__name__} is not tested for training on several processes "
                    f"(this is rank {self.world.rank} of {self.world.size}); train it in one "
                    "process, or use a method that declares supports_distributed = True "
                    "(supervised, simclr, moco_v2)")

    # -- one update ----------------------------------------------------------
    def optimize(self, name: str, loss: torch.Tensor) -> None:
        if name not in self.optimizers:
            raise TrainingError(f"{type(self.method).__name__}.training_step asked to optimize "
                                f"{name!r}, but its optimizers are {sorted(self.optimizers)}")
        value = loss.detach().float()
        opt = self.optimizers[name]
        if self.world is None:
            self._check_finite(name, value.item())
        spec = self.specs[name]
        factor = schedule_factor(spec, self.ctx.progress)
        for g in opt.param_groups:
            g["lr"] = g["base_lr"] if g["fixed_lr"] else g["base_lr"] * factor
        opt.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, enabled=False):
            loss.backward()
        params = [p for g in opt.param_groups for p in g["params"]]
        if self.world is not None:
            # One all-reduce averages the gradients and tells every rank whether any
            # rank's loss went non-finite, so all of them stop at the same step.
            self._check_finite(name, self.world.sync(params, value))
        if self.gradient_clip is not None:
            nn.utils.clip_grad_norm_(params, self.gradient_clip)
        opt.step()
        key = "loss" if len(self.optimizers) == 1 else f"loss_{name}"
        self.epoch_logs[key].append(value.item())

    def _check_finite(self, name: str, value: float) -> None:
        if math.isfinite(value):
            return
        kept = (f"the last good checkpoint is kept at {self.checkpointer.path}"
                if self.checkpointer else "set checkpoint_dir= to keep the last good state")
        where = "" if self.world is None else f" (summed over {self.world.size} processes)"
        raise TrainingError(
            f"{type(self.method).__name__}: the {name!r} loss became {value}{where} at epoch "
            f"{self.ctx.epoch + 1}, step {self.ctx.step + 1}; training stopped ({kept}). "
            "Lower lr=, or set gradient_clip=")

    # -- state ---------------------------------------------------------------
    def state(self, epoch: int, finished: bool) -> dict:
        rng = {"torch": torch.get_rng_state(), "augment": self.aug_generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {"epoch": epoch, "finished": finished,
                "modules": self.modules.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "history": dict(self.history), "rng": rng,
                "extra": self.method.extra_state(self.modules)}

    def restore(self, state: dict) -> None:
        self.modules.load_state_dict(state["modules"])
        for k, o in self.optimizers.items():
            o.load_state_dict(state["optimizers"][k])
        self.history = defaultdict(list, {k: list(v) for k, v in state["history"].items()})
        torch.set_rng_state(state["rng"]["torch"])
        self.aug_generator.set_state(state["rng"]["augment"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self.method.load_extra_state(self.modules, state["extra"])
        self.start_epoch = int(state["epoch"])

    # -- the loop ------------------------------------------------------------
    def steps_per_epoch(self, n: int) -> int:
        # Drop the ragged last batch (a batch of 1 breaks batch norm) unless it is all there is.
        return max(1, n // self.batch_size)

    def run(self, source: Any, targets: torch.Tensor | None,
            metadata: dict[str, torch.Tensor]) -> dict[str, list[float]]:
        n = source.n
        steps = self.steps_per_epoch(n)
        batch = min(self.batch_size, n)
        total = steps * self.max_epochs
        world = self.world
        local = batch if world is None else self._local_batch(batch)
        main = world is None or world.main
        quiet = self.verbose == 0 or not sys.stderr.isatty() or not main
        from tqdm.auto import tqdm

        if world is not None:
            world.broadcast_module(self.modules)
            if world.sync_batchnorm:
                distributed.convert_sync_batchnorm(self.modules, self.device)
        bar = tqdm(total=total, initial=steps * self.start_epoch, disable=quiet, leave=False,
                   desc=type(self.method).__name__, unit="batch", file=sys.stderr)
        best, since_best = -np.inf, 0
        try:
            for epoch in range(self.start_epoch, self.max_epochs):
                self.ctx.epoch = epoch
                self.modules.train()
                started = time.perf_counter()
                order = np.random.default_rng([self.seed, epoch]).permutation(n)[:steps * batch]
                if world is not None:
                    # A fixed slice of every global batch per rank, in rank order.
                    order = order.reshape(steps, world.size, local)[:, world.rank].reshape(-1)
                    self.aug_generator.manual_seed(
                        int(np.random.default_rng([self.seed, epoch, world.rank, 1]
                                                  ).integers(2**62)))
                for i, raw in enumerate(source.batches(order, local, self.num_workers)):
                    self.ctx.step = epoch * steps + i
                    self.ctx.progress = self.ctx.step / total
                    self._step(raw, order[i * local:(i + 1) * local], targets, metadata)
                    bar.update(1)
                self._end_epoch(started)
                bar.set_postfix({k: f"{v[-1]:.4g}" for k, v in self.history.items()
                                 if k.startswith("loss")})
                if self.checkpointer is not None and main:
                    self.checkpointer.save(self.state(epoch + 1, epoch + 1 == self.max_epochs))
                if main:
                    self.on_epoch_end(epoch + 1, dict(self.history))
                if self.n_iter_no_change and "eval_knn_accuracy" in self.history:
                    score = self.history["eval_knn_accuracy"][-1]
                    best, since_best = (score, 0) if score > best else (best, since_best + 1)
                    if since_best >= self.n_iter_no_change:
                        break
        finally:
            bar.close()
            if world is not None and world.sync_batchnorm:
                distributed.revert_sync_batchnorm(self.modules)
        return dict(self.history)

    def _local_batch(self, batch: int) -> int:
        if batch % self.world.size:
            what = (f"batch_size={batch}" if batch == self.batch_size else
                    f"the global batch ({batch}: X has fewer samples than "
                    f"batch_size={self.batch_size})")
            raise ParameterError(
                f"{what} is cut into equal slices for the {self.world.size} processes, so it "
                f"must be a multiple of {self.world.size}; change batch_size or the number "
                "of samples")
        return batch // self.world.size

    def _step(self, raw: torch.Tensor, rows: np.ndarray, targets: torch.Tensor | None,
              metadata: dict[str, torch.Tensor]) -> None:
        index = torch.as_tensor(rows, device=self.device)
        base = self.prep.base(raw)
        views = [self.prep.finish(v(base, self.aug_generator)) for v in self.views]
        batch = Batch(x=self.prep.finish(base), views=views, index=index,
                      y=None if targets is None else targets[index],
                      metadata={k: v[index] for k, v in metadata.items()})
        with torch.autocast(self.device.type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            self.method.training_step(self.modules, batch, self.ctx)

    def _end_epoch(self, started: float) -> None:
        means = {k: float(np.mean(v)) for k, v in self.epoch_logs.items()}
        if self.world is not None:
            means = self.world.mean(means)
            self.world.sync_buffers(self.modules)
        for k, value in means.items():
            self.history[k].append(value)
        self.epoch_logs.clear()
        first = next(iter(self.optimizers.values()), None)
        if first is not None:
            self.history["lr"].append(first.param_groups[0]["lr"])
        self.history["epoch_time"].append(time.perf_counter() - started)
        if self.evaluate is not None:
            self.history["eval_knn_accuracy"].append(self.evaluate())
            self.modules.train()
