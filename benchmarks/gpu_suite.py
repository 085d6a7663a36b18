"""The GPU readiness suite's figures, one JSON: run by ``benchmarks/gpu_suite.sh``.

Parts, each recorded even when another fails (its error is kept instead):

``env``
    Python, torch, torchvision, faiss and lightly versions, the device.
``cuda_tests``
    The tests that need CUDA: those with a ``skipif`` marker whose reason
    names CUDA or a GPU, or with ``cuda``/``gpu`` in their name, from the test
    files that mention either (found at run time, so new CUDA tests join in).
    Without a CUDA device they are collected and reported skipped.
``training``
    Images per second of ``fit`` per method (``--methods``; every registered
    image method by default), under ``--precision`` (bf16 autocast on CUDA),
    against a raw torch loop running the very same forward and backward: the
    method's own modules, augmentations (``views``) and ``training_step``,
    called with a bare context (``backward`` then ``step`` of a plain torch
    optimizer), without featurekit's trainer (data adapter, batching,
    schedules, NaN check, logging). Both sides run ``--steps`` timed steps
    after ``--warmup`` untimed ones; the featurekit time includes ``fit``'s
    set-up. ``ratio`` is featurekit / raw images per second (1 = no
    overhead). SimCLR and BYOL are also timed in lightly where it is
    installed (``benchmarks/bench_lightly.py``'s loop, the same backbone).
``extraction``
    ``transform`` images per second against a hand-written torch inference
    loop (``benchmarks/bench_transform.py``'s), both float32 so the features
    must agree, plus featurekit under ``--precision``.
``faiss``
    Flat and IVF search with ``FeatureIndex`` on the GPU against the CPU, on
    ``--faiss-n`` vectors (the extracted features, tiled with small noise to
    that many), queries per second and recall@10 against exact search.
    "not measured" with the reason when faiss or its GPU support is missing.

Usage (``gpu_suite.sh run`` passes these)::

    python benchmarks/gpu_suite.py --device cuda --precision bf16 --backbone resnet18 \\
        --data-dir .gpu/data --json gpu-results/gpu_suite.json

``--device cpu`` with small ``--steps``/``--n`` checks the suite on a machine
without a GPU: the CUDA figures are then marked not measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import re
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import featurekit  # noqa: E402
from featurekit.method import Batch  # noqa: E402
from featurekit.registry import get_registry  # noqa: E402

#: Optimizer names of ``OptimizerSpec`` and the plain torch classes the raw loop uses.
TORCH_OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def not_measured(reason: str) -> dict:
    return {"status": "not measured", "reason": reason}


# -- env -----------------------------------------------------------------------
def environment(args) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "featurekit": featurekit.__version__, "device": args.device,
            "precision": args.precision, "backbone": args.backbone,
            "cuda_available": torch.cuda.is_available()}
    try:
        import torchvision
        info["torchvision"] = torchvision.__version__
    except ImportError:
        info["torchvision"] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    info["faiss"] = _faiss_state()[1]
    try:
        import lightly
        info["lightly"] = lightly.__version__
    except ImportError:
        info["lightly"] = None
    return info


def _faiss_state() -> tuple[object | None, str]:
    try:
        import faiss
    except ImportError:
        return None, "not installed"
    return faiss, f"{faiss.__version__}, {faiss.get_num_gpus()} GPU(s)"


# -- CUDA tests ----------------------------------------------------------------
class _CudaSelector:
    """pytest plugin: keep only the tests that need CUDA (see the module docstring)."""

    needs = re.compile(r"cuda|gpu", re.IGNORECASE)

    def pytest_collection_modifyitems(self, config, items):
        keep, drop = [], []
        for item in items:
            reasons = [str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif")]
            wanted = self.needs.search(item.name) or any(self.needs.search(r) for r in reasons)
            (keep if wanted else drop).append(item)
        items[:] = keep
        config.hook.pytest_deselected(items=drop)


def cuda_tests(args) -> dict:
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                   if re.search(r"cuda|get_num_gpus", p.read_text(), re.IGNORECASE))
    report = Path(args.json).with_name("cuda_tests.xml")
    started = time.perf_counter()
    code = subprocess.call([sys.executable, __file__, "--run-cuda-tests", str(report), *files],
                           cwd=ROOT)
    counts = {"files": files, "exit_code": code, "wall_s": time.perf_counter() - started}
    if report.exists():
        import xml.etree.ElementTree as ET

        suite = ET.parse(report).getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        for key in ("tests", "failures", "errors", "skipped"):
            counts[key] = int(suite.get(key, 0))
        counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] \
            - counts["skipped"]
    if not torch.cuda.is_available():
        counts["status"] = "not measured: no CUDA device (the tests were collected and skipped)"
    return counts


def _run_cuda_tests(report: str, files: list[str]) -> int:
    import pytest

    return int(pytest.main(["-q", "-p", "no:cacheprovider", "-rs", f"--junitxml={report}",
                            *files], plugins=[_CudaSelector()]))


# -- training throughput -------------------------------------------------------
def load_images(args) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10's test images, shuffled (the file is grouped by class)."""
    with np.load(Path(args.data_dir) / "cifar10_test.npz", allow_pickle=False) as d:
        order = np.random.default_rng(0).permutation(len(d["y"]))
        return d["x"][order], d["y"][order]


