"""Methods written against the public contract only, to prove it carries them:
BYOL (EMA target + predictor), MoCo v2 (momentum encoder + queue buffer) and a
GAN with two optimizers and alternating updates. Compact test versions; the
full methods live in the contrastive and adversarial plugins."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F

from featurekit import hookimpl
from featurekit.base import FeatureExtractor, store_params
from featurekit.data.augment import FeatureCorruption, image_recipe
from featurekit.method import OptimizerSpec


def mlp(i: int, h: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o))


def two_views(spec):
    if spec.modality == "tabular":
        return [FeatureCorruption(0.5)] * 2
    return [image_recipe(spec.input_shape[-1], min_scale=0.3)] * 2


class _Common(FeatureExtractor):
    def __init__(self, backbone="small_cnn", *, backbone_kwargs=None, weights=None, part=None,
                 max_epochs=10, batch_size=256, inference_batch_size=256, optimizer="auto",
                 lr="auto", weight_decay="auto", gradient_clip=None, device="auto",
                 precision="auto", num_workers=0, random_state=None, verbose=1,
                 checkpoint_dir=None, resume="auto", warm_start=False, eval_set=None,
                 n_iter_no_change=None, image_size=None, channels="auto", scale="auto",
                 image_shape=None):
        store_params(self, locals())

    def embed(self, modules, x):
        return {"features": modules["backbone"](x)}


class ToyBYOL(_Common):
    name, family = "toy_byol", "contrastive"
    momentum_modules = ("target_backbone", "target_projector")

    def build(self, spec):
        backbone = spec.make_backbone()
        projector = mlp(spec.backbone_dim, 32, 16)
        return nn.ModuleDict({
            "backbone": backbone, "projector": projector, "predictor": mlp(16, 32, 16),
            "target_backbone": copy.deepcopy(backbone).requires_grad_(False),
            "target_projector": copy.deepcopy(projector).requires_grad_(False)})

    def views(self, spec):
        return two_views(spec)

    def optimizers(self, modules):
        online = [p for k in ("backbone", "projector", "predictor") for p in modules[k].parameters()]
        return {"online": OptimizerSpec(online, "adamw", lr=1e-3)}

    def training_step(self, m, batch, ctx):
        def online(v):
            return m["predictor"](m["projector"](m["backbone"](v)))

        with torch.no_grad():
            t1, t2 = (m["target_projector"](m["target_backbone"](v)) for v in batch.views)
        p1, p2 = online(batch.views[0]), online(batch.views[1])
        loss = (4 - 2 * F.cosine_similarity(p1, t2).mean() - 2 * F.cosine_similarity(p2, t1).mean())
        ctx.optimize("online", loss)
        tau = 1 - (1 - 0.99) * (math.cos(math.pi * ctx.progress) + 1) / 2
        with torch.no_grad():
            for o, t in (("backbone", "target_backbone"), ("projector", "target_projector")):
                for po, pt in zip(m[o].parameters(), m[t].parameters()):
                    pt.mul_(tau).add_(po, alpha=1 - tau)


class Queue(nn.Module):
    """A FIFO of negative keys, as buffers so checkpoints and resume carry it."""

    def __init__(self, dim: int, size: int):
        super().__init__()
        self.register_buffer("keys", F.normalize(torch.randn(size, dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def push(self, k: torch.Tensor) -> None:
        idx = (self.ptr + torch.arange(len(k), device=k.device)) % len(self.keys)
        self.keys[idx] = k
        self.ptr.copy_((self.ptr + len(k)) % len(self.keys))


class ToyMoCo(_Common):
    name, family = "toy_moco", "contrastive"
    momentum_modules = ("key_backbone", "key_projector")

    def build(self, spec):
        backbone = spec.make_backbone()
        projector = mlp(spec.backbone_dim, 32, 16)
        return nn.ModuleDict({
            "backbone": backbone, "projector": projector,
            "key_backbone": copy.deepcopy(backbone).requires_grad_(False),
            "key_projector": copy.deepcopy(projector).requires_grad_(False),
            "queue": Queue(16, 64)})

    def views(self, spec):
        return two_views(spec)

    def optimizers(self, modules):
        params = [*modules["backbone"].parameters(), *modules["projector"].parameters()]
        return {"encoder": OptimizerSpec(params, "sgd", lr=0.03, weight_decay=1e-4)}

    def training_step(self, m, batch, ctx):
        with torch.no_grad():
            for o, t in (("backbone", "key_backbone"), ("projector", "key_projector")):
                for po, pt in zip(m[o].parameters(), m[t].parameters()):
                    pt.mul_(0.99).add_(po, alpha=0.01)
            k = F.normalize(m["key_projector"](m["key_backbone"](batch.views[1])), dim=1)
        q = F.normalize(m["projector"](m["backbone"](batch.views[0])), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ m["queue"].keys.T], dim=1) / 0.2
        ctx.optimize("encoder", F.cross_entropy(logits, torch.zeros(len(q), dtype=torch.long,
                                                                     device=q.device)))
        m["queue"].push(ctx.all_gather(k))


class ToyGAN(_Common):
    """Discriminator features (DCGAN-style); generator and discriminator alternate."""

    name, family = "toy_gan", "adversarial"

    def build(self, spec):
        n_in = math.prod(spec.input_shape)
        return nn.ModuleDict({
            "backbone": spec.make_backbone(), "critic": nn.Linear(spec.backbone_dim, 1),
            "generator": nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, n_in))})

    def optimizers(self, modules):
        d = [*modules["backbone"].parameters(), *modules["critic"].parameters()]
        return {"discriminator": OptimizerSpec(d, "adam", lr=2e-4, betas=(0.5, 0.999)),
                "generator": OptimizerSpec(modules["generator"].parameters(), "adam", lr=2e-4,
                                           betas=(0.5, 0.999))}

    def training_step(self, m, batch, ctx):
        x = batch.x
        z = torch.randn(len(x), 8, device=x.device)
        fake = m["generator"](z).view_as(x)

        def critic(v):
            return m["critic"](m["backbone"](v)).squeeze(1)

        ones, zeros = torch.ones(len(x), device=x.device), torch.zeros(len(x), device=x.device)
        d_loss = (F.binary_cross_entropy_with_logits(critic(x), ones)
                  + F.binary_cross_entropy_with_logits(critic(fake.detach()), zeros))
        ctx.optimize("discriminator", d_loss)
        ctx.optimize("generator", F.binary_cross_entropy_with_logits(critic(fake), ones))


class ContractPlugin:
    @hookimpl
    def featurekit_register_methods(self, registry):
        for cls in (ToyBYOL, ToyMoCo, ToyGAN, ToyGroups):
            registry.add_method(cls)


class ToyGroups(_Common):
    """Weak supervision by a metadata argument: features that separate ``groups``."""

    name, family = "toy_groups", "disentangling"
    y_usage, metadata_args = "metadata", ("groups",)

    def fit(self, X, y=None, *, groups=None):
        return self._fit(X, y, {"groups": groups})

    def build(self, spec):
        return nn.ModuleDict({"backbone": spec.make_backbone(),
                              "head": nn.Linear(spec.backbone_dim, len(spec.metadata["groups"]))})

    def optimizers(self, modules):
        return {"model": OptimizerSpec(modules.parameters(), "adamw", lr=1e-3)}

    def training_step(self, m, batch, ctx):
        logits = m["head"](m["backbone"](batch.x))
        ctx.optimize("model", F.cross_entropy(logits, batch.metadata["groups"]))
