"""Datasets as in-memory tensors, and the task streams of continual learning.

Loading is offline first: a tensor cache (``$CFUTILS_DATA``, default ``~/.cache/cfutils``), then the
files of Debian's ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), then torchvision's
download. Every source file is verified by a checksum of its content; a cache file is written to a
temporary name and renamed, so an interrupted run never leaves half a file behind.

A stream is a list of :class:`Task` objects. The three scenarios of van de Ven & Tolias (2019):

* **task-IL** -- split classes, the task identity is given: the model answers among the task's classes;
* **domain-IL** -- the same classes in every task, the inputs change (permuted or rotated pixels);
* **class-IL** -- split classes, no task identity: one head answers among all classes seen.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .repro import check_choice, check_divides, check_float, check_int

SCENARIOS = ("task", "domain", "class")
SYSTEM_DIRS = {"fashion_mnist": Path("/usr/share/datasets/fashion-mnist")}
IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
# SHA-256 of the *uncompressed* IDX files: independent of how the .gz was compressed.
CONTENT_SHA256 = {
    "fashion_mnist": {
        "train_x": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
        "train_y": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
        "test_x": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
        "test_y": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    },
}
TORCHVISION_NAMES = {"fashion_mnist": "FashionMNIST", "mnist": "MNIST", "kmnist": "KMNIST", "cifar10": "CIFAR10"}
CLASS_NAMES = {
    "fashion_mnist": ("T-shirt", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Boot"),
    "mnist": tuple(str(i) for i in range(10)),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
    "cifar10": ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
}
DATASETS = tuple(TORCHVISION_NAMES)


class DataError(RuntimeError):
    """A data file is missing or corrupt; the message says which one and how to fix it."""


@dataclass(frozen=True)
class Dataset:
    """A labelled image dataset held as tensors: ``x`` is ``(N, C, H, W)`` float, standardised."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def subset(self, n_train: int | None, n_test: int | None, generator: torch.Generator) -> Dataset:
        """A class-stratified random subset (``None`` keeps everything) -- the small profiles use it."""
        return Dataset(self.name, *_stratified(self.x_train, self.y_train, n_train, generator),
                       *_stratified(self.x_test, self.y_test, n_test, generator), self.class_names)


@dataclass(frozen=True)
class Task:
    """One task of a stream: its data and the output units (``columns``) it answers with."""

    index: int
    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[int, ...]
    columns: tuple[int, ...]

    @property
    def n_train(self) -> int:
        return len(self.y_train)


@dataclass(frozen=True)
class TaskStream:
    """An ordered list of tasks in one scenario over ``n_classes`` output units."""

    tasks: tuple[Task, ...]
    scenario: str
    n_classes: int

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __getitem__(self, i: int) -> Task:
        return self.tasks[i]

    @property
    def masks(self) -> torch.Tensor:
        """``masks[t, c]`` is True when output unit ``c`` is allowed for task ``t``."""
        m = torch.zeros(len(self.tasks), self.n_classes, dtype=torch.bool, device=self.tasks[0].y_train.device)
        for t in self.tasks:
            m[t.index, list(t.columns)] = True
        return m


# ------------------------------------------------------------------------------------ loading
def data_dir() -> Path:
    """The cache directory: ``$CFUTILS_DATA`` or ``~/.cache/cfutils``."""
    return Path(os.environ.get("CFUTILS_DATA", Path.home() / ".cache" / "cfutils")).expanduser()


def load_dataset(name: str = "fashion_mnist", device: str | torch.device = "cpu") -> Dataset:
    """Load ``name`` (one of :data:`DATASETS`) as standardised float tensors on ``device``."""
    check_choice("dataset", name, DATASETS)
    cache = data_dir() / f"{name}.pt"
    arrays = _read_cache(cache)
    if arrays is None:
        arrays = _read_sources(name)
        atomic_save(arrays, cache)
    x_train, x_test = _standardise(arrays["train_x"], arrays["test_x"])
    to = dict(device=device)
    return Dataset(name, x_train.to(**to), arrays["train_y"].long().to(**to), x_test.to(**to),
                   arrays["test_y"].long().to(**to), CLASS_NAMES[name])


