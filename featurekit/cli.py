"""The ``featurekit`` command line: fit a method, extract features, evaluate, search them.

Every command's docstring is its ``--help``. A user's mistake (an unknown
method or parameter, unusable data) ends with exit status 2 and one line
saying what to change, never a traceback. Plugins add commands through the
``featurekit_register_commands(cli)`` hook, called by :func:`get_cli`.
"""

from __future__ import annotations

import ast
import contextlib
import os
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

import featurekit
from featurekit.exceptions import (
    InputError,
    ParameterError,
    PluginError,
    StoreError,
    TrainingError,
    UnknownNameError,
)

#: Where labels come from, for the errors of commands that need them.
LABELS_HELP = ("give an .npz with labels 'y', a folder with one sub-folder of images per class, "
               "or a .txt list of '<path><TAB><label>' lines")


@contextlib.contextmanager
def user_errors(ctx: click.Context | None = None) -> Iterator[None]:
    """Turn featurekit's errors about the user's input into one-line click errors."""
    from sklearn.utils._param_validation import InvalidParameterError

    try:
        yield
    except (InputError, ParameterError, UnknownNameError, InvalidParameterError) as exc:
        raise click.UsageError(_one_line(exc), ctx=ctx) from None
    except (PluginError, StoreError, TrainingError) as exc:
        raise click.ClickException(_one_line(exc)) from None


def _one_line(message: Any) -> str:
    return " ".join(str(message).split())


class Command(click.Command):
    """A command whose featurekit errors become usage errors (see :func:`user_errors`)."""

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors(ctx):
            return super().invoke(ctx)


class Group(click.Group):
    """The ``featurekit`` group; commands built with ``@cli.command()`` are :class:`Command`."""

    command_class = Command

    def invoke(self, ctx: click.Context) -> Any:
        with user_errors(ctx):  # plugin commands that are plain click commands
            return super().invoke(ctx)


# -- shared options: defined once, stacked onto the commands that take them --------------

def _stack(*decorators: Callable) -> Callable:
    def apply(f: Callable) -> Callable:
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


def _parse_params(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict:
    params = {}
    for item in values:
        name, sep, text = item.partition("=")
        if not sep or not name.strip().isidentifier():
            raise click.BadParameter(f"expected NAME=VALUE (e.g. temperature=0.2); got {item!r}",
                                     ctx=ctx, param=param)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        params[name.strip()] = value
    return params


def _output_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not Path(value).resolve().parent.is_dir():
        raise click.BadParameter(f"the folder of {value!r} does not exist", ctx=ctx, param=param)
    return value


def _data_argument(f: Callable) -> Callable:
    return click.argument("data", type=click.Path(exists=True))(f)


def _model_argument(f: Callable) -> Callable:
    return click.argument("model", type=click.Path(exists=True, dir_okay=False))(f)


_backbone = click.option("--backbone", help="Backbone name (see `featurekit plugins`), e.g. "
                         "small_cnn for images or mlp for tables.")
_max_epochs = click.option("--max-epochs", type=click.IntRange(min=0),
                           help="Training epochs (the method's default if not given).")
_batch_size = click.option("--batch-size", type=click.IntRange(min=1),
                           help="Samples per batch (the method's default if not given).")
_random_state = click.option("--random-state", type=int,
                             help="Seed for a reproducible result.")
_device = click.option("--device", help="'auto' (default: cuda, then mps, then cpu), 'cpu', "
                       "'cuda', 'cuda:N' or 'mps'.")
_quiet = click.option("-q", "--quiet", is_flag=True, help="No progress bar (verbose=0).")
_param = click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
                      callback=_parse_params,
                      help="Any parameter of the method, as a Python literal or a plain string "
                           "(repeatable): --param temperature=0.2 "
                           "--param backbone_kwargs=\"{'width': 8}\".")

#: The estimator options of ``fit``, stacked in one place.
fit_options = _stack(_backbone, _max_epochs, _batch_size, _random_state, _device, _quiet, _param)
#: The inference options of ``extract`` and ``evaluate``.
inference_options = _stack(_batch_size, _device)


# -- the group -------------------------------------------------------------------------

_CONTEXT = {"help_option_names": ["-h", "--help"]}


