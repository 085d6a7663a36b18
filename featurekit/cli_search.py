"""The ``index``, ``search`` and ``cluster`` commands: FAISS over a feature store.

They live apart from :mod:`featurekit.cli` to keep each module to one job;
``featurekit.cli`` imports this module before it records its built-in
commands, so these count as built-ins (a plugin cannot replace them).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from featurekit.cli import (
    _device,
    _load_model,
    _output_file,
    cli,
    inference_options,
)

def _grid_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    value = _output_file(ctx, param, value)
    if value is not None:
        from featurekit.plots import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from None
    return value


def _store_argument(f: Callable) -> Callable:
    return click.argument("store", type=click.Path(exists=True, dir_okay=False))(f)


def _open_store(path: str | Path, what: str = "STORE") -> Any:
    """A complete, non-empty feature store, or a usage error saying what is wrong."""
    from featurekit.store import FeatureStore

    store = FeatureStore(path)
    if store.features is None:
        store.close()
        raise click.UsageError(f"{what} {path} holds no features yet")
    if not store.complete:
        store.close()
        raise click.UsageError(f"{what} {path} is an unfinished extraction; run the same "
                               "`featurekit extract` again to complete it")
    return store


def _positions(ids: Any, wanted: Any) -> Any:
    """The position of each of ``wanted`` in ``ids``, -1 where it is not there."""
    import numpy as np

    ids, wanted = np.asarray(ids), np.asarray(wanted)
    order = np.argsort(ids, kind="stable")
    where = order[np.minimum(np.searchsorted(ids, wanted, sorter=order), len(ids) - 1)]
    return np.where(ids[where] == wanted, where, -1)


def _image_path(key: str, metadata: dict[str, Any]) -> Path:
    """The file of an image key: keys are relative to the folder or list they were read from."""
    path = Path(key)
    source = metadata.get("input")
    if path.is_absolute() or not source:
        return path
    base = Path(source) if Path(source).is_dir() else Path(source).parent
    return base / path if (base / path).exists() or not path.exists() else path


def _label_names(metadata: dict[str, Any]) -> Callable[[int], Any]:
    names = metadata.get("label_names")
    return (lambda code: names[code]) if names else (lambda code: int(code))


def _draw_grid(rows: list[list[Path | None]], path: str, titles: list[list[str]],
               row_labels: list[str] | None = None) -> None:
    """Draw a grid of image files, leaving blank (and naming) those that cannot be read."""
    from featurekit.plots import image_grid, read_thumbnail

    images = [[None if p is None else read_thumbnail(p) for p in row] for row in rows]
    unread = [p for row, shown in zip(rows, images) for p, image in zip(row, shown)
              if p is not None and image is None]
    if all(image is None for row in images for image in row):
        example = f" (e.g. {str(unread[0])!r})" if unread else ""
        raise click.ClickException(f"no grid written: none of the images could be read"
                                   f"{example}; the store's keys must name image files")
    image_grid(images, path, titles=titles, row_labels=row_labels)
    note = f" ({len(unread)} unreadable, left blank: e.g. {str(unread[0])!r})" if unread else ""
    click.echo(f"grid -> {path}{note}")


@cli.command("index")
@_store_argument
@click.option("-o", "--output", required=True, callback=_output_file,
              type=click.Path(dir_okay=False), help="The index file to write.")
@click.option("--kind", type=click.Choice(["flat", "ivf", "hnsw", "ivfpq"]), default="flat",
              show_default=True, help="flat: exact; ivf, hnsw: faster, approximate; ivfpq: "
                                      "compressed, for collections that must fit in memory.")
@click.option("--metric", type=click.Choice(["cosine", "l2", "ip"]), default="cosine",
              show_default=True, help="Cosine similarity, Euclidean distance or inner product.")
@click.option("--nlist", type=click.IntRange(min=1),
              help="Inverted lists of ivf/ivfpq (default: about 4 sqrt(n_samples)).")
@click.option("--nprobe", type=click.IntRange(min=1),
              help="Lists visited per query by ivf/ivfpq (default: the fewest that reach "
                   "--target-recall on the data).")
@click.option("--target-recall", type=click.FloatRange(0, 1, min_open=True), default=0.95,
              show_default=True,
              help="Recall@10 against exact search that ivf/hnsw/ivfpq tune their search for.")
@_device
def index_store(store: str, output: str, kind: str, metric: str, nlist: int | None,
                nprobe: int | None, target_recall: float, device: str | None) -> None:
    """Index the features of STORE with FAISS for `featurekit search`.

    STORE is a feature store written by `featurekit extract`. Its features
    are read block by block; the index keeps their ids and, for images, their
    file names (keys). The index also records STORE's path and provenance
    (the model that made the features), so that `featurekit search` can look
    up rows and embed query images without being told again. Example:

    \b
      featurekit index features.h5 -o features.index --kind ivf
    """
    from featurekit.index import FeatureIndex

    for option, value in (("--nlist", nlist), ("--nprobe", nprobe)):
        if value is not None and kind not in ("ivf", "ivfpq"):
            raise click.UsageError(f"{option} applies to --kind ivf or ivfpq, not {kind}")
    with _open_store(store) as features:
        keys = None if features.keys is None else features.keys.asstr()[:]
        started = time.perf_counter()
        built = FeatureIndex(kind, metric=metric, nlist=nlist or "auto", nprobe=nprobe or "auto",
                             target_recall=target_recall, device=device or "auto",
                             random_state=0)
        built.fit(features.features, ids=features.ids[:], keys=keys)
        seconds = time.perf_counter() - started
        metadata = {**features.metadata, "store": str(Path(store).resolve())}
    built.save(output, metadata=metadata)
    click.echo(f"{built.ntotal:,} vectors of {built.n_features_in_} features, {kind} index "
               f"({metric}), built in {seconds:.2f} s -> {output}")
    if built.calibrated_recall_ is not None and nprobe is None:
        knob, effort = (("efSearch", built.ef_search_) if kind == "hnsw"
                        else ("nprobe", built.nprobe_))
        click.echo(f"{knob} {effort} (calibrated): recall@10 about "
                   f"{built.calibrated_recall_:.3f} on the indexed vectors")


_SCORES = {"cosine": "cosine similarity, higher is closer",
           "l2": "Euclidean distance, lower is closer",
           "ip": "inner product, higher is closer"}


@cli.command()
@click.argument("index", type=click.Path(exists=True, dir_okay=False))
@click.argument("queries", nargs=-1, required=True, metavar="QUERY...")
@click.option("-k", type=click.IntRange(min=1), default=10, show_default=True,
              help="Neighbours per query.")
@click.option("--model", type=click.Path(exists=True, dir_okay=False),
              help="The model that made the indexed features, to embed query images "
                   "(default: the one the index records).")
@click.option("--grid", callback=_grid_file, type=click.Path(dir_okay=False),
              help="Also draw each query and its neighbours as an image grid (PNG).")
@inference_options
def search(index: str, queries: tuple[str, ...], k: int, model: str | None, grid: str | None,
           batch_size: int | None, device: str | None) -> None:
    """Print the K nearest neighbours of each QUERY in INDEX.

    INDEX is a file written by `featurekit index`. A QUERY is an image file,
    embedded with the model that made the features (--model, else the model
    recorded in INDEX), or an integer id of a row of the indexed store,
    whose features are looked up in that store (write ./12 for a file named
    12). Each query gets a table of rank, id, key (the file name, for
    images), label (when the store has labels) and score. Example:

    \b
      featurekit search features.index cat.jpg 17 -k 5 --grid neighbours.png
    """
    import numpy as np

    from featurekit.evaluate import format_table
    from featurekit.index import FeatureIndex

    found_index = FeatureIndex.load(index, device=device)
    meta = found_index.metadata_
    if k > found_index.ntotal:
        raise click.UsageError(f"-k {k} is larger than the index, which holds "
                               f"{found_index.ntotal} vectors; ask for -k {found_index.ntotal} "
                               "or fewer")
    if grid is not None and found_index.keys_ is None:
        raise click.UsageError("--grid draws the indexed images, and this index has no file "
                               "names (keys): extract the store from a folder or a .txt list "
                               "of images")
    parsed = [int(q) if q.isascii() and q.lstrip("-").isdigit() else Path(q) for q in queries]
    missing = next((q for q in parsed if isinstance(q, Path) and not q.is_file()), None)
    if missing is not None:
        raise click.UsageError(f"QUERY {str(missing)!r} is neither an integer id nor an "
                               "existing image file")
    store_path = meta.get("store")
    store = None
    if store_path and Path(store_path).is_file():
        store = _open_store(store_path, what="the indexed store")
    elif any(isinstance(q, int) for q in parsed):
        raise click.UsageError(f"id queries read the indexed store, and the store INDEX "
                               f"records ({store_path or 'none'}) is not there; query with "
                               "image files, or index the store again")
    with store if store is not None else contextlib.nullcontext():
        Q = _query_vectors(parsed, found_index.n_features_in_, store, meta, model, batch_size,
                           device)
        scores, ids = found_index.search(Q, k)
        labels = None
        if store is not None and store.labels is not None:
            rows = _positions(store.ids[:], ids.ravel()).reshape(ids.shape)
            labels = np.where(rows >= 0, store.labels[:][rows], -1)
        query_keys = _query_keys(parsed, store)
    keys = None
    if found_index.keys_ is not None:
        keys = found_index.keys_[_positions(found_index.ids_, ids.ravel())].reshape(ids.shape)
    name = _label_names(meta)
    click.echo(f"{k} nearest of {found_index.ntotal:,} indexed vectors ({found_index.kind} "
               f"index; score: {_SCORES[found_index.metric]})")
    for q, query in enumerate(parsed):
        kept = np.flatnonzero(ids[q] >= 0)
        what = f"id {query}" if isinstance(query, int) else str(query)
        if isinstance(query, int) and query_keys[q] is not None:
            what += f" ({query_keys[q]})"
        rows = []
        for rank, j in enumerate(kept, 1):
            row = {"rank": rank, "id": int(ids[q, j])}
            if keys is not None:
                row["key"] = keys[q, j]
            if labels is not None:
                row["label"] = "" if labels[q, j] < 0 else name(labels[q, j])
            row["score"] = f"{scores[q, j]:.4f}"
            rows.append(row)
        click.echo(f"\nquery {q + 1}: {what}")
        click.echo(format_table(rows) if rows else "(no neighbours found)")
    if grid is not None:
        grid_rows, titles = [], []
        for q, query in enumerate(parsed):
            kept = np.flatnonzero(ids[q] >= 0)
            source = query if isinstance(query, Path) else (
                None if query_keys[q] is None else _image_path(query_keys[q], meta))
            grid_rows.append([source, *(_image_path(keys[q, j], meta) for j in kept)])
            titles.append([f"query {q + 1}", *(f"{ids[q, j]}: {scores[q, j]:.3f}" for j in kept)])
        _draw_grid(grid_rows, grid, titles)


def _query_vectors(queries: list[int | Path], n_features: int, store: Any, meta: dict[str, Any],
                   model: str | None, batch_size: int | None, device: str | None) -> Any:
    """The features of each query: looked up in ``store`` (ids) or embedded (image files)."""
    import numpy as np

    Q = np.empty((len(queries), n_features), np.float32)
    wanted = [(i, q) for i, q in enumerate(queries) if isinstance(q, int)]
    if wanted:
        rows = _positions(store.ids[:], [q for _, q in wanted])
        absent = [q for (_, q), row in zip(wanted, rows) if row < 0]
        if absent:
            raise click.UsageError(f"id {absent[0]} is not in the indexed store {store.path} "
                                   f"(its ids run from {int(store.ids[0])} to "
                                   f"{int(store.ids[-1])})")
        if store.shape[1] != n_features:
            raise click.UsageError(f"the store {store.path} now holds {store.shape[1]} "
                                   f"features per row, the index {n_features}; index it again")
        Q[[i for i, _ in wanted]] = store[rows]
    files = [(i, q) for i, q in enumerate(queries) if isinstance(q, Path)]
    if files:
        est = _query_model(model, meta, batch_size, device)
        Q[[i for i, _ in files]] = est.transform([str(q) for _, q in files])
    return Q


def _query_model(model: str | None, meta: dict[str, Any], batch_size: int | None,
                 device: str | None) -> Any:
    """The model that made the indexed features, checked against the store's provenance."""
    from featurekit.extraction import weights_sha256

    if model is None:
        model = meta.get("model")
        if model is None:
            raise click.UsageError("image queries need the model that made the indexed "
                                   "features, and INDEX records none: give it with --model")
        if not Path(model).is_file():
            raise click.UsageError(f"image queries need the model that made the indexed "
                                   f"features, and the one INDEX records ({model}) is not "
                                   "there: give it with --model")
    est = _load_model(model, batch_size, device)
    recorded = meta.get("model_sha256")
    if recorded is not None and weights_sha256(est.modules_) != recorded:
        raise click.UsageError(f"the model {model} did not make the indexed features (its "
                               f"weights differ from those the store records, sha256 "
                               f"{recorded[:12]}); give that model with --model")
    return est