def _standardise(train_u8: torch.Tensor, test_u8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, H, W[, C])`` -> float ``(N, C, H, W)`` with the training set's per-channel mean 0, std 1."""
    def nchw(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div_(255)
        return x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2).contiguous()

    train, test = nchw(train_u8), nchw(test_u8)
    mean = train.mean(dim=(0, 2, 3), keepdim=True)
    std = train.std(dim=(0, 2, 3), keepdim=True)
    return (train - mean) / std, (test - mean) / std


def _read_cache(path: Path) -> dict[str, torch.Tensor] | None:
    if not path.exists():
        return None
    try:
        arrays = torch.load(path, weights_only=True)
        if set(arrays) == set(IDX_FILES) and len(arrays["train_x"]) == len(arrays["train_y"]):
            return arrays
    except Exception:  # noqa: BLE001 - any unreadable cache is rebuilt from the verified sources
        pass
    path.unlink()
    return None


def _read_sources(name: str) -> dict[str, torch.Tensor]:
    if name in SYSTEM_DIRS and SYSTEM_DIRS[name].is_dir():
        return {key: _read_idx_gz(SYSTEM_DIRS[name] / f"{stem}.gz", name, key) for key, stem in IDX_FILES.items()}
    return _download_with_torchvision(name)


def _read_idx_gz(path: Path, name: str, key: str) -> torch.Tensor:
    """Read one gzipped IDX file (the MNIST format) after checking the SHA-256 of its content."""
    if not path.exists():
        raise DataError(f"missing data file {path}; reinstall it with `apt-get install --reinstall "
                        f"dataset-fashion-mnist`, or remove {path.parent} to let torchvision download")
    try:
        raw = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as err:
        raise DataError(f"corrupt data file {path} ({err}); reinstall it with "
                        f"`apt-get install --reinstall dataset-fashion-mnist`") from err
    digest = hashlib.sha256(raw).hexdigest()
    if digest != CONTENT_SHA256[name][key]:
        raise DataError(f"corrupt data file {path}: SHA-256 {digest[:12]}... does not match the published data; "
                        f"reinstall it with `apt-get install --reinstall dataset-fashion-mnist`")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy())


def _download_with_torchvision(name: str) -> dict[str, torch.Tensor]:
    """Fetch through torchvision (which verifies its own MD5 checksums) into the cache directory."""
    import torchvision

    cls = getattr(torchvision.datasets, TORCHVISION_NAMES[name])
    root = data_dir() / "torchvision"
    try:
        train, test = cls(root, train=True, download=True), cls(root, train=False, download=True)
    except Exception as err:  # noqa: BLE001 - network and integrity errors all need the same advice
        hint = " or `apt-get install dataset-fashion-mnist`" if name == "fashion_mnist" else ""
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"could not load {name} ({reason}); connect to the internet{hint}, "
                        f"or delete {root} if a download was interrupted") from err

    def arrays(ds):
        return torch.as_tensor(np.asarray(ds.data)), torch.as_tensor(np.asarray(ds.targets))

    (train_x, train_y), (test_x, test_y) = arrays(train), arrays(test)
    return {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}


def atomic_write_bytes(blob: bytes, path: Path) -> None:
    """Write ``blob`` next to ``path`` under a temporary name, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # what open() would give, not mkstemp's owner-only 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_save(obj: object, path: Path) -> None:
    """``torch.save`` through :func:`atomic_write_bytes`."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(buffer.getvalue(), path)


def _stratified(x: torch.Tensor, y: torch.Tensor, n: int | None, g: torch.Generator):
    if n is None or n >= len(y):
        return x, y
    classes = torch.unique(y)
    per_class = n // len(classes)
    if per_class < 1:
        raise ValueError(f"a subset of {n} samples cannot hold one sample of each of {len(classes)} classes")
    picks = []
    for c in classes.tolist():
        idx = torch.nonzero(y == c).squeeze(1)
        picks.append(idx[torch.randperm(len(idx), generator=g)[:per_class].to(idx.device)])
    keep = torch.cat(picks).sort().values
    return x[keep], y[keep]


