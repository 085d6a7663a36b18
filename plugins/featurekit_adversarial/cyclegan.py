"""CycleGAN: unpaired two-way image translation (Zhu et al. 2017)."""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from torch import nn

from featurekit import assembly
from featurekit.base import FeatureExtractor, store_params
from featurekit.exceptions import InputError, ParameterError
from featurekit.method import OptimizerSpec
from featurekit_adversarial import domains as two_domains
from featurekit_adversarial.discriminators import PatchDiscriminator
from featurekit_adversarial.generators import (
    ImageDecoder,
    Standardize,
    feature_map,
    has_feature_map,
)
from featurekit_adversarial.losses import adversarial_loss, discriminator_loss
from featurekit_adversarial.pool import ImagePool

#: The modules each optimizer trains.
GENERATORS = ("backbone", "g_decoder", "f_encoder", "f_decoder")
DISCRIMINATORS = ("d_a", "d_b")


class HeldOut(nn.Module):
    """Held-out images of each domain in [0, 1] at the working size, for the cycle error.

    Non-persistent buffers: they follow the modules to the device but are not
    part of the model's state (a loaded model has none).
    """

    def __init__(self, a: torch.Tensor, b: torch.Tensor):
        super().__init__()
        self.register_buffer("a", a, persistent=False)
        self.register_buffer("b", b, persistent=False)


