"""Disentangling family: what ContentStyle's parts know, on MNIST + USPS pooled and on
spoken digits (FSDD).

``--images`` runs the image section, ``--speech`` the speech section; with
neither, both. The speech section is described after the image section.

CPU budget (OMP_NUM_THREADS=1, the shared 2-core machine, the defaults
below): the closing lines of a run print each fit's minutes (on 2026-12-07:
images 3.3 minutes, speech 3.0; on 2026-11-30 other jobs' load on this box
made smaller runs take 9.9 and 7.3); ``--quick`` checks the script in a few
minutes.

Data (../shared/data/README.md): MNIST (mnist_test.npz, 28 px, the standard
8,000 / 2,000 split) and USPS (usps.npz, 16 px, its ``split`` column: 7,291
training and 2,007 test images), pooled as one list of images with
``image_size=28`` (USPS is upsampled to 28 px by featurekit's rule). The
factors are the digit (10 classes) and the domain (MNIST or USPS).

ContentStyle is fitted on the training images twice: weakly supervised,
``fit(X, groups=domain)`` (critic on content, group classifier and
within-group style swap on style), and unsupervised, ``fit(X)``. Printed, for
each, the "what each part knows" table (featurekit.evaluate.parts_table: one
fixed linear probe, StandardScaler + LogisticRegression(C=1, max_iter=2000),
trained on the training images' features, scored on the test images'), with
the baselines beside: raw pixels (at 28 px, in [0, 1]) and an untrained
ContentStyle's parts (the same networks at initialization). Chance is the
majority-class rate of the test labels. For the weakly supervised fit it also
prints the content part as ``transform`` gives it (LEACE-erased of the
groups, ``content_erasure="leace"``, the default) and before the eraser, read
by the linear probe and by an RBF SVC: LEACE's guarantee is linear only.
Targets (issue 8, weakly supervised mode): content->digit >= 0.90,
content->domain <= 0.65, style->domain >= 0.95. A missed target is reported
as measured; the probe is never tuned.

A recombination grid is saved to ``--out`` (default benchmarks/out/):
``content_style_recombination.png``: MNIST test digits drawn in the styles
of USPS test digits, and USPS digits drawn in MNIST styles (rows: content
source, style source, recombination).

Run::

    OMP_NUM_THREADS=1 python benchmarks/bench_disentangling.py --images [--out DIR] [--quick] [--dev]

CPU settings: ``content_encoder`` of width 16, decoder width 64, style
encoder width 16, batch 64, 5 epochs each, the method's other defaults
(``lambda_critic=1``). Speech: content encoder width 32, ``content_channels=32``,
``style_dim=8``, style encoder 16, decoder 64, batch 64, 20 epochs each,
``lambda_critic=0`` (no critic: on the dev split the critic cost the content
code its digit and the conversions their words, and LEACE removes what a
linear probe could read of the speaker). ``--dev`` evaluates on a split of
the *training* data instead of the test sets: the settings were chosen that
way (3 seeds for speech), never on the test sets.

Speech (``--speech``)
---------------------
FSDD (fsdd.npz: 3,000 one-word clips at 8 kHz, 6 speakers, digits 0-9), its
official split (``index < 5``: 300 test clips; the other 2,700 train), given
as ``Waveforms(x, lengths=np.minimum(length, 8000), sample_rate=8000)`` so
that padding is masked. Log-mel front end: 40 bands, n_fft 256, hop 64.
Printed, with the fixed probe (``parts_table``):

- two baselines: (a) the per-band mean and std of the masked log-mel (80
  numbers: the global statistics an AdaIN style code carries) and (b) the
  instance-normalized log-mel (per clip and band, masked; an unsupervised
  content code) pooled like ContentStyle's content part, into 16 equal spans
  of the clip's valid frames (640 numbers);
- the unsupervised ``fit(X)`` and weakly supervised ``fit(X, groups=speaker)``
  parts tables (content / style x digit / speaker, with chance). Targets
  (issue 8, weakly supervised): content->digit >= 0.85, content->speaker <=
  0.40, style->speaker >= 0.95, style->digit <= 0.30;
- conversion: each test clip ``a``'s content with the style of a test clip
  of another speaker ``b`` (drawn with a fixed seed), as a log-mel
  (``recombine``); a speaker classifier trained on baseline (a) of the real
  train log-mels and a digit classifier trained on the real train log-mels
  pooled into 16 spans (640 numbers; the same StandardScaler +
  LogisticRegression(C=1, max_iter=2000)) read the recombined log-mels.
  Targets: speaker b at least 60%, a's digit at least 60%. A second digit
  reading, by a classifier on baseline (b), is printed beside it (not the
  target's classifier, fixed before the test run).

``--dev`` trains on the clips with ``index >= 10`` and evaluates on those with
``5 <= index < 10`` (both from the training takes): the speech settings were
chosen that way, never on the test clips.

    OMP_NUM_THREADS=1 python benchmarks/bench_disentangling.py --speech [--dev]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

import featurekit
from featurekit.audio import AudioBatch, LogMel, masked_instance_norm, masked_mean_std, n_frames
from featurekit.data import Waveforms
from featurekit.data.inputs import resize_shorter_and_crop
from featurekit.evaluate import parts_table
from featurekit_disentangling.audio_networks import segment_pool

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_adversarial import load as load_domains  # noqa: E402  (the same MNIST/USPS splits)

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "out"
A, B = "mnist", "usps"
TARGETS = {("content", "digit"): ">= 0.90", ("content", "domain"): "<= 0.65",
           ("style", "domain"): ">= 0.95"}


def resize(x: np.ndarray, size: int) -> np.ndarray:
    """uint8 (n, H, W) images resized to (n, size, size) by featurekit's image_size rule."""
    t = torch.from_numpy(np.ascontiguousarray(x))[:, None]
    return resize_shorter_and_crop(t, size)[:, 0].numpy()