def image_methods(args) -> list[str]:
    if args.methods:
        return args.methods
    methods = get_registry().methods
    # "pretrained" is a frozen backbone: nothing to train.
    return sorted(n for n, m in methods.items()
                  if "image" in m.cls.modalities and n != "pretrained")


def estimator(method: str, args, max_epochs: int):
    cls = get_registry().method(method).cls
    params = {"max_epochs": max_epochs, "batch_size": args.batch_size, "random_state": 0,
              "verbose": 0, "device": args.device, "precision": args.precision}
    if cls().backbone == "small_cnn":  # methods with an architecture of their own keep it
        params["backbone"] = args.backbone
    return featurekit.create(method, **params)


def fit_arguments(method: str, y: np.ndarray) -> dict:
    cls = get_registry().method(method).cls
    if cls.y_usage == "target":
        return {"y": y}
    # Metadata methods (CycleGAN's domains): two groups, enough to time a step.
    return {name: y % 2 for name in getattr(cls, "metadata_args", ())}


class _BareContext:
    """The least a ``training_step`` needs: backward and step, nothing else."""

    def __init__(self, optimizers: dict):
        self.optimizers = optimizers
        self.epoch = self.step = 0
        self.progress = 0.0
        self.rank, self.world_size = 0, 1

    def optimize(self, name: str, loss: torch.Tensor) -> None:
        opt = self.optimizers[name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def log(self, **values) -> None:
        pass


def raw_loop(est, x: np.ndarray, y: np.ndarray, fit_kwargs: dict, args, steps: int) -> float:
    """Seconds for ``steps`` steps of a bare loop over the fitted ``est``'s own parts."""
    device = torch.device(args.device)
    modules = copy.deepcopy(est.modules_).to(device).train()
    specs = est.optimizers(modules)
    optimizers = {}
    for name, spec in specs.items():
        extra = {"momentum": spec.momentum} if spec.optimizer == "sgd" else {}
        optimizers[name] = TORCH_OPTIMIZERS[spec.optimizer](
            spec.params, lr=spec.lr, weight_decay=spec.weight_decay, **extra)
    views = est.views(est._build_spec(None))
    images = torch.from_numpy(x).to(device)
    mean = torch.tensor(est.input_spec_.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(est.input_spec_.std, device=device).view(1, -1, 1, 1)
    codes = {k: torch.as_tensor(np.unique(v, return_inverse=True)[1], device=device)
             for k, v in fit_kwargs.items()}
    generator = torch.Generator(device=device).manual_seed(0)
    ctx = _BareContext(optimizers)
    autocast = args.precision == "bf16"
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0)).to(device)

    def step(i: int) -> None:
        index = order[(i * args.batch_size) % len(images):][:args.batch_size]
        base = images[index].permute(0, 3, 1, 2).float().div(255)
        batch = Batch(x=(base - mean) / std,
                      views=[(v(base, generator) - mean) / std for v in views], index=index,
                      y=codes["y"][index] if "y" in codes else None,
                      metadata={k: c[index] for k, c in codes.items() if k != "y"})
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            est.training_step(modules, batch, ctx)

    for i in range(args.warmup):
        step(i)
    sync(device)
    started = time.perf_counter()
    for i in range(steps):
        step(args.warmup + i)
    sync(device)
    return time.perf_counter() - started


