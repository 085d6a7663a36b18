"""The ``plot`` commands: pictures drawn through a fitted model's verbs.

``featurekit plot reconstructions|samples|traversal`` use only the verbs a
method declares (``reconstruct``, ``sample``, ``inverse_transform``), never
its losses or modules, so any method plugin with those verbs gets the
pictures. ``featurekit.cli`` imports this module before it records its
built-in commands, so ``plot`` counts as a built-in (a plugin cannot replace
it); more subcommands join the group with ``@plot.command()``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import click
import numpy as np

from featurekit.cli import (
    Group,
    _data_argument,
    _load_model,
    _model_argument,
    cli,
    inference_options,
)
from featurekit.cli_search import _grid_file

#: Grey level (in [0, 1]) of the hidden patches in a masked input.
MASK_GREY = 0.5


@cli.group("plot", cls=Group)
def plot() -> None:
    """Draw pictures with a fitted model: reconstructions, samples, latent traversals.

    \b
      featurekit plot reconstructions model.pt digits.npz -o reconstructions.png
      featurekit plot samples vae.pt -o samples.png
      featurekit plot traversal vae.pt digits.npz -o traversal.png
    """


_grid_output = click.option("-o", "--output", required=True, callback=_grid_file,
                            type=click.Path(dir_okay=False), help="The PNG file to write.")
_random_state = click.option("--random-state", type=int, default=0, show_default=True,
                             help="Seed of the images picked, and of the model's draws.")


# -- the commands ----------------------------------------------------------------------

@plot.command("reconstructions")
@_model_argument
@_data_argument
@_grid_output
@click.option("-n", "--n-images", type=click.IntRange(min=1), default=8, show_default=True,
              help="How many images of DATA to draw.")
@_random_state
@inference_options
def reconstructions(model: str, data: str, output: str, n_images: int, random_state: int,
                    batch_size: int | None, device: str | None) -> None:
    """Draw images of DATA over their reconstructions.

    MODEL is a file written by `featurekit fit` of a method that can
    `reconstruct` (autoencoder, denoising_autoencoder, vae, mae); DATA is
    what `fit` takes. Methods that hide part of the input (mae) get a
    middle row with the masked input, hidden patches in grey.
    """
    est = _load_model(model, batch_size, device)
    _require(est, "reconstruct", "reconstructions")
    X, formats = _pick_images(est, data, n_images, random_state)
    options = {k: v for k, v in (("random_state", random_state), ("return_mask", True))
               if _accepts(est.reconstruct, k)}
    out = est.reconstruct(X, **options)
    rebuilt, mask = out if options.get("return_mask") else (out, None)
    originals = _images01(X, **formats)
    rows, labels = [_pictures(originals)], ["input"]
    if mask is not None:
        hidden = np.asarray(mask, dtype=bool)[:, None]
        rows.append(_pictures(np.where(hidden, MASK_GREY, originals)))
        labels.append("masked")
    rows.append(_pictures(_images01(rebuilt, **formats)))
    labels.append("rebuilt")
    _draw(rows, output, labels)


@plot.command("samples")
@_model_argument
@_grid_output
@click.option("-n", "--n-samples", type=click.IntRange(min=1), default=32, show_default=True,
              help="How many samples to draw.")
@click.option("--columns", type=click.IntRange(min=1), default=8, show_default=True,
              help="Samples per row of the grid.")
@_random_state
@inference_options
def samples(model: str, output: str, n_samples: int, columns: int, random_state: int,
            batch_size: int | None, device: str | None) -> None:
    """Draw new inputs that MODEL generates.

    MODEL is a file written by `featurekit fit` of a method that can
    `sample` (vae); the grid has --columns samples per row.
    """
    est = _load_model(model, batch_size, device)
    _require(est, "sample", "samples")
    drawn = _pictures(_images01(est.sample(n_samples, random_state=random_state),
                                **_fit_format(est)))
    _draw([drawn[i:i + columns] for i in range(0, len(drawn), columns)], output)


@plot.command("traversal")
@_model_argument
@_data_argument
@_grid_output
@click.option("--index", type=click.IntRange(min=0), default=0, show_default=True,
              help="The image of DATA whose code is varied.")
@click.option("--components", type=click.IntRange(min=1), default=5, show_default=True,
              help="How many latent components to vary, one row each: those that vary "
                   "most over DATA (a VAE leaves some unused), or the first with --in-order.")
@click.option("--in-order", is_flag=True, help="Vary the first components, not the most "
                                               "varied ones.")
@click.option("--steps", type=click.IntRange(min=2), default=9, show_default=True,
              help="Values per component, one column each.")
@click.option("--span", type=click.FloatRange(min=0, min_open=True), default=2.5,
              show_default=True, help="Vary each component this many standard deviations "
                                      "(of its values over DATA) either side of the image's.")
@inference_options
def traversal(model: str, data: str, output: str, index: int, components: int, in_order: bool,
              steps: int, span: float, batch_size: int | None, device: str | None) -> None:
    """Vary each latent component of one image, decoded.

    MODEL is a method that decodes its features (`inverse_transform`:
    autoencoder, denoising_autoencoder, vae). The image at --index of DATA
    is encoded; each row changes one component alone over --steps values
    spanning --span standard deviations (of that component over DATA)
    either side, and decodes them.
    """
    from featurekit.data.files import load_data

    est = _load_model(model, batch_size, device)
    _require(est, "inverse_transform", "traversal")
    X = load_data(data, labels=False).X
    if index >= len(X):
        raise click.BadParameter(f"DATA has {len(X)} images; --index must be below that",
                                 param_hint="--index")
    spread = est.transform(_take(X, np.arange(min(len(X), 512)))).std(axis=0)
    code = est.transform(_take(X, [index]))[0]
    order = np.arange(len(spread)) if in_order else np.argsort(-spread, kind="stable")
    chosen = order[:components]
    codes = np.repeat(code[None], len(chosen) * steps, axis=0)
    offsets = np.linspace(-span, span, steps) * spread[chosen, None]
    codes[np.arange(len(codes)), np.repeat(chosen, steps)] += offsets.ravel()
    drawn = _pictures(_images01(est.inverse_transform(codes), **_fit_format(est)))
    _draw([drawn[j * steps:(j + 1) * steps] for j in range(len(chosen))], output,
          [f"z{j}" for j in chosen])


# -- shared by the commands ----------------------------------------------------------

def _require(est: Any, verb: str, command: str) -> None:
    """A usage error unless ``est`` has ``verb`` and was fitted on images."""
    from featurekit.registry import get_registry

    if verb not in type(est).verbs:
        able = sorted(m.name for m in get_registry().methods.values() if verb in m.cls.verbs)
        raise click.UsageError(f"MODEL is a {est.name} model, which has no `{verb}`; "
                               f"`plot {command}` needs a method that has "
                               f"({', '.join(able) or 'none is installed'})")
    if est.input_spec_.modality != "image":
        raise click.UsageError(f"`plot {command}` draws images, and MODEL was fitted on "
                               f"{est.input_spec_.modality} data")


def _accepts(fn: Callable, name: str) -> bool:
    return name in inspect.signature(fn).parameters


def _take(X: Any, rows: Any) -> Any:
    """Rows of an array, or of a list of image files."""
    return [X[i] for i in rows] if isinstance(X, list) else X[np.asarray(rows)]


def _pick_images(est: Any, data: str, n: int, random_state: int) -> tuple[Any, dict]:
    """``n`` images of DATA chosen at random, and how to read arrays shaped like them."""
    from featurekit.data import inputs
    from featurekit.data.files import load_data

    loaded = load_data(data, labels=False)
    rows = np.sort(np.random.default_rng(random_state).permutation(len(loaded))[:n])
    X = _take(loaded.X, rows)
    source = inputs.image_source(X, channels=est.channels, image_size=est.image_size,
                                 scale=est.scale, image_shape=est.image_shape, min_samples=0)
    if loaded.is_files:  # their reconstructions come as numpy images: (N, H, W[, C])
        return X, {"channels": "auto", "image_shape": None, "scale": source.scale,
                   "image_size": est.image_size}
    return X, {"channels": est.channels, "image_shape": est.image_shape,
               "scale": source.scale, "image_size": est.image_size}


def _fit_format(est: Any) -> dict:
    """How to read arrays given back in the convention of the images ``est`` was fitted on."""
    spec = est.input_spec_
    return {"channels": "auto" if spec.layout == "none" else spec.layout,
            "image_shape": est.image_shape if spec.flat else None, "scale": spec.scale,
            "image_size": None}


def _images01(images: Any, *, channels: str, image_shape: Any, scale: float,
              image_size: int | None) -> np.ndarray:
    """Images in any accepted form -> float (n, C, H, W) in [0, 1]."""
    from featurekit.data import inputs

    source = inputs.image_source(images, channels=channels, image_shape=image_shape,
                                 scale=scale, image_size=image_size, min_samples=0)
    batch = next(source.batches(np.arange(source.n), max(source.n, 1)))
    return batch.float().numpy() / source.scale


def _pictures(images01: np.ndarray) -> list[np.ndarray]:
    """(n, C, H, W) in [0, 1] -> what ``image_grid`` draws: (H, W) grey or (H, W, 3)."""
    pictures = np.moveaxis(images01, 1, -1)
    if pictures.shape[-1] == 1:
        pictures = pictures[..., 0]
    return list(np.clip(pictures, 0.0, 1.0).astype(np.float32))


def _draw(rows: list[list[np.ndarray]], path: str, labels: list[str] | None = None) -> None:
    from featurekit.plots import image_grid

    image_grid(rows, path, row_labels=labels)
    click.echo(f"grid -> {path}")