def load(data_dir: Path, dev: bool) -> dict:
    """Pooled train and evaluation images (a list), digits and domains (evaluation: the
    test sets, or with ``dev`` a split of the training images): the splits of
    bench_adversarial.py."""
    split = load_domains(data_dir, dev)
    d = {}
    for name in ("train", "test"):
        xm, xu = split[f"a_{name}"], split[f"b_{name}"]
        d[f"x_{name}"] = list(xm) + list(xu)
        d[f"digit_{name}"] = np.r_[split[f"ya_{name}"], split[f"yb_{name}"]]
        d[f"domain_{name}"] = np.array([A] * len(xm) + [B] * len(xu))
        d[f"{A}_{name}"], d[f"{B}_{name}"] = xm, xu
    return d


def pixels(images: list) -> np.ndarray:
    """Pooled images at 28 px as rows in [0, 1]."""
    rows = [resize(np.stack([im]), 28)[0] if im.shape != (28, 28) else im for im in images]
    return np.stack(rows).reshape(len(rows), -1).astype(np.float32) / 255


def make(args, epochs: int) -> featurekit.FeatureExtractor:
    return featurekit.create(
        "content_style", backbone_kwargs={"width": args.width},
        decoder_width=args.decoder_width, style_width=args.style_width, image_size=28,
        max_epochs=epochs, batch_size=args.batch_size, device=args.device,
        random_state=args.seed, verbose=0,
        **({} if args.lambda_critic is None else {"lambda_critic": args.lambda_critic}))


