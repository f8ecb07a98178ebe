"""Runs as plain specifications, their records, and a store that trains each specification once.

A :class:`RunSpec` names everything that decides a run: data, stream, model, method and its
hyper-parameters, training budget, seed. :func:`run` returns its :class:`Record` (accuracy matrix,
curves, binned losses, cost, versions) from the store when one exists, otherwise trains it with
:func:`cfutils.train.train` and stores the record: a small gzipped JSON file under ``results/``
(plus the final weights when the spec asks to keep them). A record written for another specification,
an unreadable file or an old record format is reported in one line and re-trained, never used.

``CFUTILS_RECORDS=off`` ignores the store (everything trains live, nothing is written).
:func:`run_many` runs a grid in this process, in parallel processes, or on Ray (``backend="ray"``).
"""
from __future__ import annotations

import dataclasses
import gzip
import hashlib
import inspect
import json
import os
import platform
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import data, methods, models
from .repro import check_choice, check_float, check_int, pick_device, progress
from .train import RunResult, train

FORMAT = 1  # bump when the record layout or the meaning of a spec field changes: old records re-train
STREAMS = {"split": ("task", "class"), "permuted": ("domain",)}
EVALUATIONS = ("test", "validation")
N_VALIDATION = 10_000  # training images held out (the same ones for every seed) when evaluation="validation"
BACKENDS = ("local", "ray")
LOSS_BINS = 50  # losses are stored as means over this many bins per task


def _method_registry() -> dict[str, type[methods.Method]]:
    found = {}
    for obj in vars(methods).values():
        if isinstance(obj, type) and issubclass(obj, methods.Method) and obj.name != "method":
            found.setdefault(obj.name, obj)
    return found


METHODS = _method_registry()