class CycleGAN(FeatureExtractor):
    """CycleGAN: generators G: A -> B and F: B -> A learnt from unpaired images.

    Two generators and two PatchGAN discriminators are trained together:
    D_B tells real B images from G(a), D_A real A images from F(b) (LSGAN
    losses), while the generators also minimize the cycle-consistency loss
    ``lambda_cycle * (|F(G(a)) - a| + |G(F(b)) - b|)`` and the identity loss
    ``lambda_cycle * lambda_identity * (|G(b) - b| + |F(a) - a|)`` (L1 on
    images in [-1, 1]). The discriminators learn from a history of the last
    ``pool_size`` generated images. The generators' updates, then the
    discriminators', alternate through ``ctx.optimize``.

    Each generator is an encoder, the backbone (by default
    ``cyclegan_encoder``, the paper's ``c7s1-64, d128, d256`` and residual
    blocks), followed by a decoder mirroring it (``u128, u64, c7s1-C``).
    ``transform`` returns two parts: ``A``, G's encoder globally pooled, and
    ``B``, F's; ``part=None`` (the default) gives both, ``part="A"`` one.

    The domains are named by a fit argument: ``fit(X, domains=d)`` with one
    value per image and exactly two distinct values; ``A`` is the first of
    them in sorted order. In a Pipeline, route it with
    ``set_fit_request(domains=True)``. Stand-alone, ``fit(X, y)`` reads ``y``
    as the domains when it has exactly two values. Domains of different
    sizes or channels come as a list of images with ``image_size=``: see
    :mod:`featurekit_adversarial.domains` for the working format.
    ``translate(X, to=d)`` gives images of domain ``d`` at its native size,
    channels and layout (``domain_shapes_``), in ``X``'s dtype.

    Parameters
    ----------
    backbone : str or callable, default="cyclegan_encoder"
        The generators' encoder: a backbone that exposes its last feature map
        (a ``features`` submodule or a ``feature_map`` method), such as
        ``cyclegan_encoder`` (``backbone_kwargs``: ``width`` k, the paper's
        64; ``n_blocks``, by default 9 from 256 px and 6 below) or
        ``small_cnn``.
    lambda_cycle : float, default=10.0
        Weight of the cycle-consistency loss (the paper's lambda).
    lambda_identity : float, default=0.5
        Weight of the identity loss, relative to ``lambda_cycle``; 0 turns it off.
    pool_size : int, default=50
        Generated images kept per discriminator (0: no history).
    discriminator_width : int, default=64
        Channels of the PatchGANs' first layer. They have 3 stride-2 layers
        (a 70 x 70 receptive field) from 64 px up, 2 at 32 px and 1 below.
    validation_fraction : float, default=0.05
        Fraction of each domain's images held out (at least one each) to
        measure the cycle error after every epoch; 0 holds none out.
    framing : {"full", "content"}, default="full"
        What of each image the generators see. ``"full"``: the whole image
        (the paper's). ``"content"``: each domain's *content square*, found
        from its images alone (the median bounding box of the pixels that
        differ from the background, squared: see
        :func:`featurekit_adversarial.domains.content_box`), cropped before
        the resize to ``image_size`` (required). Two domains that frame their
        objects at different scales then meet at one scale, so the generators
        need not learn to zoom, which a convolutional generator does poorly.
        ``translate`` crops its input to the source domain's square and
        pastes its output into the target's square on the target's
        background; ``domain_formats_`` records the squares. ``transform``
        is not cropped. Not in the paper.
    deskew : bool, default=False
        With ``framing="content"``: shear every image of both domains upright
        first (moment deskewing: its ink's mu11 made zero, see
        :func:`featurekit_adversarial.domains.deskew`), before the content
        square is found. For domains of which one is deskewed and the other
        not (USPS and MNIST); ``translate`` deskews its input the same way and
        returns upright images. ``transform`` is not deskewed. Not in the paper.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Defaults: ``max_epochs=10`` (the paper trains 200 epochs),
        ``batch_size=16`` images of both domains per step (the paper: one
        image of each; instance norm makes the networks independent of the
        batch, so this only averages gradients). Each domain needs at least
        ``batch_size`` training images. Optimizers: Adam, lr 2e-4, betas
        (0.5, 0.999), constant for the first half of training, then linear
        to 0, as the paper.

    Attributes
    ----------
    modules_ : nn.ModuleDict
        ``backbone`` and ``g_decoder`` (G), ``f_encoder`` and ``f_decoder``
        (F), ``d_a`` and ``d_b`` (the PatchGANs), ``pool_a`` and ``pool_b``
        (the image histories, buffers), ``pixels`` (to and from model space)
        and ``validation`` (held-out images, during fit only).
    domain_shapes_ : dict
        ``{domain: shape of one sample as given to fit}``, such as ``(28, 28)``
        for grey images or ``(12, 12, 3)`` for RGB ones.
    domain_formats_ : list of dict
        Each domain's ``shape``, ``sample_shape`` (C, H, W) and ``layout``, in
        the order of ``metadata_values_["domains"]``; with
        ``framing="content"`` also its content square ``box`` (``[top, left,
        side]`` in native pixels) and ``background`` (per channel, in [0, 1]).
    history_ : dict of list
        Per epoch: ``loss_generators``, ``loss_discriminators``,
        ``adversarial``, ``cycle`` and ``identity`` (training batches), and
        with held-out images ``cycle_error_a`` (mean L1 of F(G(a)) - a, pixel
        values in [0, 1], after the epoch) and ``cycle_error_b`` (G(F(b)) - b).

    See Also
    --------
    BiGAN : adversarial feature learning with an encoder.

    References
    ----------
    J.-Y. Zhu, T. Park, P. Isola, A. A. Efros. Unpaired Image-to-Image
    Translation using Cycle-Consistent Adversarial Networks. ICCV 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from featurekit_adversarial import CycleGAN
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (32, 8, 8), dtype=np.uint8)
    >>> d = np.repeat(["a", "b"], 16)
    >>> gan = CycleGAN(backbone_kwargs={"width": 2, "n_blocks": 1}, discriminator_width=4,
    ...                max_epochs=1, batch_size=8, random_state=0, verbose=0)
    >>> gan = gan.fit(X, domains=d)
    >>> gan.translate(X[:2], to="b").shape, gan.transform(X).shape
    ((2, 8, 8), (32, 16))
    """

    name = "cyclegan"
    family = "adversarial"
    modalities = ("image",)
    y_usage = "metadata"
    metadata_args = ("domains",)
    verbs = ("translate",)
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "lambda_cycle": [Interval(Real, 0, None, closed="left")],
        "lambda_identity": [Interval(Real, 0, None, closed="left")],
        "pool_size": [Interval(Integral, 0, None, closed="left")],
        "discriminator_width": [Interval(Integral, 1, None, closed="left")],
        "validation_fraction": [Interval(Real, 0, 1, closed="left")],
        "framing": [StrOptions({"full", "content"})],
        "deskew": ["boolean"],
    }

    def __init__(self, backbone="cyclegan_encoder", *, lambda_cycle=10.0, lambda_identity=0.5,
                 pool_size=50, discriminator_width=64, validation_fraction=0.05,
                 framing="full", deskew=False, backbone_kwargs=None, weights=None, part=None,
                 max_epochs=10, batch_size=16,
                 inference_batch_size=256, optimizer="auto", lr="auto", weight_decay="auto",
                 gradient_clip=None, device="auto", precision="auto", num_workers=0,
                 random_state=None, verbose=1, checkpoint_dir=None, resume="auto",
                 warm_start=False, eval_set=None, n_iter_no_change=None, image_size=None,
                 channels="auto", scale="auto", image_shape=None):
        store_params(self, locals())

    # -- sklearn API ---------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, domains: Any = None) -> CycleGAN:
        """Learn G: A -> B and F: B -> A from the unpaired images of two domains.

        Parameters
        ----------
        X : array-like of images, or list of images or image paths
            The images of both domains (a list, with ``image_size=``, when the
            domains differ in size).
        y : array-like of shape (n_samples,), default=None
            Read as the domains when ``domains`` is None and it has exactly
            two distinct values; ignored otherwise.
        domains : array-like of shape (n_samples,), default=None
            The domain of each image: exactly two distinct values.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        seed = assembly.resolve_seed(self.random_state)
        data = two_domains.prepare(self, X, y, domains, seed)
        self._holdout = data.holdout
        try:
            if self.warm_start and hasattr(self, "modules_"):
                self._set_holdout(self.modules_)
            self._fit(data.X, None, {"domains": data.domains})
        finally:
            del self._holdout
        self._set_holdout(self.modules_)  # held-out images are not part of the model
        self.domain_formats_ = data.formats
        return self

    @property
    def domain_shapes_(self) -> dict:
        """``{domain: shape of one sample as given to fit}`` (what ``translate`` returns)."""
        check_is_fitted(self, "domain_formats_")
        values = self.metadata_values_["domains"].tolist()
        return {v: tuple(f["shape"]) for v, f in zip(values, self.domain_formats_)}

    def translate(self, X: Any, *, to: Any) -> np.ndarray:
        """Translate images of one domain into the other, ``to``.

        Parameters
        ----------
        X : array-like of images, or list of images or image paths
            Images of the domain other than ``to``, as given to ``fit``.
        to : domain value
            The target domain: G translates to the second domain (B), F to the first (A).

        Returns
        -------
        X_new : ndarray of shape (n_samples, *domain_shapes_[to])
            The translations at the target domain's native size, channels and
            layout, in ``X``'s dtype and scale (uint8 stays uint8).
        """
        check_is_fitted(self, "domain_formats_")
        target = self._domain_index(to)
        gen = ("backbone", "g_decoder") if target == 1 else ("f_encoder", "f_decoder")

        def fn(modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
            return modules["pixels"](self._generate(modules, gen, x).float())

        output = self.domain_formats_[target]
        if "box" not in output:  # framing="full"
            return self._map_inputs(X, fn, sample_shape=tuple(output["sample_shape"]),
                                    layout=output["layout"])
        framed, scale = two_domains.framed_images(X, self, self.domain_formats_[1 - target])
        side = output["box"][2]
        images = self._map_inputs(framed, fn, sample_shape=(output["sample_shape"][0], side, side),
                                  layout=output["layout"])
        return two_domains.paste(images, output, scale)

    def _domain_index(self, to: Any) -> int:
        values = self.metadata_values_["domains"].tolist()
        for i, v in enumerate(values):
            if to == v or str(to) == str(v):
                return i
        raise InputError(f"to={to!r} is not a domain of this {type(self).__name__}; its "
                         f"domains are {values}")

    # -- the method contract ---------------------------------------------------------
    def build(self, spec):
        channels, height, width = spec.input_shape
        g_encoder, f_encoder = spec.make_backbone(), spec.make_backbone()
        if not has_feature_map(g_encoder):
            raise ParameterError(
                f"CycleGAN's generators need a backbone that gives a feature map (a `features` "
                f"submodule or a `feature_map` method); {self.backbone!r} does not. Use "
                "backbone='cyclegan_encoder' (the paper's) or 'small_cnn'")
        was_training = g_encoder.training
        g_encoder.eval()
        with torch.no_grad():
            fmap = feature_map(g_encoder, torch.zeros(1, *spec.input_shape))
        g_encoder.train(was_training)
        map_channels, map_size = fmap.shape[1], tuple(fmap.shape[-2:])
        shape = (channels, height, width)
        return nn.ModuleDict({
            "backbone": g_encoder,
            "g_decoder": ImageDecoder(map_channels, map_size, shape),
            "f_encoder": f_encoder,
            "f_decoder": ImageDecoder(map_channels, map_size, shape),
            "d_a": PatchDiscriminator(channels, max(height, width), self.discriminator_width),
            "d_b": PatchDiscriminator(channels, max(height, width), self.discriminator_width),
            "pool_a": ImagePool(self.pool_size, shape),
            "pool_b": ImagePool(self.pool_size, shape),
            "pixels": Standardize(self.input_spec_.mean, self.input_spec_.std),
            "validation": self._holdout_module(shape),
        })

    def outputs(self, spec):
        return {"A": spec.backbone_dim, "B": spec.backbone_dim}

    def optimizers(self, modules):
        def params(keys):
            return [p for k in keys for p in modules[k].parameters()]

        adam = {"optimizer": "adam", "lr": 2e-4, "betas": (0.5, 0.999),
                "schedule": "constant_then_linear", "decay": 0.5}
        return {"generators": OptimizerSpec(params(GENERATORS), **adam),
                "discriminators": OptimizerSpec(params(DISCRIMINATORS), **adam)}

    def training_step(self, modules, batch, ctx):
        domain = batch.metadata["domains"]
        x_a, x_b = batch.x[domain == 0], batch.x[domain == 1]
        if len(x_a) and len(x_b):
            self._update(modules, x_a, x_b, ctx)
        steps = max(1, self.n_samples_fit_ // self.batch_size)  # Trainer.steps_per_epoch
        if (ctx.step + 1) % steps == 0:
            self._log_cycle_error(modules, ctx)

    def embed(self, modules, x):
        return {"A": modules["backbone"](x), "B": modules["f_encoder"](x)}

    # -- internals -------------------------------------------------------------------
    def _update(self, m: nn.ModuleDict, x_a: torch.Tensor, x_b: torch.Tensor, ctx: Any) -> None:
        """One generator update, then one discriminator update (the paper's order)."""
        real_a, real_b = m["pixels"].inverse(x_a), m["pixels"].inverse(x_b)  # in [-1, 1]
        fake_b = self._generate(m, ("backbone", "g_decoder"), x_a)
        fake_a = self._generate(m, ("f_encoder", "f_decoder"), x_b)
        rec_a = self._generate(m, ("f_encoder", "f_decoder"), m["pixels"](fake_b))
        rec_b = self._generate(m, ("backbone", "g_decoder"), m["pixels"](fake_a))
        discriminators = [m[k] for k in DISCRIMINATORS]
        for d in discriminators:  # no parameter gradients in D during G's update
            d.requires_grad_(False)
        try:
            adversarial = (adversarial_loss(m["d_b"](fake_b), True, "lsgan")
                           + adversarial_loss(m["d_a"](fake_a), True, "lsgan"))
        finally:
            for d in discriminators:
                d.requires_grad_(True)
        cycle = _l1(rec_a, real_a) + _l1(rec_b, real_b)
        loss = adversarial + self.lambda_cycle * cycle
        identity = torch.zeros((), device=x_a.device)
        if self.lambda_identity > 0:
            identity = (_l1(self._generate(m, ("backbone", "g_decoder"), x_b), real_b)
                        + _l1(self._generate(m, ("f_encoder", "f_decoder"), x_a), real_a))
            loss = loss + self.lambda_cycle * self.lambda_identity * identity
        ctx.optimize("generators", loss)
        pooled_b = m["pool_b"].query(fake_b.detach().float())
        pooled_a = m["pool_a"].query(fake_a.detach().float())
        d_loss = (discriminator_loss(m["d_b"](real_b), m["d_b"](pooled_b), "lsgan")
                  + discriminator_loss(m["d_a"](real_a), m["d_a"](pooled_a), "lsgan"))
        ctx.optimize("discriminators", d_loss)
        ctx.log(adversarial=adversarial.detach(), cycle=cycle.detach(),
                identity=identity.detach())

    @staticmethod
    def _generate(m: nn.ModuleDict, keys: tuple[str, str], x: torch.Tensor) -> torch.Tensor:
        """A generator's image in [-1, 1] from a model-space batch."""
        encoder, decoder = keys
        return m[decoder](feature_map(m[encoder], x))

    @torch.no_grad()
    def _log_cycle_error(self, m: nn.ModuleDict, ctx: Any) -> None:
        """Mean L1 of F(G(a)) - a and G(F(b)) - b on the held-out images, pixels in [0, 1]."""
        held = m["validation"]
        if not (len(held.a) and len(held.b)):
            return
        keys = (*GENERATORS,)
        modes = {k: m[k].training for k in keys}
        for k in keys:
            m[k].eval()
        try:
            errors = {}
            for name, images, there, back in (
                    ("cycle_error_a", held.a, ("backbone", "g_decoder"),
                     ("f_encoder", "f_decoder")),
                    ("cycle_error_b", held.b, ("f_encoder", "f_decoder"),
                     ("backbone", "g_decoder"))):
                total = 0.0
                for i in range(0, len(images), self.inference_batch_size):
                    x01 = images[i:i + self.inference_batch_size]
                    x = m["pixels"](x01 * 2 - 1)
                    rec = self._generate(m, back, m["pixels"](self._generate(m, there, x)))
                    total += float(((rec.float() + 1) * 0.5 - x01).abs().sum())
                errors[name] = total / images.numel()
        finally:
            for k, mode in modes.items():
                m[k].train(mode)
        ctx.log(**errors)

    def _holdout_module(self, shape: tuple[int, int, int]) -> HeldOut:
        empty = torch.zeros(0, *shape)
        held = HeldOut(empty, empty.clone())
        self._set_holdout(nn.ModuleDict({"validation": held}))
        return held

    def _set_holdout(self, modules: nn.ModuleDict) -> None:
        """Put the held-out images of the running fit (or none) into ``modules``."""
        held = modules["validation"]
        images = getattr(self, "_holdout", None)
        if images is None:
            held.a = held.a[:0]
            held.b = held.b[:0]
            return
        from featurekit.preprocess import Preprocessor

        prep = Preprocessor(self.input_spec_, torch.device("cpu"))
        device = held.a.device
        held.a, held.b = (prep.base(raw).to(device) if len(raw) else held.a[:0]
                          for raw in images)


def _l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean()