def grid_png(model, d: dict, path: Path, n: int = 10) -> None:
    """Rows: MNIST content, USPS style, recombination; then USPS content, MNIST style, ..."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for (cname, content), (sname, style) in (
            ((A, d[f"{A}_test"][:n]), (B, resize(d[f"{B}_test"][:n], 28))),
            ((B, resize(d[f"{B}_test"][:n], 28)), (A, d[f"{A}_test"][n:2 * n]))):
        mixed = model.recombine(content_of=content, style_of=style)
        rows += [(f"{cname.upper()} content", content), (f"{sname.upper()} style", style),
                 (f"{cname.upper()} in {sname.upper()} style", mixed)]
    fig, axes = plt.subplots(len(rows), 1, figsize=(n * 0.8 + 1.8, len(rows) * 0.85))
    for ax, (label, images) in zip(axes, rows):
        ax.imshow(np.concatenate(list(images), axis=1), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("ContentStyle recombine(content_of=row 1, style_of=row 2)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table_for(name: str, model, d: dict, baselines: dict) -> str:
    factors_train = {"digit": d["digit_train"], "domain": d["domain_train"]}
    factors_test = {"digit": d["digit_test"], "domain": d["domain_test"]}
    table = parts_table(model, d["x_train"], d["x_test"], factors_train=factors_train,
                        factors_test=factors_test, baselines=baselines)
    lines = [f"### {name}", str(table)]
    for (part, factor), target in TARGETS.items():
        lines.append(f"  {part} -> {factor}: {table.accuracy(part, factor):.3f} "
                     f"(target {target})")
    return "\n".join(lines)


def erasure_table(model, x_train, x_test, factors_train: dict, factors_test: dict,
                  group: str) -> str:
    """The content part as ``transform`` gives it (LEACE-erased of the groups) and as it
    was before the eraser, read by the fixed linear probe and by a non-linear one (an
    RBF SVC on standardized features, sklearn's defaults): LEACE's guarantee is linear."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    before = copy.deepcopy(model)
    before.modules_["content_eraser"].reset()
    lines = [f"### the content part before and after LEACE (erased: {group}; "
             f"{model.content_erasure_rank_} directions)",
             "| content part | probe | " + " | ".join(factors_train) + " |",
             "| :-- | :-- |" + " --: |" * len(factors_train)]
    for label, est in (("as transform gives it (erased)", model), ("before the eraser", before)):
        part = est.part
        est.set_params(part="content")
        tr, te = est.transform(x_train), est.transform(x_test)
        est.set_params(part=part)
        for name, make_probe in (("linear (parts_table's)", probe),
                                 ("RBF SVC", lambda: make_pipeline(StandardScaler(), SVC()))):
            scores = [make_probe().fit(tr, factors_train[f]).score(te, factors_test[f])
                      for f in factors_train]
            lines.append(f"| {label} | {name} | " + " | ".join(f"{v:.3f}" for v in scores)
                         + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", action="store_true", help="run the image section")
    parser.add_argument("--speech", action="store_true", help="run the speech section")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--width", type=int, default=16, help="content encoder width")
    parser.add_argument("--style-width", type=int, default=16)
    parser.add_argument("--decoder-width", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lambda-critic", type=float, default=None,
                        help="ContentStyle's lambda_critic (default: the method's)")
    parser.add_argument("--n-train", type=int, default=None,
                        help="train on at most this many images per domain (default: all)")
    parser.add_argument("--skip-unsupervised", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 1,000 images each")
    parser.add_argument("--dev", action="store_true",
                        help="evaluate on a split of the training data, not the test sets")
    add_speech_args(parser)
    args = parser.parse_args()
    both = not (args.images or args.speech)
    if args.images or both:
        run_images(args)
    if args.speech or both:
        run_speech(args)


def run_images(args) -> None:
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    d = load(args.data_dir, args.dev)
    sizes = {"train": args.n_train, "test": None}
    if args.quick:
        args.epochs = 1
        sizes = {"train": 1000, "test": 300}
    keep = {s: np.r_[np.flatnonzero(d[f"domain_{s}"] == A)[:n],
                     np.flatnonzero(d[f"domain_{s}"] == B)[:n]]
            for s, n in sizes.items()}
    if args.quick or args.n_train is not None:
        for s, rows in keep.items():
            d[f"x_{s}"] = [d[f"x_{s}"][i] for i in rows]
            d[f"digit_{s}"], d[f"domain_{s}"] = d[f"digit_{s}"][rows], d[f"domain_{s}"][rows]
    print(f"{'dev split' if args.dev else 'test sets'}: {len(d['x_train'])} train / "
          f"{len(d['x_test'])} eval images (MNIST + USPS)", flush=True)

    untrained = make(args, 0).fit(d["x_train"])
    raw = (pixels(d["x_train"]), pixels(d["x_test"]))
    baselines = {"raw pixels": raw}
    for part in ("content", "style"):
        cols = untrained.feature_parts_[part]
        tr, te = untrained.transform(d["x_train"]), untrained.transform(d["x_test"])
        baselines[f"untrained {part}"] = (tr[:, cols], te[:, cols])

    t0 = time.perf_counter()
    weak = make(args, args.epochs).fit(d["x_train"], groups=d["domain_train"])
    weak_minutes = (time.perf_counter() - t0) / 60
    print(f"weakly supervised fit: {weak_minutes:.1f} min; history "
          f"{ {k: [round(v, 3) for v in vs] for k, vs in weak.history_.items()} }", flush=True)
    grid = args.out / "content_style_recombination.png"
    grid_png(weak, d, grid)
    tables = [table_for("weakly supervised, groups=domain", weak, d, baselines)]
    print(tables[-1], flush=True)
    tables.append(erasure_table(weak, d["x_train"], d["x_test"],
                                {"digit": d["digit_train"], "domain": d["domain_train"]},
                                {"digit": d["digit_test"], "domain": d["domain_test"]},
                                "domain"))
    print(tables[-1], flush=True)

    unsup_minutes = 0.0
    if not args.skip_unsupervised:
        t0 = time.perf_counter()
        unsup = make(args, args.epochs).fit(d["x_train"])
        unsup_minutes = (time.perf_counter() - t0) / 60
        grid_png(unsup, d, args.out / "content_style_recombination_unsupervised.png")
        tables.append(table_for("unsupervised", unsup, d, baselines))
        print(tables[-1], flush=True)

    minutes = (time.perf_counter() - started) / 60
    print(f"\nContentStyle {args.epochs} epochs: weakly supervised {weak_minutes:.1f} min, "
          f"unsupervised {unsup_minutes:.1f} min; total {minutes:.1f} min on {args.device}; "
          f"{'DEV SPLIT' if args.dev else 'test sets'}\n")
    print("\n\n".join(tables))
    print(f"\nrecombination grid: {grid}")


SPEECH_TARGETS = {("content", "digit"): ">= 0.85", ("content", "speaker"): "<= 0.40",
                  ("style", "speaker"): ">= 0.95", ("style", "digit"): "<= 0.30"}
SR, N_MELS, N_FFT, HOP, SPANS = 8000, 40, 256, 64, 16


def add_speech_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--speech-epochs", type=int, default=20)
    parser.add_argument("--speech-width", type=int, default=32,
                        help="audio content encoder width")
    parser.add_argument("--speech-style-width", type=int, default=16)
    parser.add_argument("--speech-decoder-width", type=int, default=64)
    parser.add_argument("--speech-batch-size", type=int, default=64)
    parser.add_argument("--speech-lambda-critic", type=float, default=0.0,
                        help="ContentStyle's lambda_critic (0: no critic; LEACE still erases the "
                             "speaker from the content part)")
    parser.add_argument("--speech-lambda-swap", type=float, default=None)
    parser.add_argument("--speech-content-codebook", type=int, default=None,
                        help="ContentStyle's content_codebook (default: the method's)")
    parser.add_argument("--speech-critic-steps", type=int, default=None,
                        help="ContentStyle's critic_steps (default: the method's)")
    parser.add_argument("--speech-content-channels", type=int, default=32,
                        help="ContentStyle's content_channels")
    parser.add_argument("--speech-style-dim", type=int, default=8,
                        help="ContentStyle's style_dim")
    parser.add_argument("--speech-lambda-style", type=float, default=None)
    parser.add_argument("--speech-skip-unsupervised", action="store_true")


def load_speech(data_dir: Path, dev: bool) -> dict:
    """FSDD's official split (index < 5 is test), or with ``dev`` train index >= 10 and
    evaluate on 5 <= index < 10."""
    with np.load(data_dir / "fsdd.npz") as f:
        x, digit, speaker = f["x"], f["y"], f["speaker"]
        length, take = np.minimum(f["length"], x.shape[1]), f["index"]
    test = (take >= 5) & (take < 10) if dev else take < 5
    train = take >= 10 if dev else take >= 5
    d = {}
    for name, rows in (("train", np.flatnonzero(train)), ("test", np.flatnonzero(test))):
        d[f"x_{name}"] = Waveforms(x[rows], lengths=length[rows], sample_rate=SR)
        d[f"digit_{name}"], d[f"speaker_{name}"] = digit[rows], speaker[rows]
    return d


def log_mels(waves: Waveforms) -> tuple[torch.Tensor, torch.Tensor]:
    """The masked 40-band log-mel (n_fft 256, hop 64) of every clip, and the mask."""
    wave = torch.from_numpy(np.asarray(waves.data, dtype=np.float32) / 32768)
    return LogMel(SR, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS)(
        AudioBatch(wave, torch.from_numpy(waves.lengths)))


def band_stats(spec: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Baseline (a): per-band masked mean and std (80 numbers)."""
    mean, std = masked_mean_std(spec, mask)
    return torch.cat([mean, std], dim=1).numpy()


def normalized_spans(spec: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Baseline (b): the masked instance-normalized log-mel pooled into 16 spans (640)."""
    return segment_pool(masked_instance_norm(spec, mask), mask, SPANS).numpy()


def spans(spec: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """The digit classifier's input: the log-mel pooled into 16 spans (640 numbers)."""
    return segment_pool(spec, mask, SPANS).numpy()


def probe():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=1, max_iter=2000))


def make_speech(args, epochs: int):
    extra = {k: v for k, v in (("lambda_critic", args.speech_lambda_critic),
                               ("lambda_swap", args.speech_lambda_swap),
                               ("content_codebook", args.speech_content_codebook),
                               ("critic_steps", args.speech_critic_steps),
                               ("content_channels", args.speech_content_channels),
                               ("style_dim", args.speech_style_dim),
                               ("lambda_style", args.speech_lambda_style))
             if v is not None}
    return featurekit.create(
        "content_style", sample_rate=SR, n_mels=N_MELS, n_fft=N_FFT, hop_length=HOP,
        backbone_kwargs={"width": args.speech_width}, style_width=args.speech_style_width,
        decoder_width=args.speech_decoder_width, max_epochs=epochs,
        batch_size=args.speech_batch_size, device=args.device, random_state=args.seed,
        verbose=0, **extra)


def speech_table(name: str, model, d: dict, baselines: dict) -> tuple[str, object]:
    table = parts_table(model, d["x_train"], d["x_test"],
                        factors_train={"digit": d["digit_train"], "speaker": d["speaker_train"]},
                        factors_test={"digit": d["digit_test"], "speaker": d["speaker_test"]},
                        baselines=baselines)
    lines = [f"### {name}", str(table)]
    for (part, factor), target in SPEECH_TARGETS.items():
        lines.append(f"  {part} -> {factor}: {table.accuracy(part, factor):.3f} "
                     f"(target {target})")
    return "\n".join(lines), table


def conversion(model, d: dict, train_spec, seed: int) -> str:
    """recombine(content of a, style of a clip of another speaker b) on the evaluation
    clips, read by classifiers trained on the real train log-mels."""
    spec, mask = train_spec
    speaker_clf = probe().fit(band_stats(spec, mask), d["speaker_train"])
    digit_clf = probe().fit(spans(spec, mask), d["digit_train"])
    # A second reading, not the target's: a digit classifier on baseline (b).
    digit_in_clf = probe().fit(normalized_spans(spec, mask), d["digit_train"])
    speaker, digit = d["speaker_test"], d["digit_test"]
    rng = np.random.default_rng(seed)
    partner = np.array([rng.choice(np.flatnonzero(speaker != s)) for s in speaker])
    waves = d["x_test"]
    lengths = torch.from_numpy(waves.lengths)
    rows = {}
    for label, style_rows in (("converted (style of b)", partner),
                              ("reconstructed (own style)", np.arange(len(speaker)))):
        mel = model.recombine(content_of=waves, style_of=waves[style_rows])
        mel = torch.from_numpy(mel)
        m = torch.arange(mel.shape[-1])[None] < n_frames(lengths, N_FFT, HOP)[:, None]
        rows[label] = (speaker_clf.predict(band_stats(mel, m)) == speaker[style_rows],
                       digit_clf.predict(spans(mel, m)) == digit,
                       digit_in_clf.predict(normalized_spans(mel, m)) == digit)
    real = log_mels(waves)
    rows["real test clips"] = (speaker_clf.predict(band_stats(*real)) == speaker,
                               digit_clf.predict(spans(*real)) == digit,
                               digit_in_clf.predict(normalized_spans(*real)) == digit)
    lines = ["### conversion: recombine(content_of=a, style_of=b), b of another speaker",
             "| log-mels | speaker = style's speaker | digit = content's digit | "
             "digit (classifier on (b)) |",
             "| :-- | --: | --: | --: |"]
    for label, (spk_ok, dig_ok, dig_in_ok) in rows.items():
        lines.append(f"| {label} | {spk_ok.mean():.3f} | {dig_ok.mean():.3f} | "
                     f"{dig_in_ok.mean():.3f} |")
    lines.append("  targets: converted speaker = b >= 0.60, digit = a's >= 0.60 (speaker "
                 "classifier: per-band mean + std of the log-mel; digit classifier: log-mel "
                 "pooled into 16 spans; both trained on the real train clips)")
    return "\n".join(lines)


def run_speech(args) -> None:
    started = time.perf_counter()
    d = load_speech(args.data_dir, args.dev)
    print(f"speech, {'dev split' if args.dev else 'official split'}: {len(d['x_train'])} "
          f"train / {len(d['x_test'])} eval clips (FSDD)", flush=True)
    train_spec, test_spec = log_mels(d["x_train"]), log_mels(d["x_test"])
    baselines = {"(a) log-mel band mean + std": (band_stats(*train_spec), band_stats(*test_spec)),
                 "(b) instance-normalized log-mel, 16 spans": (normalized_spans(*train_spec),
                                                               normalized_spans(*test_spec))}
    tables, minutes = [], {}
    t0 = time.perf_counter()
    weak = make_speech(args, args.speech_epochs).fit(d["x_train"], groups=d["speaker_train"])
    minutes["weakly supervised fit"] = (time.perf_counter() - t0) / 60
    print(f"weakly supervised fit: {minutes['weakly supervised fit']:.1f} min; history "
          f"{ {k: [round(v, 3) for v in vs] for k, vs in weak.history_.items()} }", flush=True)
    text, _ = speech_table("speech, weakly supervised, groups=speaker", weak, d, baselines)
    tables.append(text)
    print(text, flush=True)
    tables.append(erasure_table(weak, d["x_train"], d["x_test"],
                                {"digit": d["digit_train"], "speaker": d["speaker_train"]},
                                {"digit": d["digit_test"], "speaker": d["speaker_test"]},
                                "speaker"))
    print(tables[-1], flush=True)
    tables.append(conversion(weak, d, train_spec, args.seed))
    print(tables[-1], flush=True)
    if not args.speech_skip_unsupervised:
        t0 = time.perf_counter()
        unsup = make_speech(args, args.speech_epochs).fit(d["x_train"])
        minutes["unsupervised fit"] = (time.perf_counter() - t0) / 60
        text, _ = speech_table("speech, unsupervised", unsup, d, baselines)
        tables.append(text)
        print(text, flush=True)
    total = (time.perf_counter() - started) / 60
    print(f"\nspeech: ContentStyle {args.speech_epochs} epochs; "
          + ", ".join(f"{k} {v:.1f} min" for k, v in minutes.items())
          + f"; total {total:.1f} min on {args.device}; "
          + ("DEV SPLIT" if args.dev else "official test split") + "\n")
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