@click.group("featurekit", cls=Group, context_settings=_CONTEXT)
@click.version_option(featurekit.__version__, "-V", "--version", prog_name="featurekit")
def cli() -> None:
    """featurekit: learn deep features and extract them, with method plugins.

    \b
    A typical session:
      featurekit plugins
      featurekit fit simclr images/ -o model.pt --max-epochs 20
      featurekit extract model.pt images/ -o features.h5
      featurekit evaluate model.pt labelled.npz
      featurekit index features.h5 -o features.index
      featurekit search features.index query.jpg --grid neighbours.png
      featurekit cluster features.h5 -k 20 --grid clusters.png
    """


@cli.command()
@click.option("--check", "check_name", metavar="METHOD",
              help="Run the conformance kit on METHOD and print each check's result; "
                   "exit status 1 if any fails.")
def plugins(check_name: str | None) -> None:
    """List the installed methods, backbones, augmentations, and plugins that failed.

    With --check METHOD, run featurekit's conformance kit (featurekit.testing)
    on that method instead: tiny fits on CPU, a few seconds per check.
    """
    from featurekit.evaluate import format_table
    from featurekit.registry import get_registry

    if check_name is not None:
        _check(check_name)
        return
    registry = get_registry()
    methods = [{"method": m.name, "family": m.family, "package": m.distribution,
                "version": m.version, "api": "-" if m.source.api is None else m.source.api}
               for _, m in sorted(registry.methods.items())]
    backbones = [{"backbone": b.name, "modality": b.modality,
                  "pretrained weights": ", ".join(b.pretrained) or "-",
                  "package": b.source.distribution} for _, b in sorted(registry.backbones.items())]
    augmentations = [{"augmentation": a.name, "modality": a.modality,
                      "package": a.source.distribution, "description": a.description}
                     for _, a in sorted(registry.augmentations.items())]
    click.echo(f"Methods (featurekit {featurekit.__version__}, plugin API "
               f"{featurekit.API_VERSION})\n\n{format_table(methods) or '(none installed)'}\n")
    click.echo(f"Backbones\n\n{format_table(backbones) or '(none installed)'}\n")
    click.echo(f"Augmentations\n\n{format_table(augmentations) or '(none installed)'}")
    for title, rows in (("Plugins that failed to load", registry.failures),
                        ("Plugins loaded with a warning", registry.notices)):
        if rows:
            table = [{"plugin": f.plugin, "package": f.distribution, "problem": f.error}
                     for f in rows]
            click.echo(f"\n{title}\n\n{format_table(table)}")


def _check(name: str) -> None:
    from featurekit.evaluate import format_table
    from featurekit.testing import check_method

    results = check_method(featurekit.create(name), raise_on_failure=False)
    rows = [{"check": r.name, "result": "PASS" if r.passed else "FAIL",
             "message": _one_line(r.message)} for r in results]
    failed = sum(not r.passed for r in results)
    click.echo(format_table(rows))
    click.echo(f"\n{name}: {len(results) - failed} passed, {failed} failed")
    if failed:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("method")
@_data_argument
@click.option("-o", "--output", "model", required=True, callback=_output_file,
              type=click.Path(dir_okay=False), help="Where to save the fitted model.")
@fit_options
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Train data-parallel on N local processes (gloo on CPU, NCCL on GPU); "
                   "--batch-size stays the global batch.")
@click.option("--sync-bn", is_flag=True,
              help="With several processes: batch norm over the global batch.")
def fit(method: str, data: str, model: str, backbone: str | None, max_epochs: int | None,
        batch_size: int | None, random_state: int | None, device: str | None, quiet: bool,
        nproc: int, sync_bn: bool, params: dict[str, Any]) -> None:
    """Fit METHOD on DATA and save the model to -o MODEL.

    DATA is an .npz with an array 'x' (and labels 'y'), a folder of images
    (one sub-folder per class gives labels), or a .txt list of image paths
    (optionally '<path><TAB><label>'). Labels are used only by methods that
    learn from them: as targets (supervised), or as the one metadata
    argument of a method that takes one (cyclegan's domains=). Tables need a
    tabular backbone
    (--backbone mlp). Example:

    \b
      featurekit fit simclr digits.npz -o simclr.pt --backbone mlp \\
          --max-epochs 20 --param temperature=0.2

    --nproc N trains on N processes, as `torchrun --nproc-per-node N -m
    featurekit fit ...` does (supervised, simclr and moco_v2 so far).
    """
    from featurekit import distributed

    est = featurekit.create(method)
    params = _merge_params(est, params, backbone=backbone, max_epochs=max_epochs,
                           batch_size=batch_size, random_state=random_state, device=device,
                           verbose=0 if quiet else None)
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if nproc > 1 and not launched:
        _prepare_fit(method, data, params)  # usage errors here, before any process starts
        distributed.launch(_fit_and_save, nproc, (method, data, model, params),
                           sync_batchnorm=sync_bn)
        return
    joined = launched and distributed.world_size() == 1
    if joined:  # started by torchrun
        distributed.init(sync_batchnorm=sync_bn)
    try:
        _fit_and_save(method, data, model, params)
    finally:
        if joined:
            distributed.shutdown()