def _query_keys(queries: list[int | Path], store: Any) -> list[str | None]:
    """The store's key of each id query (None for image files and stores without keys)."""
    keys: list[str | None] = [None] * len(queries)
    if store is None or store.keys is None:
        return keys
    wanted = [(i, q) for i, q in enumerate(queries) if isinstance(q, int)]
    if wanted:
        store_keys = store.keys.asstr()
        for (i, _), row in zip(wanted, _positions(store.ids[:], [q for _, q in wanted])):
            keys[i] = store_keys[int(row)]
    return keys


@cli.command()
@_store_argument
@click.option("-k", "--n-clusters", type=click.IntRange(min=1),
              help="Number of clusters (default: the number of classes in the store's labels).")
@click.option("--spherical/--euclidean", default=True, show_default=True,
              help="Cluster by cosine similarity (rows L2-normalized) or Euclidean distance.")
@click.option("--random-state", "--seed", "random_state", type=int, default=0,
              show_default=True, help="Seed of k-means.")
@click.option("--n-init", type=click.IntRange(min=1), default=1, show_default=True,
              help="Runs from different seeds; the one with the lowest inertia is kept.")
@click.option("-o", "--output", callback=_output_file, type=click.Path(dir_okay=False),
              help="Write each row's cluster to this .npy file (int64, in the store's row "
                   "order).")
