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

from featurekit.audio import AudioBatch, griffin_lim, mel_to_linear, n_frames
from featurekit import assembly
from featurekit.base import AUDIO_CONSTRAINTS, FeatureExtractor, store_params
from featurekit.data import inputs
from featurekit.exceptions import InputError, ParameterError
from featurekit.method import Interval, OptimizerSpec, StrOptions
from featurekit_disentangling import groups as group_args
from featurekit_disentangling.erasure import LinearEraser
from featurekit_disentangling.audio_networks import (
    AudioAdaINDecoder,
    AudioContentEncoder,
    AudioStyleEncoder,
    SpectrogramFrontEnd,
    masked_l1,
    segment_pool,
)
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
    VectorQuantizer,
    check_feature_map,
    feature_map,
)

#: What ``part=`` accepts besides a list of part names.
PART_NAMES = ("content", "style", "both", "all")
#: What ``recombine(..., output=)`` accepts for audio.
AUDIO_OUTPUTS = ("log_mel", "waveform")
#: Griffin-Lim iterations of ``recombine(..., output="waveform")``.
GRIFFIN_LIM_ITER = 32
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

    **Audio** (waveforms: an (N, T) array with ``modality="audio"``, a list of
    1-D clips, or :class:`featurekit.data.Waveforms`; at ``sample_rate``):
    the front end computes a log-mel spectrogram on the device
    (:class:`featurekit.audio.LogMel`: ``n_mels`` bands, ``n_fft``,
    ``hop_length``), standardized per band with running statistics of the
    training frames, with a mask of each clip's valid frames. The three
    networks are 1-D convolutions over frames with the bands as input
    channels (AdaIN-VC): the content encoder (``backbone_kwargs={"width":
    w}``, default 64) with masked instance norm after every convolution and a
    1x1 convolution to ``content_channels``; the style encoder (no
    normalization, widths ``style_width``, 2x, 2x, a masked mean over frames,
    a linear layer); a decoder of masked AdaIN blocks to a log-mel. Every
    statistic, pooling and the L1 loss use the valid frames only, and masked
    frames are zero before every convolution, so a clip's features do not
    depend on the padding (its batch). The ``content`` part is the content
    map averaged over ``content_grid ** 2`` equal spans of the clip's valid
    frames: ``content_channels * content_grid ** 2`` features, 128 by
    default, as for images. ``recombine`` returns log-mels, or waveforms
    through Griffin-Lim with ``output="waveform"``.

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
      only what a group's samples share;

    and, after training, with ``content_erasure="leace"`` (the default), a
    closed-form linear eraser of the group from the ``content`` part (LEACE,
    Belrose et al. 2023), fitted on the training rows' content codes: the
    groups' mean content codes are made equal, so no linear classifier trained
    on those rows does better than a constant guess, while the codes move as
    little as possible (at most ``n_groups - 1`` directions are removed). The
    guarantee is linear: a non-linear reader can still find what the critic
    left. ``recombine`` decodes the content map, before the eraser.

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
    content_erasure : {"leace"} or None, default="leace"
        With groups: erase the group linearly from the ``content`` part after
        training (see above). None: the content part is the critic-trained
        code as it is. Without groups it has no effect.
    content_codebook : int or None, default=None
        Quantize the content map, position by position (a frame, a pixel of
        the map), to the nearest of this many learned code vectors (VQVC, Wu
        & Lee 2020; VQ-VAE's straight-through estimator and loss, commitment
        weight 0.25, van den Oord et al. 2017): an information bottleneck
        against what the content should not carry. None: no quantization.
    modality : {"auto", "image", "audio"}, default="auto"
        How to read ``X``: ``"auto"`` takes Waveforms and lists of 1-D arrays
        as audio, everything else as images; ``"audio"`` also takes an
        (n_samples, n_times) array as waveforms.
    sample_rate : int, default=16000
        Audio: the clips' rate in Hz (Waveforms at another rate are refused;
        there is no resampling).
    n_mels : int, default=40
        Audio: mel bands of the log-mel front end.
    n_fft : int, default=256
        Audio: STFT frame and FFT size in samples; clips shorter than one
        frame are refused.
    hop_length : int, default=64
        Audio: samples between frames, at most ``n_fft``.
    **common
        The parameters every method shares (``featurekit.base.COMMON_PARAMS``).
        Defaults: ``max_epochs=10``, ``batch_size=64``. Optimizers: Adam,
        lr 5e-4, betas (0.9, 0.999) (AdaIN-VC's) for the model, lr 2e-3 for
        the critic, cosine decay.

    Attributes
    ----------
    modules_ : nn.ModuleDict
        ``backbone`` and ``content_head`` (the content encoder; for audio
        ``front_end``, the log-mel front end, and ``backbone``),
        ``style_encoder``, ``decoder``; with ``content_codebook`` also
        ``quantizer``; with groups also ``critic``, ``style_classifier`` and
        ``group_codes`` (the training rows' groups, during fit only) and
        ``content_eraser`` (LEACE's mean and matrix; the identity with
        ``content_erasure=None``).
    content_erasure_rank_ : int
        Directions the eraser removes from the content part (0 without groups
        or erasure; at most ``n_groups - 1``).
    feature_parts_ : dict
        ``{"content": slice, "style": slice}``: the parts' columns.
    group_values_ : ndarray or None
        The distinct groups seen in fit, sorted; None when fitted without groups.
    history_ : dict of list
        Per epoch: ``reconstruction`` (L1; for audio over valid frames, in
        standardized log-mel units); with groups also ``swap``,
        ``style_classification``, ``confusion`` (the encoder's loss against
        the critic; log(n_groups) when the critic is at chance),
        ``critic_accuracy`` (on training batches, before the encoder's
        update), ``loss_model`` and ``loss_critic``; without groups ``loss``.
        With ``content_codebook`` also ``vq_loss`` (codebook + 0.25 x
        commitment) and ``codebook_perplexity`` (exp of the entropy of the
        codes used in a batch: how many are in use, at most
        ``content_codebook``).

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

    N. Belrose, D. Schneider-Joseph, S. Ravfogel, R. Cotterell, E. Raff,
    S. Biderman. LEACE: Perfect linear concept erasure in closed form.
    NeurIPS 2023.

    D. Wu, H. Lee. One-shot Voice Conversion by Vector Quantization. ICASSP 2020.

    A. van den Oord, O. Vinyals, K. Kavukcuoglu. Neural Discrete Representation
    Learning. NeurIPS 2017.

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

    Audio: 16 clips of noise at 8 kHz, of different lengths.

    >>> clips = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in range(1000, 2600, 100)]
    >>> cs = ContentStyle(sample_rate=8000, backbone_kwargs={"width": 4}, content_channels=4,
    ...                   content_grid=2, style_dim=3, style_width=4, decoder_width=4,
    ...                   max_epochs=1, batch_size=8, random_state=0, verbose=0).fit(clips)
    >>> cs.transform(clips).shape
    (16, 19)
    >>> cs.recombine(content_of=clips[:2], style_of=clips[2:4]).shape  # (n, n_mels, frames)
    (2, 40, 14)
    >>> [w.shape for w in cs.recombine(content_of=clips[:2], style_of=clips[2:4],
    ...                                output="waveform")]
    [(1000,), (1100,)]
    """

    name = "content_style"
    family = "disentangling"
    modalities = ("image", "audio")
    y_usage = "ignored"
    verbs = ("recombine",)
    tiny_params = {"image": {"backbone": "content_encoder", "backbone_kwargs": {"width": 4},
                             "content_channels": 4, "content_grid": 2, "style_dim": 4,
                             "style_width": 4, "decoder_width": 8},
                   "audio": {"backbone_kwargs": {"width": 8}, "content_channels": 4,
                             "content_grid": 2, "style_dim": 4, "style_width": 4,
                             "decoder_width": 8, "sample_rate": 8000}}
    _parameter_constraints = {
        **FeatureExtractor._parameter_constraints,
        **AUDIO_CONSTRAINTS,
        "n_mels": [Interval(Integral, 1, None, closed="left")],
        "n_fft": [Interval(Integral, 2, None, closed="left")],
        "hop_length": [Interval(Integral, 1, None, closed="left")],
        "content_channels": [Interval(Integral, 1, None, closed="left")],
        "content_grid": [Interval(Integral, 1, None, closed="left")],
        "style_dim": [Interval(Integral, 1, None, closed="left")],
        "style_width": [Interval(Integral, 1, None, closed="left")],
        "decoder_width": [Interval(Integral, 1, None, closed="left")],
        "lambda_critic": [Interval(Real, 0, None, closed="left")],
        "critic_steps": [Interval(Integral, 1, None, closed="left")],
        "lambda_style": [Interval(Real, 0, None, closed="left")],
        "lambda_swap": [Interval(Real, 0, None, closed="left")],
        "content_codebook": [None, Interval(Integral, 2, None, closed="left")],
        "content_erasure": [None, StrOptions({"leace"})],
    }

    def __init__(self, backbone="content_encoder", *, content_channels=8, content_grid=4,
                 style_dim=16, style_width=32, decoder_width=64, lambda_critic=1.0,
                 critic_steps=5, lambda_style=1.0, lambda_swap=1.0, content_erasure="leace",
                 content_codebook=None, modality="auto",
                 sample_rate=16000, n_mels=40, n_fft=256, hop_length=64, backbone_kwargs=None,
                 weights=None,
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
        X : images (array-like, list of images or image paths) or audio
            The training images, or clips (Waveforms, a list of 1-D arrays, or
            an (n_samples, n_times) array with ``modality="audio"``).
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
        previous = getattr(self, "group_values_", None)
        try:
            self.group_values_ = values
            metadata = {} if groups is None else {"groups": np.asarray(groups)}
            self._fit(X, None, metadata)
            self._fit_eraser(X)
        except BaseException:
            if hasattr(self, "modules_"):  # a failed fit leaves the fitted model as it was
                self.group_values_ = previous
            raise
        finally:
            del self._groups
        if "group_codes" in self.modules_:  # the training rows' groups are not the model's
            self.modules_["group_codes"].codes = self.modules_["group_codes"].codes[:0]
        return self

    def recombine(self, content_of: Any, style_of: Any, *, output: str = "log_mel",
                  random_state: Any = 0) -> Any:
        """Decode the content of ``content_of`` in the style of ``style_of``.

        Parameters
        ----------
        content_of : images or audio, like the input of ``fit``
            The samples giving the content (what is drawn and where; what is said).
        style_of : images or audio, like the input of ``fit``
            The samples giving the style: one per sample of ``content_of``, or a
            single one for all of them.
        output : {"log_mel", "waveform"}, default="log_mel"
            Audio only: what to return (see Returns).
        random_state : int, RandomState instance or None, default=0
            Audio with ``output="waveform"`` only: seeds Griffin-Lim's initial phases.

        Returns
        -------
        X_new : ndarray, or list of ndarray
            Images: shaped, scaled and typed like ``content_of`` (at the fitted
            size; uint8 stays uint8).

            Audio, ``output="log_mel"``: float32 ndarray of shape
            (n_samples, n_mels, n_frames), the natural log of mel power (as
            :class:`featurekit.audio.LogMel`). Clip ``i`` of ``content_of``
            has ``featurekit.audio.n_frames(length_i, n_fft, hop_length)``
            valid frames; ``n_frames`` is the largest, and the frames beyond a
            clip's own are 0 (LogMel's masked frames).

            Audio, ``output="waveform"``: the log-mels made audible
            (``exp`` -> :func:`featurekit.audio.mel_to_linear` -> square root ->
            :func:`featurekit.audio.griffin_lim`, 32 iterations), at the
            fitted sample rate, each as long as its content clip, in the
            convention of ``content_of``: a list of 1-D arrays for a list,
            otherwise an (n_samples, n_times) array (zero beyond each clip's
            length); int16 for int16 input, float32 in [-1, 1] otherwise.
        """
        check_is_fitted(self, "modules_")
        self._check_modalities(content_of, style_of)
        audio = self.input_spec_.modality == "audio"
        if output not in AUDIO_OUTPUTS or (output != "log_mel" and not audio):
            allowed = f"one of {AUDIO_OUTPUTS}" if audio else "'log_mel' (the default) for images"
            close = difflib.get_close_matches(str(output), AUDIO_OUTPUTS, n=1) if audio else []
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ParameterError(f"recombine's output must be {allowed}; got {output!r}.{hint}")
        source = self._inputs(content_of, "content_of")
        styles = self._features(self._inputs(style_of, "style_of"), ["style"])
        if len(styles) == 1:
            styles = np.repeat(styles, source.n, axis=0)
        elif len(styles) != source.n:
            raise InputError(f"content_of has {source.n} samples and style_of {len(styles)}; "
                             "give one style sample per content sample, or a single one for all")
        if audio:
            return self._recombine_audio(content_of, source, styles, output, random_state)
        done = [0]

        def fn(modules: nn.ModuleDict, x: torch.Tensor) -> torch.Tensor:
            style = torch.from_numpy(styles[done[0]:done[0] + len(x)]).to(x.device)
            done[0] += len(x)
            _, _, content, _ = self._encode(modules, x)
            return self._decode(modules, content, style, None)

        return self._map_inputs(content_of, fn)

    def _recombine_audio(self, content_of: Any, source: inputs.Source, styles: np.ndarray,
                         output: str, random_state: Any) -> Any:
        """Log-mels (or waveforms) of ``source``'s content in ``styles``, batch by batch."""
        lengths = source.lengths.numpy()
        seed = assembly.resolve_seed(random_state)
        front: SpectrogramFrontEnd = self.modules_["front_end"]

        def fn(modules: nn.ModuleDict, x: AudioBatch) -> torch.Tensor:
            style = torch.from_numpy(styles[x.index.numpy()]).to(x.device)
            _, mask, content, _ = self._encode(modules, x)
            log_mel = front.to_log_mel(self._decode(modules, content, style, mask), mask)
            if output == "log_mel":
                return log_mel
            # Frames past a clip's end are 0 in the log-mel: silence them, or exp(0)
            # would spread loud noise over the clip's last samples.
            power = (log_mel.exp() - front.log_mel.eps).clamp_min(0.0)
            power = power.masked_fill(~mask[:, None, :], 0.0)
            linear = mel_to_linear(power, front.log_mel.filterbank)
            generator = torch.Generator(device=x.device).manual_seed(seed + int(x.index[0]))
            wave = griffin_lim(linear.sqrt(), n_fft=self.n_fft, hop_length=self.hop_length,
                               n_iter=GRIFFIN_LIM_ITER, length=x.wave.shape[1],
                               generator=generator)
            valid = torch.arange(wave.shape[1], device=x.device)[None, :] < x.lengths[:, None]
            return (wave * valid).clamp(-1.0, 1.0)

        if output == "log_mel":
            width = int(n_frames(torch.as_tensor(lengths), self.n_fft, self.hop_length).max())
            out = np.zeros((source.n, self.n_mels, width), np.float32)
        else:
            out = np.zeros((source.n, int(lengths.max())), np.float32)
        start = 0
        for block in self._iter_batches(source, fn, np.arange(source.n)):
            out[start:start + len(block), ..., :block.shape[-1]] = block
            start += len(block)
        if output == "log_mel":
            return out
        if source.scale != 1.0:  # int16 in, int16 out
            out = np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)
        if isinstance(content_of, (list, tuple)):
            return [row[:n] for row, n in zip(out, lengths)]
        return np.pad(out, ((0, 0), (0, content_of.shape[1] - out.shape[1])))

    # -- the method contract ---------------------------------------------------------
    def _fit_inputs(self, X):
        # Checked here, on every fit (a warm start skips build): one group per sample.
        source, state = super()._fit_inputs(X)
        if self._groups is not None:
            group_args.check_length(self._groups, source.n)
            if self.warm_start and "group_codes" in getattr(self, "modules_", {}):
                codes = self.modules_["group_codes"]
                codes.codes = self._groups.to(self.modules_["style_classifier"].weight.device)
        return source, state

    def build(self, spec):
        if spec.modality == "audio":
            modules = self._build_audio(spec)
        else:
            modules = self._build_image(spec)
        self._add_quantizer(modules)
        if self.group_values_ is not None:
            n_groups = len(self.group_values_)
            codes = getattr(self, "_groups", None)
            if codes is not None:
                group_args.check_length(codes, spec.n_samples)
            modules["critic"] = GroupCritic(self._content_dim(), n_groups)
            modules["style_classifier"] = nn.Linear(self.style_dim, n_groups)
            modules["group_codes"] = GroupCodes(
                codes if codes is not None else torch.zeros(0, dtype=torch.long))
            modules["content_eraser"] = LinearEraser(self._content_dim())
        return modules

    def _build_image(self, spec) -> nn.ModuleDict:
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
        return nn.ModuleDict({
            "backbone": backbone,
            "content_head": ContentHead(map_channels, self.content_channels),
            "style_encoder": StyleEncoder(spec.input_shape[0], self.style_width, self.style_dim),
            "decoder": AdaINDecoder(self.content_channels, map_size, tuple(spec.input_shape),
                                    self.style_dim, self.decoder_width),
        })

    def _build_audio(self, spec) -> nn.ModuleDict:
        owner = type(self).__name__
        if self.backbone != "content_encoder":
            raise ParameterError(
                f"{owner} builds its own 1-D content encoder for audio; backbone must be "
                f"'content_encoder' (its width from backbone_kwargs={{'width': ...}}). "
                f"Got {self.backbone!r} instead.")
        extra = set(self.backbone_kwargs or {}) - {"width"}
        if extra:
            raise ParameterError(f"For audio, {owner}'s backbone_kwargs take only 'width'; got "
                                 f"{sorted(extra)}")
        if self.hop_length > self.n_fft:
            raise ParameterError(
                f"The 'hop_length' parameter of {owner} must be at most n_fft={self.n_fft} "
                f"(frames must overlap or touch, or samples between them are never seen). "
                f"Got {self.hop_length} instead.")
        shortest = self.input_spec_.min_length
        if shortest is not None and shortest < self.n_fft:
            raise InputError(
                f"X has a clip of {shortest} samples, fewer than one STFT frame "
                f"(n_fft={self.n_fft}); drop or zero-pad clips shorter than {self.n_fft} "
                "samples, or use a smaller n_fft")
        width = int((self.backbone_kwargs or {}).get("width", 64))
        return nn.ModuleDict({
            "front_end": SpectrogramFrontEnd(self.sample_rate, self.n_fft, self.hop_length,
                                             self.n_mels),
            "backbone": AudioContentEncoder(self.n_mels, width, self.content_channels),
            "style_encoder": AudioStyleEncoder(self.n_mels, self.style_width, self.style_dim),
            "decoder": AudioAdaINDecoder(self.content_channels, self.n_mels, self.style_dim,
                                         self.decoder_width),
        })

    def _add_quantizer(self, modules: nn.ModuleDict) -> nn.ModuleDict:
        if self.content_codebook is not None:
            modules["quantizer"] = VectorQuantizer(self.content_codebook, self.content_channels)
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
        target, mask, content, style, vq = self._encode_all(modules, batch.x)
        reconstruction = self._decode_loss(modules, content, style, target, mask)
        loss = reconstruction
        logs = {"reconstruction": reconstruction.detach()}
        if vq is not None:
            loss = loss + vq[0]
            logs.update(vq_loss=vq[0].detach(), codebook_perplexity=vq[1])
        if "critic" in modules:
            g = modules["group_codes"].codes[batch.index]
            code = self._pool(content, mask)
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
            swap = self._decode_loss(modules, content, partner_style, target, mask)
            loss = (loss + self.lambda_critic * confusion + self.lambda_style * style_ce
                    + self.lambda_swap * swap)
            logs.update(swap=swap.detach(), style_classification=style_ce.detach(),
                        confusion=confusion.detach(),
                        critic_accuracy=critic_accuracy(logits.detach(), g))
        ctx.optimize("model", loss)
        ctx.log(**logs)

    def embed(self, modules, x):
        _, mask, content, style = self._encode(modules, x)
        content = self._pool(content, mask)
        if "content_eraser" in modules:  # the identity until fit ends
            content = modules["content_eraser"](content)
        return {"content": content, "style": style}

    # -- internals -------------------------------------------------------------------
    def _fit_eraser(self, X: Any) -> None:
        """Fit LEACE on the training rows' content codes (``content_erasure="leace"``)."""
        self.content_erasure_rank_ = 0
        if "content_eraser" not in self.modules_:
            return
        eraser: LinearEraser = self.modules_["content_eraser"]
        eraser.reset()  # the codes as trained, also on a warm start
        if self.content_erasure is None:
            return
        content = self._features(self._transform_inputs(X), ["content"])
        eraser.fit(torch.from_numpy(content), self._groups, len(self.group_values_))
        self.content_erasure_rank_ = int(eraser.rank)

    def _content_dim(self) -> int:
        # Images: a content_grid x content_grid grid; audio: content_grid ** 2 time spans.
        return self.content_channels * self.content_grid ** 2

    @classmethod
    def _encode(cls, modules: nn.ModuleDict, x: Any) -> tuple[torch.Tensor, torch.Tensor | None,
                                                             torch.Tensor, torch.Tensor]:
        """The model-space target (the image, or the standardized log-mel), the frame mask
        (None for images), the content map (quantized with ``content_codebook``) and the
        style code of a batch."""
        return cls._encode_all(modules, x)[:4]

    @staticmethod
    def _encode_all(modules: nn.ModuleDict, x: Any) -> tuple[Any, ...]:
        """:meth:`_encode`'s four, and the quantizer's (loss, perplexity), or None."""
        if isinstance(x, AudioBatch):
            target, mask = modules["front_end"](x)
            content = modules["backbone"](target, mask)
            style = modules["style_encoder"](target, mask)
        else:
            target, mask = x, None
            content = modules["content_head"](feature_map(modules["backbone"], x))
            style = modules["style_encoder"](x)
        vq = None
        if "quantizer" in modules:
            content, loss, perplexity = modules["quantizer"](content, mask)
            if mask is not None:
                content = content.masked_fill(~mask[:, None, :], 0.0)
            vq = (loss, perplexity)
        return target, mask, content, style, vq

    @staticmethod
    def _decode(modules: nn.ModuleDict, content: torch.Tensor, style: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return modules["decoder"](content, style)
        return modules["decoder"](content, style, mask)

    def _decode_loss(self, modules: nn.ModuleDict, content: torch.Tensor, style: torch.Tensor,
                     target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """L1 between ``target`` and its decoding, over valid frames only for audio."""
        out = self._decode(modules, content, style, mask)
        return reconstruction_loss(out, target) if mask is None else masked_l1(out, target, mask)

    def _pool(self, content: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return F.adaptive_avg_pool2d(content, self.content_grid).flatten(1)
        return segment_pool(content, mask, self.content_grid ** 2)

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
        fitted = self.input_spec_.modality
        kinds = {what: _modality_of(X, fitted, self.image_shape)
                 for what, X in (("content_of", content_of), ("style_of", style_of))}
        wrong = {what: kind for what, kind in kinds.items() if kind != fitted}
        if wrong:
            described = ", ".join(f"{what} is {kind}" for what, kind in kinds.items())
            raise InputError(f"recombine needs content_of and style_of of the modality "
                             f"{type(self).__name__} was fitted on ({fitted}); {described}")


def _modality_of(X: Any, fitted: str, image_shape: Any) -> str:
    """``"audio"``, ``"tabular"`` or ``"image"``: how a model fitted on ``fitted`` data
    reads ``X`` (a 2-D array is audio rows for an audio model, a table otherwise)."""
    if isinstance(X, inputs.Waveforms) or inputs.is_audio_list(X):
        return "audio"
    if inputs.is_tabular(X, image_shape):
        return "audio" if fitted == "audio" and image_shape is None else "tabular"
    return "image"


def _same_groups(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return len(a) == len(b) and bool(np.all(a == b))


def _describe(values: np.ndarray | None) -> str:
    return "none (unsupervised)" if values is None else repr(values.tolist())