@dataclass(frozen=True)
class RunSpec:
    """One training run, completely described; ``params`` are the method's keyword arguments."""

    method: str
    params: Any = ()
    stream: str = "split"
    scenario: str = "class"
    n_tasks: int = 5
    dataset: str = "fashion_mnist"
    n_train: int | None = None  # class-stratified subset of the training set (None: all of it)
    n_test: int | None = None
    fraction: float = 1.0  # share of permuted pixels (permuted streams)
    class_order: tuple[int, ...] | None = None  # split streams: which classes come first
    class_fractions: tuple[float, ...] | None = None  # share of each class's training images kept
    evaluation: str = "test"  # "validation": tune on held-out training images, never on the test set
    widths: tuple[int, ...] = (400, 400)
    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "sgd"
    momentum: float = 0.0
    eval_every: int | None = None
    seed: int = 0
    keep_weights: bool = False
    first_lr: float | None = None  # learning rate of the first task (None: lr)
    stop_after: int | None = None  # train only the first tasks (later rows of R stay 0), e.g. to keep theta_1

    def __post_init__(self) -> None:
        params = dict(self.params)
        object.__setattr__(self, "params", tuple(sorted(params.items())))
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.class_order is not None:
            object.__setattr__(self, "class_order", tuple(int(c) for c in self.class_order))
        if self.class_fractions is not None:
            for f in self.class_fractions:
                check_float("class_fractions", f, maximum=1.0, positive=True)
            object.__setattr__(self, "class_fractions", tuple(float(f) for f in self.class_fractions))
        check_choice("method", self.method, sorted(METHODS))
        check_choice("stream", self.stream, tuple(STREAMS))
        check_choice("scenario", self.scenario, STREAMS[self.stream])
        check_choice("dataset", self.dataset, data.DATASETS)
        if self.class_fractions is not None and len(self.class_fractions) != len(data.CLASS_NAMES[self.dataset]):
            raise ValueError(f"class_fractions={list(self.class_fractions)} needs one share per class of "
                             f"{self.dataset} ({len(data.CLASS_NAMES[self.dataset])})")
        check_choice("evaluation", self.evaluation, EVALUATIONS)
        check_choice("optimizer", self.optimizer, ("sgd", "adam"))
        for name in ("n_tasks", "epochs", "batch_size", "seed"):
            check_int(name, getattr(self, name), minimum=0 if name == "seed" else 1)
        for name in ("n_train", "n_test", "eval_every"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), minimum=1)
        check_float("lr", self.lr, positive=True)
        if self.first_lr is not None:
            check_float("first_lr", self.first_lr, positive=True)
        if self.stop_after is not None:
            check_int("stop_after", self.stop_after, minimum=1, maximum=self.n_tasks)
        check_float("fraction", self.fraction, minimum=0.0, maximum=1.0)
        check_float("momentum", self.momentum, minimum=0.0, maximum=1.0)
        self.build_method()  # the method checks its own hyper-parameters now, not after a long run

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    def replace(self, **changes: Any) -> RunSpec:
        """A copy with some fields changed (``params`` given here are merged into the current ones)."""
        if "params" in changes:
            changes["params"] = {**self.kwargs, **dict(changes["params"])}
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["params"], d["widths"] = self.kwargs, list(self.widths)
        if self.class_order is not None:
            d["class_order"] = list(self.class_order)
        if self.class_fractions is not None:
            d["class_fractions"] = list(self.class_fractions)
        return d

    def identity(self) -> dict[str, Any]:
        """The fields that differ from their defaults (and the method): what makes this run this run.

        A field added later with a default leaves the identity, and so the records, of older specs alone.
        """
        defaults = RunSpec(self.method, self.params).to_dict()
        return {k: v for k, v in self.to_dict().items() if k in ("method", "params") or v != defaults[k]}

    @property
    def key(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of :meth:`identity`."""
        text = json.dumps(self.identity(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def build_method(self) -> methods.Method:
        """The method with its hyper-parameters (and this spec's seed, if the method takes one)."""
        cls = METHODS[self.method]
        accepted, required = _init_parameters(cls)
        unknown, missing = sorted(set(self.kwargs) - accepted), sorted(required - set(self.kwargs))
        if unknown or missing:
            problem = f"has no parameter {unknown[0]!r}" if unknown else f"needs the parameter {missing[0]!r}"
            raise ValueError(f"{self.method} {problem}; it takes {sorted(accepted)}")
        kwargs = self.kwargs
        if "seed" in accepted and "seed" not in kwargs:
            kwargs["seed"] = self.seed
        return cls(**kwargs)


def _init_parameters(cls: type) -> tuple[set[str], set[str]]:
    """Names a method's constructor accepts (following ``**kwargs`` up the classes) and requires."""
    accepted: set[str] = set()
    required: set[str] = set()
    for klass in cls.__mro__:
        params = inspect.signature(klass.__init__).parameters.values()
        named = [p for p in params if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        required |= {p.name for p in named if p.default is p.empty} - accepted
        accepted |= {p.name for p in named}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return accepted, required


@dataclass
class Record(RunResult):
    """A :class:`~cfutils.train.RunResult` with its spec, costs and provenance."""

    spec: RunSpec | None = None
    loss_steps: list[int] = field(default_factory=list)
    stored_bytes: int = 0
    versions: dict[str, str] = field(default_factory=dict)
    extras: dict[str, Any] = field(default_factory=dict)  # the method's own small results (Method.extras)
    weights: dict[str, torch.Tensor] | None = None

    def model(self) -> torch.nn.Module:
        """The trained network (only for specs with ``keep_weights=True``)."""
        if self.weights is None:
            raise ValueError(f"run {self.spec.key} kept no weights; set keep_weights=True in its spec")
        model = build_model(self.spec, data_for(self.spec))
        model.load_state_dict(self.weights)
        return model


# ------------------------------------------------------------------------------------ training
@lru_cache(maxsize=4)
def _full_dataset(name: str) -> data.Dataset:
    return data.load_dataset(name)


def data_for(spec: RunSpec, device: torch.device | str = "cpu") -> data.TaskStream:
    """The task stream of ``spec`` (the subset and the permutations follow ``spec.seed``)."""
    ds = _full_dataset(spec.dataset)
    if spec.evaluation == "validation":
        held_out = torch.randperm(len(ds.y_train), generator=torch.Generator().manual_seed(0))
        val, rest = held_out[:N_VALIDATION].sort().values, held_out[N_VALIDATION:].sort().values
        ds = data.Dataset(ds.name, ds.x_train[rest], ds.y_train[rest], ds.x_train[val], ds.y_train[val],
                          ds.class_names)
    if spec.n_train or spec.n_test:
        ds = ds.subset(spec.n_train, spec.n_test, torch.Generator().manual_seed(spec.seed))
    if spec.class_fractions is not None:
        ds = _imbalanced(ds, spec.class_fractions)
    if str(device) != "cpu":
        ds = data.Dataset(ds.name, *(t.to(device) for t in (ds.x_train, ds.y_train, ds.x_test, ds.y_test)),
                          ds.class_names)
    if spec.stream == "split":
        return data.split_stream(ds, spec.n_tasks, scenario=spec.scenario, class_order=spec.class_order)
    return data.permuted_stream(ds, spec.n_tasks, fraction=spec.fraction, seed=spec.seed)


def _imbalanced(ds: data.Dataset, fractions: Sequence[float]) -> data.Dataset:
    """Keep the first ``fractions[c]`` of each class ``c``'s training images (the test set stays whole)."""
    keep = torch.zeros(len(ds.y_train), dtype=torch.bool, device=ds.y_train.device)
    for c, f in enumerate(fractions):
        idx = torch.nonzero(ds.y_train == c).squeeze(1)
        keep[idx[:max(1, round(f * len(idx)))]] = True
    return data.Dataset(ds.name, ds.x_train[keep], ds.y_train[keep], ds.x_test, ds.y_test, ds.class_names)


def build_model(spec: RunSpec, stream: data.TaskStream) -> torch.nn.Module:
    """The MLP of ``spec``, initialised from ``spec.seed``."""
    n_inputs = int(np.prod(stream[0].x_train.shape[1:]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return models.MLP(n_inputs, spec.widths, stream.n_classes)


def execute(spec: RunSpec, device: str = "auto", stop_after: int | None = None) -> Record:
    """Train ``spec`` now (no store). The global random state is left as it was.

    ``stop_after`` (tasks) cuts the run shorter than ``spec.stop_after``, never longer.
    """
    stop_after = min((s for s in (stop_after, spec.stop_after) if s is not None), default=None)
    dev = pick_device(device)
    stream = data_for(spec, dev)
    model = build_model(spec, stream).to(dev)
    method = spec.build_method()
    if not torch.are_deterministic_algorithms_enabled():  # a fresh worker process
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(spec.seed)  # methods that draw from the global generator (the VAE) start alike
        result = train(method, model, stream, epochs=spec.epochs, batch_size=spec.batch_size, lr=spec.lr,
                       optimizer=spec.optimizer, momentum=spec.momentum, eval_every=spec.eval_every,
                       generator=torch.Generator().manual_seed(spec.seed), stop_after=stop_after,
                       first_lr=spec.first_lr)
    fields = {f.name: getattr(result, f.name) for f in dataclasses.fields(RunResult)}
    loss_steps, losses = _binned_losses(result)
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()} if spec.keep_weights else None
    return Record(**{**fields, "losses": losses}, spec=spec, loss_steps=loss_steps,
                  stored_bytes=int(method.stored_bytes()), versions=_versions(dev), weights=weights,
                  extras=method.extras())


def _binned_losses(result: RunResult) -> tuple[list[int], list[float]]:
    """Mean training loss over :data:`LOSS_BINS` equal bins per task, at each bin's last step."""
    steps, values, start = [], [], 0
    losses = np.asarray(result.losses)
    for end in result.boundaries:
        for chunk in np.array_split(np.arange(start, end), min(LOSS_BINS, max(end - start, 1))):
            if len(chunk):
                steps.append(int(chunk[-1]) + 1)
                values.append(float(losses[chunk].mean()))
        start = end
    return steps, values


def _versions(device: torch.device) -> dict[str, str]:
    return {"torch": torch.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "device": device.type, "threads": str(torch.get_num_threads())}


# ------------------------------------------------------------------------------------ the store
def records_enabled() -> bool:
    """False when ``CFUTILS_RECORDS=off`` (everything trains live)."""
    return os.environ.get("CFUTILS_RECORDS", "on").lower() not in ("off", "0", "no", "false")


def results_dir() -> Path:
    """``$CFUTILS_RESULTS``, else ``results/`` of the repository holding cfutils, else a user cache."""
    if "CFUTILS_RESULTS" in os.environ:
        return Path(os.environ["CFUTILS_RESULTS"]).expanduser()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "_toc.yml").exists():
        return repo / "results"
    return data.data_dir() / "results"


def record_path(spec: RunSpec, root: Path | None = None) -> Path:
    return (root or results_dir()) / spec.method / f"{spec.key}.json.gz"


def load(spec: RunSpec, root: Path | None = None) -> Record | None:
    """The stored record of ``spec``, or None (with a one-line reason when a file was there but unusable)."""
    path = record_path(spec, root)
    if not path.exists():
        return None
    try:
        saved = json.loads(gzip.decompress(path.read_bytes()))
        problem = ("an old record format" if saved.get("format") != FORMAT else
                   "another specification" if saved.get("identity") != spec.identity() else None)
        weights = _load_weights(path) if spec.keep_weights else None
    except (OSError, EOFError, ValueError, KeyError, RuntimeError) as err:
        problem = f"an unreadable file ({type(err).__name__})"
    if problem:
        print(f"[records] {path.name} holds {problem}; re-training {spec.method} (seed {spec.seed})",
              file=sys.stderr)
        return None
    known = {f.name for f in dataclasses.fields(Record)}
    r = {k: v for k, v in saved["record"].items() if k in known}  # fields of newer code: not ours
    return Record(**{**r, "R": np.array(r["R"]), "random_init": np.array(r["random_init"]),
                     "curves": None if r["curves"] is None else np.array(r["curves"])},
                  spec=spec, weights=weights)


def _load_weights(path: Path) -> dict[str, torch.Tensor]:
    weights_file = path.with_name(path.name.replace(".json.gz", ".pt"))
    if not weights_file.exists():
        raise OSError(f"missing {weights_file.name}")
    return torch.load(weights_file, weights_only=True)


def save(record: Record, root: Path | None = None) -> Path:
    """Write ``record`` atomically (weights first, so a record never points at missing weights)."""
    path = record_path(record.spec, root)
    if record.weights is not None:
        data.atomic_save(record.weights, path.with_name(path.name.replace(".json.gz", ".pt")))
    body = {f.name: getattr(record, f.name) for f in dataclasses.fields(Record)
            if f.name not in ("spec", "weights")}
    body.update(R=record.R.tolist(), random_init=record.random_init.tolist(),
                curves=None if record.curves is None else np.round(record.curves, 5).tolist(),
                losses=[round(v, 5) for v in record.losses])
    head = {"format": FORMAT, "identity": record.spec.identity(), "spec": record.spec.to_dict()}
    blob = gzip.compress(json.dumps({**head, "record": body}, sort_keys=True).encode(), mtime=0)
    data.atomic_write_bytes(blob, path)
    return path


def _note_in_manifest(specs: Iterable[RunSpec]) -> None:
    """Append the record paths to ``$CFUTILS_MANIFEST`` (how a chapter's refresh learns its records)."""
    manifest = os.environ.get("CFUTILS_MANIFEST")
    if manifest:
        with open(manifest, "a") as f:
            f.writelines(f"{s.method}/{s.key}\n" for s in specs)


# ------------------------------------------------------------------------------------ grids
def run(spec: RunSpec, *, store: bool = True, device: str = "auto") -> Record:
    """The record of ``spec``: from the store, or trained now (and stored)."""
    return run_many([spec], store=store, device=device)[0]


def run_many(specs: Sequence[RunSpec], *, store: bool = True, jobs: int | None = None,
             backend: str | None = None, address: str | None = None, device: str = "auto",
             desc: str = "runs") -> list[Record]:
    """Records of every spec, in order; missing ones train in this process, in ``jobs`` processes,
    or on Ray (``backend="ray"``, a local instance or the cluster at ``address``).

    ``device="auto"`` trains on a GPU when there is one. ``jobs``, ``backend`` and ``address`` default to ``$CFUTILS_JOBS`` (1), ``$CFUTILS_BACKEND``
    (``"local"``) and ``$CFUTILS_RAY_ADDRESS``.
    """
    jobs = int(os.environ.get("CFUTILS_JOBS", "1")) if jobs is None else jobs
    backend = backend or os.environ.get("CFUTILS_BACKEND", "local")
    address = address or os.environ.get("CFUTILS_RAY_ADDRESS")
    check_int("jobs", jobs, minimum=1)
    check_choice("backend", backend, BACKENDS)
    store = store and records_enabled()
    if store:
        _note_in_manifest(specs)
    found = {s: load(s) for s in dict.fromkeys(specs)} if store else {s: None for s in specs}
    todo = [s for s, r in found.items() if r is None]
    for record in progress(_train_all(todo, jobs, backend, address, device), total=len(todo), desc=desc):
        if store:
            save(record)
        found[record.spec] = record
    return [found[s] for s in specs]


def _train_all(todo: list[RunSpec], jobs: int, backend: str, address: str | None, device: str):
    if backend == "ray":
        yield from _train_on_ray(todo, jobs, address, device)
    elif jobs == 1 or len(todo) <= 1:
        yield from (execute(s, device) for s in todo)
    else:
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=torch.set_num_threads,
                                 initargs=(threads,)) as pool:
            for future in as_completed([pool.submit(execute, s, device) for s in todo]):
                yield future.result()


def _train_on_ray(todo: list[RunSpec], jobs: int, address: str | None, device: str):
    try:
        import ray
    except ImportError as err:
        raise ImportError("backend='ray' needs Ray: pip install 'cfutils[cluster]'") from err
    if not ray.is_initialized():
        env = {"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}}
        ray.init(address=address, num_cpus=None if address else jobs, include_dashboard=False,
                 log_to_driver=False, runtime_env=env)
    remote = ray.remote(num_cpus=1)(execute)
    pending = [remote.remote(s, device) for s in todo]
    while pending:
        done, pending = ray.wait(pending)
        yield ray.get(done[0])
