"""ContentStyle: content vs style features with an AdaIN decoder (Chou et al. 2019;
Huang & Belongie 2017), optionally weakly supervised by groups (Chou et al. 2018)."""

from __future__ import annotations

import difflib
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.utils.validation import check_is_fitted
from torch import nn
from torch.nn import functional as F

from featurekit.base import FeatureExtractor, store_params
from featurekit.data import inputs
from featurekit.exceptions import InputError, ParameterError
from featurekit.method import Interval, OptimizerSpec
from featurekit_disentangling import groups as group_args
from featurekit_disentangling.losses import (
    critic_accuracy,
    reconstruction_loss,
    same_group_partners,
)
from featurekit_disentangling.networks import (
    AdaINDecoder,
    ContentHead,
    GroupCodes,
    GroupCritic,
    StyleEncoder,
    check_feature_map,
    feature_map,
)

#: What ``part=`` accepts besides a list of part names.
PART_NAMES = ("content", "style", "both", "all")
#: The modules the critic's optimizer trains; every other one is the model's.
CRITIC = ("critic",)


class ContentStyle(FeatureExtractor):
    """Content and style features, and their recombination, from an AdaIN autoencoder.

    Three networks are trained together to rebuild their input (L1, in the
    normalized space the backbone sees), as AdaIN-VC (Chou et al. 2019):

    - a **content encoder**, the backbone (by default ``content_encoder``:
      convolutions each followed by instance normalization without affine
      parameters), then a 1x1 convolution to ``content_channels`` and one
      more instance norm: the *content map*. Instance normalization removes
      each channel's per-sample mean and scale, so the map keeps where things
      are, not their global statistics;
    - a **style encoder**: convolutions without normalization, a global
      average pool and a linear layer to ``style_dim`` numbers;
    - an **AdaIN decoder**: from the content map, blocks of adaptive instance
      normalization whose per-channel scale and shift come from the style code
      (Huang & Belongie 2017), upsampling to the image size.

    ``transform`` returns two parts: ``content``, the content map
    average-pooled to a ``content_grid`` x ``content_grid`` grid and flattened
    (``content_channels * content_grid ** 2`` features; 8 * 4 * 4 = 128 by
    default, whatever the image size), and ``style``, the style code
    (``style_dim``). ``part="content"``, ``"style"`` or ``"both"`` (the
    default, None, is both) selects them. ``recombine(content_of=X1,
    style_of=X2)`` decodes the content maps of ``X1`` in the styles of ``X2``.

    **Weak supervision**, ``fit(X, groups=g)`` with one group per sample
    (a speaker, a domain; at least two distinct values), adds three terms:

    - an adversarial group critic on the content code (Ganin et al. 2016,
      DANN; Chou et al. 2018 for speaker-invariant content): an MLP learns to
      tell the group from the pooled content code (cross-entropy, its own
      optimizer, lr 2e-3, ``critic_steps`` updates first in each step), while the encoder is trained to
      leave it guessing, by the cross-entropy between the critic's output and
      the uniform distribution, weighted by ``lambda_critic`` (the domain
      confusion loss of Tzeng et al. 2015, which, unlike DANN's reversed
      gradient, does not reward a critic that is confidently wrong: with two
      groups a flipped guess is as informative as a right one);
    - a group classifier on the style code (a linear layer, cross-entropy,
      ``lambda_style``), pulling one group's style codes together;
    - a within-group style swap (Chou et al. 2018): each sample is also
      rebuilt from its own content and the style of another sample of its
      group in the batch (L1, ``lambda_swap``), so the style code can carry
      only what a group's samples share.

    Without groups the method is unsupervised (reconstruction only). ``y``
    is ignored either way, so a Pipeline's labels never become the groups; in
    a Pipeline, route them with ``set_fit_request(groups=True)``.

    Parameters
    ----------
    backbone : str or callable, default="content_encoder"
        The content encoder: a backbone that gives a feature map (a
        ``feature_map`` method or a ``features`` submodule), such as
        ``content_encoder`` (``backbone_kwargs``: ``width``, default 32;
        strides 1, 2, 2, so a 28 px image gives a 7 x 7 map) or
        ``small_cnn``. The map must be at least 2 x 2.
    content_channels : int, default=8
        Channels of the content map (the bottleneck that keeps style out).
    content_grid : int, default=4
        Side of the grid the content map is pooled to for ``transform``.
    style_dim : int, default=16
        Size of the style code.
    style_width : int, default=32
        Channels of the style encoder's first layer (then 2x, 4x).
    decoder_width : int, default=64
        Channels of the decoder's first block (halved at each upsampling).
    lambda_critic : float, default=1.0
        Weight of the encoder's confusion loss against the group critic
        (used with groups only; 0 turns the adversary off).
    critic_steps : int, default=5
        Critic updates per model update, on the batch's content codes (cheap:
        the codes are computed once). A critic far from its best response
        lets a linear probe read what the critic misses.
    lambda_style : float, default=1.0
        Weight of the group classification loss on the style code (groups only).
    lambda_swap : float, default=1.0
        Weight of the within-group style-swap reconstruction (groups only).
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Defaults: ``max_epochs=10``, ``batch_size=64``. Optimizers: Adam,
        lr 5e-4, betas (0.9, 0.999) (AdaIN-VC's) for the model, lr 2e-3 for
        the critic, cosine decay.

    Attributes
    ----------
    modules_ : nn.ModuleDict
        ``backbone`` and ``content_head`` (the content encoder),
        ``style_encoder``, ``decoder``; with groups also ``critic``,
        ``style_classifier`` and ``group_codes`` (the training rows' groups,
        during fit only).
    feature_parts_ : dict
        ``{"content": slice, "style": slice}``: the parts' columns.
    group_values_ : ndarray or None
        The distinct groups seen in fit, sorted; None when fitted without groups.
    history_ : dict of list
        Per epoch: ``reconstruction`` (L1); with groups also ``swap``,
        ``style_classification``, ``confusion`` (the encoder's loss against
        the critic; log(n_groups) when the critic is at chance),
        ``critic_accuracy`` (on training batches, before the encoder's
        update), ``loss_model`` and ``loss_critic``; without groups ``loss``.

    See Also
    --------
    BetaVAE : disentangled factors from a KL-weighted VAE.
    featurekit.evaluate.parts_table : what each part knows.

    References
    ----------
    J. Chou, H. Lee. One-shot Voice Conversion by Separating Speaker and
    Content Representations with Instance Normalization. Interspeech 2019.

    J. Chou, C. Yeh, H. Lee, L. Lee. Multi-target Voice Conversion without
    Parallel Data by Adversarially Learning Disentangled Audio
    Representations. Interspeech 2018.

    X. Huang, S. Belongie. Arbitrary Style Transfer in Real-time with Adaptive
    Instance Normalization. ICCV 2017.

    Y. Ganin, E. Ustinova, H. Ajakan, P. Germain, H. Larochelle, F. Laviolette,
    M. Marchand, V. Lempitsky. Domain-Adversarial Training of Neural Networks.
    JMLR 17, 2016.

    E. Tzeng, J. Hoffman, T. Darrell, K. Saenko. Simultaneous Deep Transfer
    Across Domains and Tasks. ICCV 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from featurekit_disentangling import ContentStyle
    >>> rng = np.random.default_rng(0)
    >>> X = rng.integers(0, 256, (32, 8, 8), dtype=np.uint8)
    >>> cs = ContentStyle(backbone_kwargs={"width": 4}, content_channels=4, content_grid=2,
    ...                   style_dim=3, max_epochs=1, batch_size=8, random_state=0, verbose=0)
    >>> cs = cs.fit(X, groups=np.repeat(["a", "b"], 16))
    >>> cs.transform(X).shape, cs.set_params(part="style").transform(X).shape
    ((32, 19), (32, 3))
    >>> cs.recombine(content_of=X[:2], style_of=X[2:4]).shape
    (2, 8, 8)
    """

    name = "content_style"
    family = "disentangling"
    modalities = ("image",)
    y_usage = "ignored"
    verbs = ("recombine",)
    tiny_params = {"image": {"backbone": "content_encoder", "backbone_kwargs": {"width": 4},
                             "content_channels": 4, "content_grid": 2, "style_dim": 4,
                             "style_width": 4, "decoder_width": 8}}
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        "content_channels": [Interval(Integral, 1, None, closed="left")],
        "content_grid": [Interval(Integral, 1, None, closed="left")],
        "style_dim": [Interval(Integral, 1, None, closed="left")],
        "style_width": [Interval(Integral, 1, None, closed="left")],
        "decoder_width": [Interval(Integral, 1, None, closed="left")],
        "lambda_critic": [Interval(Real, 0, None, closed="left")],
        "critic_steps": [Interval(Integral, 1, None, closed="left")],
        "lambda_style": [Interval(Real, 0, None, closed="left")],
        "lambda_swap": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, backbone="content_encoder", *, content_channels=8, content_grid=4,
                 style_dim=16, style_width=32, decoder_width=64, lambda_critic=1.0,
                 critic_steps=5, lambda_style=1.0, lambda_swap=1.0, backbone_kwargs=None, weights=None,
                 part=None, max_epochs=10, batch_size=64, inference_batch_size=256,
                 optimizer="auto", lr="auto", weight_decay="auto", gradient_clip=None,
                 device="auto", precision="auto", num_workers=0, random_state=None, verbose=1,
                 checkpoint_dir=None, resume="auto", warm_start=False, eval_set=None,
                 n_iter_no_change=None, image_size=None, channels="auto", scale="auto",
                 image_shape=None):
        store_params(self, locals())

    # -- sklearn API ---------------------------------------------------------------
    def fit(self, X: Any, y: Any = None, *, groups: Any = None) -> ContentStyle:
        """Learn content and style encoders and the AdaIN decoder from ``X``.

        Parameters
        ----------
        X : array-like of images, or list of images or image paths
            The training images.
        y : None
            Ignored: labels never become the groups.
        groups : array-like of shape (n_samples,), default=None
            The group of each sample (speaker, domain...), at least two distinct
            values: weak supervision (see the class docstring). None: unsupervised.

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        self._check_part(self.part)
        owner = type(self).__name__
        values, codes = (None, None) if groups is None else group_args.encode_groups(groups, owner)
        continuing = self.warm_start and hasattr(self, "modules_")
        if continuing and not _same_groups(self.group_values_, values):
            raise ParameterError(
                f"warm_start=True continues a {owner} fitted with groups "
                f"{_describe(self.group_values_)}, and this fit has groups {_describe(values)}; "
                "give the same groups, or set warm_start=False")
        self._groups = codes
        try:
            self.group_values_ = values
            if continuing and codes is not None:
                self.modules_["group_codes"].codes = codes.to(
                    self.modules_["style_classifier"].weight.device)
            metadata = {} if groups is None else {"groups": np.asarray(groups)}
            self._fit(X, None, metadata)
        finally:
            del self._groups
        if "group_codes" in self.modules_:  # the training rows' groups are not the model's
            self.modules_["group_codes"].codes = self.modules_["group_codes"].codes[:0]
        return self

    def recombine(self, content_of: Any, style_of: Any) -> np.ndarray:
        """Decode the content of ``content_of`` in the style of ``style_of``.

        Parameters
        ----------
        content_of : array-like of images, or list of images or image paths
            Images giving the content (what is drawn, and where).
        style_of : array-like of images, or list of images or image paths
            Images giving the style: one per image of ``content_of``, or a
            single one for all of them.

        Returns
        -------
        X_new : ndarray
            Images shaped, scaled and typed like ``content_of`` (at the fitted
            size; uint8 stays uint8).
        """
        check_is_fitted(self, "modules_")
        self._check_modalities(content_of, style_of)
        n_content = self._inputs(content_of, "content_of").n
        styles = self._features(self._inputs(style_of, "style_of"), ["style"])
        if len(styles) == 1:
            styles = np.repeat(styles, n_content, axis=0)
        elif len(styles) != n_content:
            raise InputError(f"content_of has {n_content} samples and style_of {len(styles)}; "
                             "give one style sample per content sample, or a single one for all")
        done = [0]

        def fn(modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
            style = torch.from_numpy(styles[done[0]:done[0] + len(x)]).to(x.device)
            done[0] += len(x)
            return modules["decoder"](self._content_map(modules, x), style)

        return self._map_inputs(content_of, fn)

    # -- the method contract ---------------------------------------------------------
    def build(self, spec):
        backbone = spec.make_backbone()
        check_feature_map(backbone, self.backbone, type(self).__name__)
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():
            fmap = feature_map(backbone, torch.zeros(1, *spec.input_shape))
        backbone.train(was_training)
        map_channels, map_size = fmap.shape[1], tuple(fmap.shape[-2:])
        if map_size[0] * map_size[1] < 2:
            raise ParameterError(
                f"backbone {self.backbone!r} turns {spec.input_shape[1:]} px images into a "
                f"{map_size[0]} x {map_size[1]} map, and instance normalization needs at least "
                "two positions; use larger images (image_size=) or backbone='content_encoder'")
        modules = nn.ModuleDict({
            "backbone": backbone,
            "content_head": ContentHead(map_channels, self.content_channels),
            "style_encoder": StyleEncoder(spec.input_shape[0], self.style_width, self.style_dim),
            "decoder": AdaINDecoder(self.content_channels, map_size, tuple(spec.input_shape),
                                    self.style_dim, self.decoder_width),
        })
        if self.group_values_ is not None:
            n_groups = len(self.group_values_)
            codes = getattr(self, "_groups", None)
            if codes is not None:
                group_args.check_length(codes, spec.n_samples)
            modules["critic"] = GroupCritic(self._content_dim(), n_groups)
            modules["style_classifier"] = nn.Linear(self.style_dim, n_groups)
            modules["group_codes"] = GroupCodes(
                codes if codes is not None else torch.zeros(0, dtype=torch.long))
        return modules

    def outputs(self, spec):
        return {"content": self._content_dim(), "style": self.style_dim}

    def optimizers(self, modules):
        adam = {"optimizer": "adam", "lr": 5e-4, "betas": (0.9, 0.999)}
        model = [p for k, m in modules.items() if k not in CRITIC for p in m.parameters()]
        specs = {"model": OptimizerSpec(model, **adam)}
        if "critic" in modules:
            specs["critic"] = OptimizerSpec(modules["critic"].parameters(),
                                            **{**adam, "lr": 2e-3})
        return specs

    def training_step(self, modules, batch, ctx):
        x = batch.x
        content = self._content_map(modules, x)
        style = modules["style_encoder"](x)
        reconstruction = reconstruction_loss(modules["decoder"](content, style), x)
        loss = reconstruction
        logs = {"reconstruction": reconstruction.detach()}
        if "critic" in modules:
            g = modules["group_codes"].codes[batch.index]
            code = self._pool(content)
            critic = modules["critic"]
            for _ in range(self.critic_steps):  # keep the adversary near its best response
                logits = critic(code.detach())
                ctx.optimize("critic", F.cross_entropy(logits, g))
            critic.requires_grad_(False)  # no parameter gradients in the critic from the model
            try:
                confusion = -F.log_softmax(critic(code), dim=1).mean(dim=1).mean()
            finally:
                critic.requires_grad_(True)
            style_ce = F.cross_entropy(modules["style_classifier"](style.float()), g)
            partner_style = style[same_group_partners(g)]
            swap = reconstruction_loss(modules["decoder"](content, partner_style), x)
            loss = (loss + self.lambda_critic * confusion + self.lambda_style * style_ce
                    + self.lambda_swap * swap)
            logs.update(swap=swap.detach(), style_classification=style_ce.detach(),
                        confusion=confusion.detach(),
                        critic_accuracy=critic_accuracy(logits.detach(), g))
        ctx.optimize("model", loss)
        ctx.log(**logs)

    def embed(self, modules, x):
        return {"content": self._pool(self._content_map(modules, x)),
                "style": modules["style_encoder"](x)}

    # -- internals -------------------------------------------------------------------
    def _content_dim(self) -> int:
        return self.content_channels * self.content_grid ** 2

    @staticmethod
    def _content_map(modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
        return modules["content_head"](feature_map(modules["backbone"], x))

    def _pool(self, content: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(content, self.content_grid).flatten(1)

    def _check_part(self, part: Any) -> None:
        wanted = [part] if isinstance(part, str) else [] if part is None else part
        if not isinstance(wanted, (list, tuple)) or not wanted and part is not None:
            raise ParameterError(f"The 'part' parameter of {type(self).__name__} must be None, "
                                 f"'content', 'style' or 'both'. Got {part!r} instead.")
        for p in wanted:
            if p not in PART_NAMES:
                close = difflib.get_close_matches(str(p), PART_NAMES, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ParameterError(
                    f"The 'part' parameter of {type(self).__name__} must be None, 'content', "
                    f"'style' or 'both' (or a list of part names). Got {p!r} instead.{hint}")

    def _selected_parts(self) -> list[str]:
        self._check_part(self.part)
        if self.part == "both":
            return list(self.feature_parts_)
        return super()._selected_parts()

    def _inputs(self, X: Any, what: str) -> inputs.Source:
        """``X`` validated as by ``transform``; errors name the argument ``what``."""
        try:
            return self._transform_inputs(X)
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None

    def _check_modalities(self, content_of: Any, style_of: Any) -> None:
        kinds = {what: _modality_of(X, self.image_shape)
                 for what, X in (("content_of", content_of), ("style_of", style_of))}
        fitted = self.input_spec_.modality
        wrong = {what: kind for what, kind in kinds.items() if kind != fitted}
        if wrong:
            described = ", ".join(f"{what} is {kind}" for what, kind in kinds.items())
            raise InputError(f"recombine needs content_of and style_of of the modality "
                             f"{type(self).__name__} was fitted on ({fitted}); {described}")


def _modality_of(X: Any, image_shape: Any) -> str:
    """``"audio"``, ``"tabular"`` or ``"image"``: how featurekit would read ``X``."""
    if getattr(inputs, "is_audio_list", None) and inputs.is_audio_list(X):
        return "audio"
    if type(X).__name__ == "Waveforms":
        return "audio"
    if inputs.is_tabular(X, image_shape):
        return "tabular"
    return "image"


def _same_groups(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and bool(np.all(a == b))


def _describe(values: np.ndarray | None) -> str:
    return "none (unsupervised)" if values is None else repr(values.tolist())
