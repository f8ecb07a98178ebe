"""The run-record store: specs are validated up front, records are reused only when they match, and
bad or stale files are re-trained, never used; grids give the same records in-process, in parallel
processes and on Ray."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from cfutils import runs
from cfutils.train import DivergenceError


def tiny_spec(**changes) -> runs.RunSpec:
    base = dict(method="naive", n_tasks=2, n_train=300, n_test=100, widths=(16,), lr=0.1, batch_size=32, epochs=5)
    return runs.RunSpec(**{**base, **changes})


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("CFUTILS_RESULTS", str(tmp_path))
    monkeypatch.delenv("CFUTILS_RECORDS", raising=False)
    monkeypatch.delenv("CFUTILS_MANIFEST", raising=False)
    return tmp_path


def trains(monkeypatch) -> list:
    """Count the runs that really train."""
    calls = []
    original = runs.execute
    monkeypatch.setattr(runs, "execute", lambda spec, *a, **k: calls.append(spec) or original(spec, *a, **k))
    return calls


@pytest.mark.parametrize("bad, message", [
    (dict(method="ewcc"), "method='ewcc'"),
    (dict(stream="permuted", scenario="class"), "scenario='class'"),
    (dict(epochs=0), "epochs=0"),
    (dict(method="ewc", params={"lam": -1.0}), "lam=-1.0"),
    (dict(method="ewc", params={"lambda": 1.0}), "no parameter .lambda."),
    (dict(method="ewc"), "needs the parameter .lam."),
])
def test_bad_specs_fail_at_once(bad, message):
    with pytest.raises(ValueError, match=message):
        tiny_spec(**bad)


def test_spec_key_is_stable_and_sensitive():
    a = tiny_spec(method="ewc", params={"lam": 1.0, "n_fisher": 10})
    assert a.key == tiny_spec(method="ewc", params={"n_fisher": 10, "lam": 1.0}).key
    assert a.key != a.replace(params={"lam": 2.0}).key != a.replace(seed=1).key
    assert a.replace(params={"lam": 2.0}).kwargs == {"lam": 2.0, "n_fisher": 10}


def test_a_new_default_field_keeps_old_keys():
    spec = tiny_spec()
    assert "evaluation" not in spec.identity() and "evaluation" in spec.to_dict()
    assert spec.replace(evaluation="validation").key != spec.key


def test_validation_runs_never_see_the_test_set():
    spec = runs.RunSpec(method="naive", evaluation="validation", n_tasks=5)
    stream = runs.data_for(spec)
    assert sum(t.n_train for t in stream) == 60_000 - runs.N_VALIDATION
    assert sum(len(t.y_test) for t in stream) == runs.N_VALIDATION


def test_second_call_reads_the_record(store, monkeypatch):
    calls = trains(monkeypatch)
    spec = tiny_spec(eval_every=5)
    first = runs.run(spec)
    second = runs.run(spec)
    assert len(calls) == 1 and runs.record_path(spec).exists()
    np.testing.assert_array_equal(first.R, second.R)
    np.testing.assert_allclose(first.curves, second.curves, atol=1e-5)
    assert second.loss_steps == first.loss_steps and second.boundaries == first.boundaries
    assert first.R[0, 0] > 0.4  # learned (chance: 0.2)


def test_training_leaves_the_global_random_state_alone(store):
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    runs.run(tiny_spec(), store=False)
    assert torch.equal(torch.rand(1), before)


@pytest.mark.parametrize("damage, reason", [
    (lambda p: p.write_bytes(b"not gzip"), "unreadable"),
    (lambda p: p.write_bytes(gzip.compress(b"{")), "unreadable"),
    (lambda p: _rewrite(p, format=runs.FORMAT - 1), "old record format"),
    (lambda p: _rewrite(p, identity={**_read(p)["identity"], "lr": 1.0}), "another specification"),
])
def test_a_bad_record_is_said_and_retrained(store, monkeypatch, capsys, damage, reason):
    spec = tiny_spec()
    good = runs.run(spec)
    damage(runs.record_path(spec))
    calls = trains(monkeypatch)
    again = runs.run(spec)
    assert len(calls) == 1 and reason in capsys.readouterr().err
    np.testing.assert_array_equal(again.R, good.R)
    assert runs.load(spec) is not None  # repaired


def _read(path):
    return json.loads(gzip.decompress(path.read_bytes()))


def _rewrite(path, **changes):
    path.write_bytes(gzip.compress(json.dumps({**_read(path), **changes}).encode()))


def test_records_off_trains_live_and_writes_nothing(store, monkeypatch):
    monkeypatch.setenv("CFUTILS_RECORDS", "off")
    runs.run(tiny_spec())
    assert not any(store.rglob("*.json.gz"))


def test_weights_are_kept_when_asked(store):
    spec = tiny_spec(keep_weights=True)
    trained = runs.run(spec)
    model = runs.load(spec).model()
    for k, v in model.state_dict().items():
        assert torch.equal(v, trained.weights[k])
    runs.record_path(spec).with_name(f"{spec.key}.pt").unlink()
    assert runs.load(spec) is None  # a record without its weights is not used


def test_a_diverging_run_leaves_no_record(store):
    spec = tiny_spec(method="ewc", params={"lam": 1e9, "fisher": "exact"}, lr=0.5)
    with pytest.raises(DivergenceError, match=r"ewc diverged: loss .* at step \d+ \(task 2, lr 0.5\).*2/lr"):
        runs.run(spec)
    assert not any(store.rglob("*.json.gz"))


def test_manifest_lists_every_spec_of_a_grid(store, monkeypatch, tmp_path):
    manifest = tmp_path / "manifest.txt"
    monkeypatch.setenv("CFUTILS_MANIFEST", str(manifest))
    specs = [tiny_spec(seed=s) for s in (0, 1)]
    runs.run_many(specs)
    assert manifest.read_text().split() == [f"naive/{s.key}" for s in specs]


def test_parallel_processes_give_the_same_records(store, tmp_path, monkeypatch):
    specs = [tiny_spec(method=m, seed=1) for m in ("naive", "joint")]
    serial = runs.run_many(specs, store=False)
    parallel = runs.run_many(specs, jobs=2)
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a.R, b.R)
        assert a.spec == b.spec


def test_ray_backend_gives_the_same_records(store):
    ray = pytest.importorskip("ray")
    specs = [tiny_spec(method=m, seed=2, params=p) for m, p in (("naive", {}), ("ewc", {"lam": 10.0}))]
    local = runs.run_many(specs, store=False)
    try:
        remote = runs.run_many(specs, backend="ray", jobs=2)
    finally:
        ray.shutdown()
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a.R, b.R)
    assert all(runs.record_path(s).exists() for s in specs)


def test_over_seeds_tables_and_convergence(store):
    from cfutils import experiments

    variants = {"naive": tiny_spec(), "joint": tiny_spec(method="joint")}
    res = experiments.over_seeds(variants, seeds=(0, 1))
    assert [r.spec.seed for r in res["joint"]] == [0, 1]
    table = experiments.summary_table(res)
    acc = experiments.metric(res["joint"], "ACC")
    assert table.loc["joint", "ACC"] == f"{acc.mean():.3f} ± {acc.std(ddof=1):.3f}"
    check = experiments.convergence(tiny_spec(method="joint"), seeds=(0, 1), factor=2)
    assert check["ACC"] == pytest.approx(acc.mean()) and check["epochs x2"] == 10
    assert check["gap"] == pytest.approx(check["ACC x2"] - check["ACC"])


def test_stop_after_and_first_lr_are_part_of_the_spec(store):
    first = runs.run(tiny_spec(stop_after=1, keep_weights=True))
    assert not first.R[1].any() and len(first.travel) == 1
    assert first.spec.key != tiny_spec(keep_weights=True).key
    whole = runs.run(tiny_spec(first_lr=0.1))
    np.testing.assert_array_equal(whole.R, runs.run(tiny_spec()).R)  # first_lr = lr: the same run
    assert runs.execute(first.spec, stop_after=2).R[1].sum() == 0  # never longer than the spec
    with pytest.raises(ValueError, match="stop_after=3"):
        tiny_spec(stop_after=3)