def _prepare_fit(method: str, data: str, params: dict[str, Any]) -> tuple[Any, Any, Any, dict]:
    """The estimator with ``params`` set, DATA loaded, and what fit takes besides X."""
    from featurekit.data.files import load_data

    est = featurekit.create(method)
    loaded = load_data(data)
    if loaded.modality == "audio":
        if "audio" not in est.modalities:
            raise click.UsageError(f"DATA holds audio, which {method} does not support yet (it "
                                   f"takes {', '.join(est.modalities)} data)")
        # DATA says what it is; --param modality= / sample_rate= still win.
        params = {"modality": "audio", "sample_rate": loaded.sample_rate, **params}
    est.set_params(**params)
    y, metadata = None, {}
    if est.y_usage == "target":
        if loaded.y is None:
            raise click.UsageError(f"{method} learns from labels, and DATA has none; "
                                   f"{LABELS_HELP}")
        y = loaded.y
    elif est.y_usage == "metadata":  # DATA's labels are the one metadata argument
        wanted = ", ".join(f"{name}=" for name in est.metadata_args)
        if loaded.y is None or len(est.metadata_args) != 1:
            raise click.UsageError(f"{method} learns from {wanted} labels, given as DATA's "
                                   f"labels, and DATA has none; {LABELS_HELP}")
        metadata = {est.metadata_args[0]: loaded.y}
    return est, loaded, y, metadata


def _fit_and_save(method: str, data: str, model: str, params: dict[str, Any]) -> None:
    """Fit, then (on the main process) save and print the summary."""
    from featurekit import distributed

    est, loaded, y, metadata = _prepare_fit(method, data, params)
    started = time.perf_counter()
    est.fit(loaded.X, y, **metadata)
    seconds = time.perf_counter() - started
    if not distributed.is_main():
        return
    est.save(model)
    epochs = f"{est.n_epochs_} epoch{'' if est.n_epochs_ == 1 else 's'}"
    summary = [f"{est.name}: {len(loaded)} samples", epochs]
    if distributed.world_size() > 1:
        summary.append(f"{distributed.world_size()} processes")
    if est.history_.get("loss"):
        summary.append(f"final loss {est.history_['loss'][-1]:.4g}")
    summary.append(f"{seconds:.1f} s")
    click.echo(f"{', '.join(summary)}; saved {model}")


def _merge_params(est: Any, params: dict[str, Any], **options: Any) -> dict[str, Any]:
    """--param values plus the convenience options given; unknown names are usage errors."""
    known = est.get_params(deep=False)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise click.UsageError(f"{est.name} has no parameter {', '.join(map(repr, unknown))}; "
                               f"its parameters are: {', '.join(known)}")
    for name, value in options.items():
        if value is None:
            continue
        if name in params and params[name] != value:
            raise click.UsageError(f"{name} is given twice, as an option and as --param, with "
                                   "different values")
        params[name] = value
    return params


def _parse_shard(ctx: click.Context, param: click.Parameter, value: str | None
                 ) -> tuple[int, int] | str | None:
    if value is None or value == "env":
        return value
    rank, sep, world = value.partition("/")
    if sep and rank.isdigit() and world.isdigit() and int(rank) < int(world):
        return int(rank), int(world)
    raise click.BadParameter(f"expected I/N with 0 <= I < N (e.g. 0/4), or 'env'; got "
                             f"{value!r}", ctx=ctx, param=param)


@cli.command()
@_model_argument
@_data_argument
@click.option("-o", "--output", required=True, callback=_output_file,
              type=click.Path(dir_okay=False), help="The HDF5 feature store to write.")