def training(args, x_all: np.ndarray, y_all: np.ndarray) -> dict:
    results = {"steps": max(args.steps, 4), "warmup": args.warmup,
               "batch_size": args.batch_size}
    steps = max(args.steps, 4)  # CycleGAN needs a batch of each domain to fit at all
    n = args.batch_size * steps
    x = np.ascontiguousarray(np.resize(x_all, (n, *x_all.shape[1:])))
    y = np.resize(y_all, n)
    # At least 4 batches: CycleGAN's fit needs a batch of each of its two domains.
    warm_n = args.batch_size * max(4, args.warmup)
    for method in image_methods(args):
        try:
            kwargs = fit_arguments(method, y)
            warm_kwargs = {k: v[:warm_n] for k, v in kwargs.items()}
            estimator(method, args, 1).fit(x[:warm_n], **warm_kwargs)  # warm-up (cudnn, allocs)
            est = estimator(method, args, 1)
            sync(torch.device(args.device))
            started = time.perf_counter()
            est.fit(x, **kwargs)
            sync(torch.device(args.device))
            fk_s = time.perf_counter() - started
            raw_s = raw_loop(est, x, y, kwargs, args, steps)
            row = {"featurekit_images_per_s": n / fk_s, "raw_torch_images_per_s": n / raw_s,
                   "ratio": raw_s / fk_s, "backbone": est.backbone}
            row["lightly"] = lightly_throughput(method, x_all, args, est, n)
        except Exception as exc:  # one method's failure must not hide the others' figures
            row = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                   "traceback": traceback.format_exc(limit=4)}
        results[method] = row
        print(f"  train {method:22s} " + (
            f"featurekit {row['featurekit_images_per_s']:9.1f} img/s, raw torch "
            f"{row['raw_torch_images_per_s']:9.1f} img/s, ratio {row['ratio']:.2f}"
            if "ratio" in row else row["error"]), flush=True)
    return results


def lightly_throughput(method: str, x: np.ndarray, args, est, n: int) -> dict | float:
    import bench_lightly

    if method not in bench_lightly.PEER_METHODS:
        return not_measured("no lightly version of this method in bench_lightly.py")
    if bench_lightly.lightly_version() is None:
        return not_measured("lightly not installed")
    peer_args = argparse.Namespace(device=args.device, backbone=args.backbone,
                                   batch_size=args.batch_size, num_workers=args.num_workers,
                                   precision=args.precision)
    data = np.ascontiguousarray(np.resize(x, (n, *x.shape[1:])))
    mean, std = bench_lightly.channel_stats(x)
    run = bench_lightly.LightlyRun(method, data, peer_args, 0, 1, est.optimizer_params_,
                                   mean, std)
    run.run(args.warmup)
    run = bench_lightly.LightlyRun(method, data, peer_args, 0, 1, est.optimizer_params_,
                                   mean, std)
    sync(torch.device(args.device))
    started = time.perf_counter()
    run.run(args.steps)
    sync(torch.device(args.device))
    return {"images_per_s": args.batch_size * args.steps / (time.perf_counter() - started)}


# -- extraction throughput -----------------------------------------------------
def extraction(args, x_all: np.ndarray) -> tuple[dict, np.ndarray]:
    from bench_transform import plain_torch_loop

    x = np.ascontiguousarray(np.resize(x_all, (args.n, *x_all.shape[1:])))
    est = featurekit.create("pretrained", backbone=args.backbone, random_state=0, verbose=0,
                            device=args.device, precision="32",
                            inference_batch_size=args.inference_batch_size).fit(x[:256])
    spec, model = est.input_spec_, est.backbone_
    fast = featurekit.create("pretrained", backbone=args.backbone, random_state=0, verbose=0,
                             device=args.device, precision=args.precision,
                             inference_batch_size=args.inference_batch_size).fit(x[:256])
    runs = {
        "featurekit_fp32": lambda: est.transform(x),
        "raw_torch_fp32": lambda: plain_torch_loop(model, x, spec.mean, spec.std,
                                                   spec.working_shape, args.inference_batch_size),
    }
    if args.precision != "32":
        runs[f"featurekit_{args.precision}"] = lambda: fast.transform(x)
    results, outputs = {"n": args.n, "batch_size": args.inference_batch_size}, {}
    for name, run in runs.items():
        outputs[name] = run()  # warm-up
        times = []
        for _ in range(args.repeats):
            sync(torch.device(args.device))
            started = time.perf_counter()
            run()
            sync(torch.device(args.device))
            times.append(time.perf_counter() - started)
        results[f"{name}_images_per_s"] = args.n / min(times)
    ours, theirs = outputs["featurekit_fp32"], outputs["raw_torch_fp32"]
    results["features_match_fp32"] = bool(ours.shape == theirs.shape
                                          and np.allclose(ours, theirs, atol=1e-3))
    results["ratio_fp32"] = (results["featurekit_fp32_images_per_s"]
                             / results["raw_torch_fp32_images_per_s"])
    print("  extract: " + ", ".join(f"{k[:-13]} {v:.0f} img/s" for k, v in results.items()
                                    if k.endswith("_images_per_s")), flush=True)
    return results, ours