# ------------------------------------------------------------------------------------ streams
def split_stream(data: Dataset, n_tasks: int = 5, scenario: str = "class",
                 class_order: Sequence[int] | None = None) -> TaskStream:
    """Split the classes into ``n_tasks`` disjoint groups (``class_order`` sets which go first).

    Task-IL gives each task its own output units (a multi-head model); class-IL uses all of them.
    """
    check_choice("scenario", scenario, ("task", "class"))
    check_int("n_tasks", n_tasks, minimum=1)
    check_divides("n_tasks", n_tasks, data.n_classes, "classes")
    order = list(range(data.n_classes)) if class_order is None else [int(c) for c in class_order]
    if sorted(order) != list(range(data.n_classes)):
        raise ValueError(f"class_order={order} must be a permutation of 0..{data.n_classes - 1}")
    per_task = data.n_classes // n_tasks
    tasks = []
    for t in range(n_tasks):
        classes = tuple(order[t * per_task:(t + 1) * per_task])
        columns = classes if scenario == "task" else tuple(range(data.n_classes))
        keep_tr = torch.isin(data.y_train, torch.tensor(classes, device=data.y_train.device))
        keep_te = torch.isin(data.y_test, torch.tensor(classes, device=data.y_test.device))
        label = "/".join(data.class_names[c] for c in classes)
        tasks.append(Task(t, f"T{t + 1}: {label}", data.x_train[keep_tr], data.y_train[keep_tr],
                          data.x_test[keep_te], data.y_test[keep_te], classes, tuple(sorted(columns))))
    return TaskStream(tuple(tasks), scenario, data.n_classes)


def permuted_stream(data: Dataset, n_tasks: int = 5, fraction: float = 1.0, seed: int = 0,
                    permute_first: bool = False) -> TaskStream:
    """Domain-IL: task ``t`` applies a fixed random permutation to a ``fraction`` of the pixels.

    The first task keeps the original images unless ``permute_first``. ``fraction`` sets how similar
    the tasks are: 0 repeats the same task, 1 permutes every pixel (the classic permuted MNIST).
    """
    check_int("n_tasks", n_tasks, minimum=1)
    check_float("fraction", fraction, minimum=0.0, maximum=1.0)
    g = torch.Generator().manual_seed(seed)
    n_pix = int(np.prod(data.input_shape))
    tasks = []
    for t in range(n_tasks):
        perm = torch.arange(n_pix)
        if t > 0 or permute_first:
            chosen = torch.randperm(n_pix, generator=g)[: round(fraction * n_pix)]
            perm[chosen] = chosen[torch.randperm(len(chosen), generator=g)]
        perm = perm.to(data.x_train.device)

        def apply(x: torch.Tensor, p: torch.Tensor = perm) -> torch.Tensor:
            return x.flatten(1)[:, p].reshape(x.shape)

        tasks.append(_domain_task(data, t, f"T{t + 1}: permuted {fraction:.0%}" if t or permute_first
                                  else "T1: original", apply))
    return TaskStream(tuple(tasks), "domain", data.n_classes)


def rotated_stream(data: Dataset, angles: Sequence[float] = (0, 45, 90, 135, 180)) -> TaskStream:
    """Domain-IL: task ``t`` rotates every image by ``angles[t]`` degrees."""
    from torchvision.transforms.v2.functional import rotate

    if len(angles) < 1:
        raise ValueError("angles must name at least one rotation")
    tasks = []
    for t, angle in enumerate(angles):
        def apply(x: torch.Tensor, a: float = float(angle)) -> torch.Tensor:
            return rotate(x, a)

        tasks.append(_domain_task(data, t, f"T{t + 1}: rotated {angle:g}°", apply))
    return TaskStream(tuple(tasks), "domain", data.n_classes)


def _domain_task(data: Dataset, index: int, name: str, transform) -> Task:
    everything = tuple(range(data.n_classes))
    return Task(index, name, transform(data.x_train), data.y_train, transform(data.x_test), data.y_test,
                everything, everything)