@inference_options
@click.option("--part-size", type=click.IntRange(min=1), default=16384, show_default=True,
              help="Rows per part: an interruption costs at most one part's work.")
@click.option("--dtype", type=click.Choice(["float32", "float16"]), default="float32",
              show_default=True, help="Storage dtype of the features.")
@click.option("--compression", type=click.Choice(["lzf", "gzip"]),
              help="Compress the features (they rarely shrink much; default: none).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Extract with N processes on this machine, each writing every N-th part.")
@click.option("--shard", callback=_parse_shard, metavar="I/N",
              help="Write only shard I of N (I = 0..N-1), e.g. one per machine sharing "
                   "OUTPUT's folder; 'env' takes RANK/WORLD_SIZE from torchrun.")
@_quiet
def extract(model: str, data: str, output: str, batch_size: int | None, device: str | None,
            part_size: int, dtype: str, compression: str | None, nproc: int,
            shard: tuple[int, int] | str | None, quiet: bool) -> None:
    """Extract the features of DATA with MODEL into an HDF5 feature store.

    MODEL is a file written by `featurekit fit` (or est.save); DATA is
    what `fit` takes, of the same kind and shape as MODEL was fitted on.

    Features are streamed to disk batch by batch, in parts of --part-size
    rows committed atomically: OUTPUT is an index file and OUTPUT.parts/
    holds the parts (keep them together). If the extraction is
    interrupted, run the same command again: it redoes only the missing
    parts. A store made by another model or from other data is refused,
    never overwritten.

    The store holds the features, ids 0..n-1, the labels of DATA (names of
    string labels go in the metadata as label_names), the file names of
    image files as keys, and provenance metadata (method, parameters,
    backbone, a sha256 of the weights, versions, model, input, time).

    --nproc N runs N worker processes that write one store together
    (threads per process: the cores / N). --shard I/N runs one of them, for
    N processes on machines sharing OUTPUT's folder: run the same command
    with I = 0 .. N-1; the store is complete when all have ended, and an
    interrupted shard resumes by running it again.
    """
    from featurekit.data.files import load_data
    from featurekit.extraction import resolve_shard
    from featurekit.store_parts import scan
    from featurekit.store import FeatureStore, StoreError
    from featurekit.store import extract as extract_features

    if nproc > 1 and shard is not None:
        raise click.UsageError("--nproc starts the shards itself; give --nproc or --shard, "
                               "not both.")
    if nproc > 1:
        options = {"--part-size": part_size, "--dtype": dtype, "--batch-size": batch_size,
                   "--compression": compression}
        _extract_in_processes([model, data, "-o", output, "-q", *[
            str(v) for name, value in options.items() if value is not None
            for v in (name, value)]], output, nproc, device, quiet)
        return
    est = _load_model(model, batch_size, device)
    loaded = load_data(data)
    labels, names = _integer_labels(loaded.y)
    metadata = {"model": str(Path(model).resolve()), "input": str(Path(data).resolve()),
                "input_description": loaded.description}
    if names is not None:
        metadata["label_names"] = names
    mine = None if shard is None else resolve_shard(shard)
    if mine is not None:
        _spread_over_gpus(est, mine[0])
    resumed = sum(part.rows for part in scan(output)
                  if mine is None or part.index % mine[1] == mine[0])
    try:
        extract_features(est, loaded.X, output, labels=labels, keys=loaded.keys,
                         metadata=metadata, part_size=part_size, dtype=dtype,
                         compression=compression, shard=mine, verbose=0 if quiet else 1)
    except StoreError as exc:
        raise click.ClickException(_one_line(exc)) from None
    with FeatureStore(output) as store:
        (n_rows, width), complete = store.shape, store.complete
    if resumed:
        of = f"of {n_rows}" if mine is None else f"of shard {mine[0]}/{mine[1]}'s"
        click.echo(f"resumed: {resumed} {of} rows were already extracted")
    if complete:
        click.echo(f"{n_rows} rows x {width} features -> {output}")
    else:
        click.echo(f"shard {mine[0]}/{mine[1]} done; {n_rows} rows x {width} features -> "
                   f"{output} so far, complete when every shard has ended")