@click.option("--grid", callback=_grid_file, type=click.Path(dir_okay=False),
              help="Also draw the samples nearest each center as an image grid (PNG), one row "
                   "per cluster.")
@click.option("--per-cluster", type=click.IntRange(min=1), default=8, show_default=True,
              help="Samples per cluster in the --grid.")
@_device
def cluster(store: str, n_clusters: int | None, spherical: bool, random_state: int,
            n_init: int, output: str | None, grid: str | None, per_cluster: int,
            device: str | None) -> None:
    """Cluster the features of STORE with k-means (FAISS).

    Prints the size of each cluster and the inertia; when STORE has labels,
    also each cluster's most common label and how well the clusters recover
    the labels (NMI, ARI). Example:

    \b
      featurekit cluster features.h5 -k 20 -o clusters.npy --grid clusters.png
    """
    import numpy as np
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    from featurekit.cluster import FaissKMeans
    from featurekit.evaluate import format_table

    with _open_store(store) as features:
        if grid is not None and features.keys is None:
            raise click.UsageError("--grid draws the store's images, and STORE has no file "
                                   "names (keys): extract it from a folder or a .txt list of "
                                   "images")
        X = np.asarray(features.features[:], dtype=np.float32)
        ids = features.ids[:]
        labels = None if features.labels is None else features.labels[:]
        keys = None if grid is None else features.keys.asstr()[:]
        meta = features.metadata
    if n_clusters is None:
        if labels is None:
            raise click.UsageError("give the number of clusters with -k (STORE has no labels "
                                   "to count classes from)")
        n_clusters = len(np.unique(labels))
    if n_clusters > len(X):
        raise click.UsageError(f"-k {n_clusters} is more clusters than STORE has rows "
                               f"({len(X)})")
    started = time.perf_counter()
    km = FaissKMeans(n_clusters, spherical=spherical, n_init=n_init,
                     random_state=random_state, device=device or "auto").fit(X)
    seconds = time.perf_counter() - started
    sizes = np.bincount(km.labels_, minlength=n_clusters)
    click.echo(f"k-means ({'spherical' if spherical else 'Euclidean'}) of {len(X):,} rows x "
               f"{X.shape[1]} features into {n_clusters} clusters: inertia {km.inertia_:.6g} "
               f"after {km.n_iter_} iterations, {seconds:.2f} s")
    name = _label_names(meta)
    rows = []
    for c, size in enumerate(sizes):
        row = {"cluster": c, "size": int(size)}
        if labels is not None and size:
            values, counts = np.unique(labels[km.labels_ == c], return_counts=True)
            row["top label"] = name(values[np.argmax(counts)])
            row["share"] = f"{counts.max() / size:.1%}"
        rows.append(row)
    click.echo(format_table(rows))
    if labels is not None:
        nmi = normalized_mutual_info_score(labels, km.labels_)
        ari = adjusted_rand_score(labels, km.labels_)
        click.echo(f"against the store's labels: NMI {nmi:.3f}, ARI {ari:.3f}")
    if output is not None:
        _save_npy(output, km.labels_.astype(np.int64))
        click.echo(f"labels -> {output}")
    if grid is not None:
        distances = km.transform(X)
        grid_rows, titles = [], []
        for c in range(n_clusters):
            members = np.flatnonzero(km.labels_ == c)
            nearest = members[np.argsort(distances[members, c], kind="stable")[:per_cluster]]
            grid_rows.append([_image_path(keys[i], meta) for i in nearest])
            titles.append([str(name(labels[i])) if labels is not None else str(ids[i])
                           for i in nearest])
        _draw_grid(grid_rows, grid, titles,
                   row_labels=[f"cluster {c}\n{size} rows" for c, size in enumerate(sizes)])


def _save_npy(path: str, array: Any) -> None:
    """``np.save`` to ``path`` atomically: the old file or the new one, never half of one."""
    import uuid

    import numpy as np

    from featurekit.store import commit_file, store_error

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            np.save(f, array)
        commit_file(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise store_error(exc, f"write {path}") from exc
