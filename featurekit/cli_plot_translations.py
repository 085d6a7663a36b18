"""``featurekit plot translations``: images, their translations and cycle reconstructions.

Generic over methods: it uses only the ``translate`` verb and the fitted
``domain_shapes_`` (``{domain: sample shape}``), so any method plugin that
translates between domains (CycleGAN, ...) gets the picture. Importing this
module adds the command to the ``plot`` group of :mod:`featurekit.cli_plot`.
"""

from __future__ import annotations

from typing import Any

import click
import numpy as np

from featurekit.cli import _data_argument, _load_model, _model_argument, inference_options
from featurekit.cli_plot import _draw, _grid_output, _images01, _pictures, _random_state, \
    _require, _take, plot


@plot.command("translations")
@_model_argument
@_data_argument
@_grid_output
@click.option("-n", "--n-images", type=click.IntRange(min=1), default=8, show_default=True,
              help="Images of each domain to draw.")
@click.option("--domain", default=None,
              help="The domain of DATA's images, when DATA has no labels (with labels, "
                   "each image's label names its domain).")
@_random_state
@inference_options
def translations(model: str, data: str, output: str, n_images: int, domain: str | None,
                 random_state: int, batch_size: int | None, device: str | None) -> None:
    """Draw images of DATA, their translations by MODEL, and the translations back.

    MODEL is a method that can `translate` between two domains (cyclegan).
    DATA's labels name each image's domain: an .npz with labels 'y', or a
    folder with one sub-folder per domain (its name, as in training), which
    may hold images of different sizes. For each domain found, three rows:
    its images, their translations into the other domain, and those
    translated back (cycle reconstructions).

    \b
      featurekit plot translations cyclegan.pt pairs/ -o translations.png
    """
    from featurekit.data.files import load_data

    est = _load_model(model, batch_size, device)
    _require(est, "translate", "translations")
    names = list(getattr(est, "domain_shapes_", {}))
    if len(names) < 2:
        raise click.UsageError("MODEL has no domain_shapes_ with two domains to translate between")
    loaded = load_data(data, labels=True)
    labels = _domains_of(loaded, names, domain)
    rng = np.random.default_rng(random_state)
    rows, row_labels = [], []
    for source in names:
        picked = np.flatnonzero(labels == str(source))
        if not len(picked):
            continue
        picked = np.sort(rng.permutation(picked)[:n_images])
        target = next(name for name in names if name != source)
        X = _take(loaded.X, picked)
        there = est.translate(X, to=target)
        back = est.translate(there, to=source)
        for images, label in ((X, f"{source}"), (there, f"-> {target}"), (back, f"-> {source}")):
            rows.append(_pictures(_as01(est, images)))
            row_labels.append(label)
    _draw(rows, output, row_labels)


def _domains_of(loaded: Any, names: list, domain: str | None) -> np.ndarray:
    """Each image's domain, as a string; a usage error when DATA's labels are not domains."""
    shown = ", ".join(map(str, names))
    if domain is not None:
        if domain not in map(str, names):
            raise click.BadParameter(f"{domain!r} is not one of MODEL's domains ({shown})",
                                     param_hint="--domain")
        return np.full(len(loaded), domain)
    if loaded.y is None:
        raise click.UsageError(f"DATA has no labels naming each image's domain; give a folder "
                               f"with one sub-folder per domain ({shown}), an .npz with labels "
                               "'y', or --domain NAME")
    labels = np.asarray(loaded.y).astype(str)
    if not set(labels) & set(map(str, names)):
        raise click.UsageError(f"DATA's labels ({', '.join(sorted(set(labels))[:5])}) are not "
                               f"MODEL's domains ({shown}); name sub-folders after the domains, "
                               "or pass --domain NAME")
    return labels


def _as01(est: Any, images: Any) -> np.ndarray:
    """Images as given to, or returned by, ``translate`` -> float (n, C, H, W) in [0, 1]."""
    from featurekit.data import inputs

    if isinstance(images, list):  # image files: decode at their size, or at the fitted one
        try:
            return _images01(images, channels="auto", image_shape=None, scale=255.0,
                             image_size=None)
        except ValueError:
            return _images01(images, channels="auto", image_shape=None, scale=255.0,
                             image_size=est.image_size)
    images = np.asarray(images)
    flat = images.ndim == 2 and est.image_shape is not None
    scale = inputs.image_source(images[:1], channels="auto" if not flat else est.channels,
                                image_shape=est.image_shape if flat else None,
                                scale=est.scale, min_samples=0).scale
    return _images01(images, channels="auto" if not flat else est.channels,
                     image_shape=est.image_shape if flat else None, scale=scale, image_size=None)