def _spread_over_gpus(est: Any, rank: int) -> None:
    """Shard ``rank`` of a model on a plain ``cuda`` device goes to GPU ``rank % n_gpus``."""
    import torch

    from featurekit.assembly import resolve_device

    device = resolve_device(est.device)
    if device.type == "cuda" and device.index is None and torch.cuda.device_count() > 1:
        est.set_params(device=f"cuda:{rank % torch.cuda.device_count()}")


def _extract_in_processes(args: list[str], output: str, nproc: int, device: str | None,
                          quiet: bool) -> None:
    """Run ``featurekit extract ARGS --shard I/N`` for I = 0 .. N-1 and wait for them all,
    showing the rows they have committed (read from the index) as progress."""
    import json
    import signal
    import subprocess
    import sys
    import tempfile

    import h5py
    from tqdm.auto import tqdm

    from featurekit.store import FeatureStore
    from featurekit.store_parts import INDEX_ATTR

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = max(1, (cores or 1) // nproc)
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # torch reads them at start-up
        given = env.get(name, "")
        env[name] = str(min(threads, int(given)) if given.isdigit() and int(given) else threads)
    command = [sys.executable, "-c", "from featurekit.cli import main; main()", "extract", *args,
               *(["--device", device] if device else [])]
    logs, workers = [], []
    bar = tqdm(unit="rows", desc=f"extract {Path(output).name}", leave=False,
               disable=quiet or not sys.stderr.isatty())
    try:
        for rank in range(nproc):
            logs.append(tempfile.TemporaryFile("w+"))
            workers.append(subprocess.Popen([*command, "--shard", f"{rank}/{nproc}"],
                                            stdout=subprocess.DEVNULL, stderr=logs[-1],
                                            env=env))
        while any(w.poll() is None for w in workers):
            with contextlib.suppress(OSError, KeyError, ValueError):
                with h5py.File(output, "r") as index:
                    layout = json.loads(index.attrs[INDEX_ATTR])
                bar.total = layout["n_samples"]
                bar.update(sum(p["stop"] - p["start"] for p in layout["parts"]) - bar.n)
            time.sleep(0.5)
    except KeyboardInterrupt:
        for worker in workers:
            with contextlib.suppress(OSError):
                worker.send_signal(signal.SIGINT)
        for worker in workers:
            worker.wait()
        raise
    finally:
        bar.close()
    failed = {}
    for rank, (worker, log) in enumerate(zip(workers, logs)):
        log.seek(0)
        lines = log.read().splitlines()
        log.close()
        if worker.returncode:
            errors = [line[len("Error: "):] for line in lines if line.startswith("Error: ")]
            why = errors[-1] if errors else (lines[-1] if lines else
                                             f"exit status {worker.returncode}")
            failed.setdefault(why, []).append(f"{rank}/{nproc}")
    if failed:
        usage = all(w.returncode == 2 for w in workers if w.returncode)
        message = "; ".join(f"shard{'s' if len(r) > 1 else ''} {', '.join(r)}: {why}"
                            for why, r in failed.items())
        if not usage:
            message += (" The parts committed are kept: run the same command again to "
                        "complete the store.")
        raise (click.UsageError if usage else click.ClickException)(message)
    with FeatureStore(output) as store:
        n_rows, width = store.shape
    click.echo(f"{n_rows} rows x {width} features -> {output} ({nproc} processes)")


def _load_model(path: str, batch_size: int | None, device: str | None) -> Any:
    est = featurekit.load(path)
    if batch_size is not None:
        est.set_params(inference_batch_size=batch_size)
    if device is not None:
        est.set_params(device=device)
    return est


def _integer_labels(y: Any) -> tuple[Any, list[str] | None]:
    """Labels as int64 codes for the store, and the names behind them when they are strings."""
    import numpy as np

    if y is None:
        return None, None
    y = np.asarray(y)
    if y.dtype.kind in "iub":
        return y.astype(np.int64), None
    try:
        return np.asarray([int(v) for v in y], dtype=np.int64), None
    except (TypeError, ValueError):
        names, codes = np.unique(y.astype(str), return_inverse=True)
        return codes.astype(np.int64), names.tolist()


@cli.command()
@_model_argument
@_data_argument
@click.option("--test-size", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="Fraction of DATA held out for testing.")
@click.option("--random-state", type=int, default=0, show_default=True,
              help="Seed of the train/test split.")
@inference_options
def evaluate(model: str, data: str, test_size: float, random_state: int,
             batch_size: int | None, device: str | None) -> None:
    """Score MODEL's features of labelled DATA: kNN and linear-probe accuracy.

    MODEL is a file written by `featurekit fit`; DATA is what `fit` takes,
    with labels.

    DATA is split into train and test parts (stratified by label); a
    weighted kNN classifier and a logistic-regression probe learn on the
    train features and are scored on the test features. Raw pixels are
    scored too as the baseline, when DATA is an array.
    """
    import numpy as np
    from sklearn.model_selection import train_test_split

    from featurekit.data.files import load_data
    from featurekit.evaluate import evaluate as evaluate_extractors
    from featurekit.evaluate import format_table

    est = _load_model(model, batch_size, device)
    loaded = load_data(data)
    if loaded.y is None:
        raise click.UsageError(f"evaluate needs labels, and DATA has none; {LABELS_HELP}")
    y = np.asarray(loaded.y)
    try:
        train, test = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y,
                                       random_state=random_state)
    except ValueError as exc:
        raise click.UsageError(f"cannot split DATA into train and test parts: {exc}") from None
    if loaded.is_files:
        extractors = {est.name: est}
        X_train, X_test = [loaded.X[i] for i in train], [loaded.X[i] for i in test]
        click.echo("(no raw-pixel baseline: DATA is image files of possibly different sizes)")
    elif loaded.modality == "audio":
        extractors = {est.name: est}
        X_train, X_test = loaded.X[train], loaded.X[test]
        click.echo("(no raw baseline: raw waveform samples are not comparable features)")
    else:
        raw = "raw pixels" if loaded.X.ndim >= 3 else "raw inputs"
        extractors = {raw: "raw", est.name: est}
        X_train, X_test = loaded.X[train], loaded.X[test]
    rows = evaluate_extractors(extractors, X_train, y[train], X_test, y[test])
    click.echo(f"{loaded.description}: {len(train)} train, {len(test)} test samples\n")
    click.echo(format_table(rows))