# -- faiss ----------------------------------------------------------------------
def faiss_search(args, features: np.ndarray) -> dict:
    faiss, state = _faiss_state()
    if faiss is None:
        return not_measured("faiss not installed")
    from featurekit.index import FeatureIndex

    rng = np.random.default_rng(0)
    base = np.resize(features, (args.faiss_n, features.shape[1]))
    base = base + rng.normal(0, 0.05 * float(features.std()), base.shape).astype(np.float32)
    queries = features[rng.choice(len(features), args.faiss_queries)] + rng.normal(
        0, 0.05 * float(features.std()), (args.faiss_queries, features.shape[1])).astype(np.float32)
    results = {"n": args.faiss_n, "dim": int(base.shape[1]), "queries": args.faiss_queries,
               "faiss": state, "data": "extracted features tiled with 5% Gaussian noise"}
    devices = ["cpu"]
    if faiss.get_num_gpus() > 0 and torch.cuda.is_available():
        devices.append("cuda")
    else:
        results["gpu"] = not_measured("faiss has no GPU support here (faiss.get_num_gpus() == 0)"
                                      if faiss.get_num_gpus() == 0 else "no CUDA device")
    truth = None
    for device in devices:
        # Beside a GPU the CPU is only the exact baseline, timed on fewer queries.
        kinds = [("flat", [None])] + ([] if device == "cpu" and len(devices) > 1
                                      else [("ivf", [1, 8, 32, 128])])
        for kind, efforts in kinds:
            q = queries[:1000] if device == "cpu" and len(devices) > 1 else queries
            started = time.perf_counter()
            index = FeatureIndex(kind, device=device, random_state=0).fit(base)
            row = {"build_s": time.perf_counter() - started, "device_": index.device_,
                   "points": []}
            for effort in efforts:
                if effort is not None:
                    index.set_params(nprobe=effort)
                index.search(q[:10], 10)  # warm-up
                started = time.perf_counter()
                _, found = index.search(q, 10)
                seconds = time.perf_counter() - started
                truth = found if truth is None else truth
                # Over the queries both searched: the GPU's flat search against the CPU's.
                recall = float(np.mean([len(set(a) & set(b)) / 10
                                        for a, b in zip(found, truth)]))
                if kind == "flat" and len(found) > len(truth):
                    truth = found  # exact neighbours of every query, for the GPU's IVF
                row["points"].append({"nprobe": effort, "queries": len(q),
                                      "qps": len(q) / seconds, "recall_at_10": recall})
            results[f"{kind}_{device}"] = row
            print(f"  faiss {kind:4s} on {device}: " + ", ".join(
                f"nprobe {p['nprobe']}: {p['qps']:.0f} q/s recall {p['recall_at_10']:.3f}"
                for p in row["points"]), flush=True)
            del index
    return results


# -- main -----------------------------------------------------------------------
def part(results: dict, name: str, fn, *a):
    started = time.perf_counter()
    try:
        value = fn(*a)
    except Exception as exc:
        value = {"status": "error", "error": f"{type(exc).__name__}: {exc}",
                 "traceback": traceback.format_exc(limit=6)}
        print(f"  {name} failed: {value['error']}", flush=True)
    results[name] = value
    results.setdefault("wall_s", {})[name] = time.perf_counter() - started
    return value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--run-cuda-tests"]:  # the pytest child of the cuda_tests part
        return _run_cuda_tests(argv[1], argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precision", default="bf16", help='"bf16" or "32"')
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--methods", nargs="*", default=None,
                        help="methods to time (default: every registered image method)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30, help="timed training steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed training steps")
    parser.add_argument("--num-workers", type=int, default=8, help="lightly's DataLoader")
    parser.add_argument("--n", type=int, default=20000, help="images extracted")
    parser.add_argument("--inference-batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--faiss-n", type=int, default=1_000_000)
    parser.add_argument("--faiss-queries", type=int, default=10_000)
    parser.add_argument("--data-dir", default=str(ROOT / ".gpu" / "data"))
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=("cuda_tests", "training", "extraction", "faiss"))
    parser.add_argument("--json", default=str(ROOT / "gpu-results" / "gpu_suite.json"))
    args = parser.parse_args(argv)
    if args.precision not in ("bf16", "32"):
        parser.error(f"--precision must be bf16 or 32; got {args.precision}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results = {"args": vars(args), "env": environment(args)}
    print(json.dumps(results["env"]), flush=True)
    x, y = load_images(args)
    cuda = args.device.startswith("cuda") and torch.cuda.is_available()
    if "cuda_tests" not in args.skip:
        part(results, "cuda_tests", cuda_tests, args)
    if "training" not in args.skip:
        part(results, "training", training, args, x, y)
    features = None
    if "extraction" not in args.skip:
        value = part(results, "extraction", lambda: extraction(args, x))
        if isinstance(value, tuple):
            results["extraction"], features = value
    if "faiss" not in args.skip:
        if features is None:
            results["faiss"] = not_measured("no features: the extraction part did not run")
        else:
            part(results, "faiss", faiss_search, args, features)
    if not cuda:
        results["cuda_figures"] = not_measured(
            f"device {args.device!r}: training, extraction and faiss figures above are this "
            "device's, not a GPU's")
    results["total_s"] = time.perf_counter() - started
    Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(f"wrote {args.json} in {results['total_s']:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