@cli.command()
@click.option("--quick", is_flag=True, help="A tiny run (600 images, 1 epoch) to check the set-up.")
@click.option("-o", "--output-dir", default="featurekit-demo", show_default=True,
              type=click.Path(file_okay=False), help="Where the model, features and plot go.")
def demo(quick: bool, output_dir: str) -> None:
    """Fit SimCLR on the shipped MNIST digits, extract, index and search the features,
    and compare their accuracy with raw pixels and the untrained backbone."""
    from featurekit.demo import main as run_demo

    run_demo(quick=quick, output_dir=output_dir, echo=click.echo)


# -- plugin commands and the entry point -----------------------------------------------

# index, search, cluster and plot: imported here, before the built-ins are recorded.
from featurekit import cli_search  # noqa: E402,F401
from featurekit import cli_plot  # noqa: E402,F401
from featurekit import cli_plot_translations  # noqa: E402,F401

_BUILTIN_COMMANDS = dict(cli.commands)


def get_cli() -> click.Group:
    """The ``featurekit`` group with the commands that installed plugins add.

    Each plugin's ``featurekit_register_commands`` is called on its own: one
    that fails is reported as a warning and the others still add theirs. A
    plugin cannot replace a built-in command.
    """
    from featurekit.registry import PluginWarning, get_registry

    cli.commands = dict(_BUILTIN_COMMANDS)
    hook = get_registry().plugin_manager.hook.featurekit_register_commands
    for impl in reversed(hook.get_hookimpls()):  # registration order
        try:
            impl.function(cli=cli)
        except Exception as exc:
            warnings.warn(f"featurekit plugin {impl.plugin_name!r} failed to add its commands "
                          f"and they were skipped: {type(exc).__name__}: {exc}",
                          PluginWarning, stacklevel=2)
        for name, command in _BUILTIN_COMMANDS.items():
            if cli.commands.get(name) is not command:
                cli.commands[name] = command
                warnings.warn(f"featurekit plugin {impl.plugin_name!r} tried to replace the "
                              f"built-in command {name!r}; the built-in was kept",
                              PluginWarning, stacklevel=2)
    return cli


def main(argv: list[str] | None = None) -> None:
    """Run the ``featurekit`` console script."""
    get_cli().main(args=argv, prog_name="featurekit")
