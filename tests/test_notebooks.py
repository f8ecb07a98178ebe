"""Every chapter runs end to end in the smoke profile, and bad parameters fail fast in the validation cell."""
from __future__ import annotations

import os
from pathlib import Path

import nbformat
import papermill as pm
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = [ROOT / f"{c['file']}.ipynb" for part in TOC["parts"] for c in part["chapters"]
             if c["file"].startswith("notebooks/")]

# Parameters every image chapter must reject, and chapter-specific ones: (overrides, words the error must name).
COMMON_BAD = [({"profile": "huge"}, "profile"), ({"dataset": "imagenet"}, "dataset")]
BAD_PARAMETERS: dict[str, list[tuple[dict, str]]] = {
    "01_definition_and_causes": [({"lr": -0.1}, "lr"), ({"n_tasks": 0}, "n_tasks"), ({"n_tasks": 3}, "n_tasks"),
                                 ({"seed": -1}, "seed"), ({"epochs": 0}, "epochs"), ({"hidden": 0}, "hidden")],
    "02_ewc": [({"gamma": 1.5}, "gamma"), ({"adam_lr": 0.0}, "adam_lr"), ({"n_compare": 0}, "n_compare"),
               ({"seed": -1}, "seed"), ({"device": "tpu"}, "device"),
               ({"tuning_seed": -2}, "tuning_seed")],
    "03_distillation": [({"alpha": -0.5}, "alpha"), ({"T": 0.0}, "T"), ({"T": -2.0}, "T"),
                        ({"direction": "sideways"}, "direction"), ({"scenario": "online"}, "scenario")],
    "05_replay": [({"memory": -10}, "memory"), ({"memory_sizes": [50, 0]}, "memory_sizes"),
                  ({"memory_sizes": [300, 100]}, "memory_sizes"), ({"epochs": 0}, "epochs"),
                  ({"er_betas": [1.0, -2.0]}, "er_betas"), ({"der_alphas": "big"}, "der_alphas"),
                  ({"seed": -1}, "seed")],
    "08_llm_case_study": [({"real_model": "no-such-model"}, "real_model"),
                          ({"lora_targets": ["q_proj"]}, "lora_targets"), ({"methods": ["lora"]}, "methods"),
                          ({"ft_steps": 0}, "ft_steps"), ({"real_steps": 0}, "real_steps"),
                          ({"tuning_seed": -1}, "tuning_seed")],
}


def parameters_of(path: Path) -> set[str]:
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    return {line.split("=")[0].strip() for line in cell.source.splitlines()
            if "=" in line and not line.lstrip().startswith("#")}


def run(path: Path, out: Path, **parameters) -> nbformat.NotebookNode:
    env = {"CFUTILS_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    os.environ.update(env)
    pm.execute_notebook(str(path), str(out), parameters=parameters, kernel_name="python3",
                        cwd=str(path.parent), progress_bar=False, log_output=False)
    return nbformat.read(out, as_version=4)


def bad_cases():
    for path in NOTEBOOKS:
        names = parameters_of(path)
        cases = [c for c in COMMON_BAD if set(c[0]) <= names] + BAD_PARAMETERS.get(path.stem, [])
        for overrides, word in cases:
            yield pytest.param(path, overrides, word, id=f"{path.stem}-{'-'.join(map(str, overrides.items()))}")


def test_toc_lists_notebooks():
    assert NOTEBOOKS, "_toc.yml lists no chapter notebooks"
    for path in NOTEBOOKS:
        assert path.exists(), f"{path} is in _toc.yml but missing"


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_smoke_profile_runs(path: Path, tmp_path: Path):
    nb = run(path, tmp_path / path.name, profile="smoke")
    assert not nb.metadata.papermill.get("exception"), f"{path.name} failed in the smoke profile"


@pytest.mark.notebook
@pytest.mark.parametrize(("path", "overrides", "word"), list(bad_cases()))
def test_bad_parameters_fail_in_validation_cell(path: Path, overrides: dict, word: str, tmp_path: Path):
    out = tmp_path / path.name
    with pytest.raises(pm.PapermillExecutionError) as info:
        run(path, out, **({"profile": "smoke"} | overrides))   # an override may replace the profile itself
    assert info.value.ename == "ValueError", info.value.evalue
    assert word in info.value.evalue, f"the error does not name {word!r}: {info.value.evalue}"
    nb = nbformat.read(out, as_version=4)
    # papermill inserts red markdown cells (one at the top, one above the failing cell): not the notebook's own
    cells = [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]
    tags = [c.metadata.get("tags", []) for c in cells]
    injected = next(i for i, t in enumerate(tags) if "injected-parameters" in t)
    failed = next(i for i, c in enumerate(cells)
                  if any(o.get("output_type") == "error" for o in c.get("outputs", [])))
    assert failed == injected + 1, "bad parameters must fail in the validation cell, before any long work"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_anatomy(path: Path):
    """Colab cell hidden and pointing at the repository of _config.yml; parameters with a profile; clean metadata."""
    repo = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    colab = code[0]
    assert "remove-cell" in colab.metadata.get("tags", []) and "google.colab" in colab.source
    assert f"git+{repo}" in colab.source
    params = code[1]
    assert "parameters" in params.metadata.get("tags", []) and 'profile = "book"' in params.source
    assert nb.metadata.kernelspec.name == "python3" and "papermill" not in nb.metadata
    assert all("execution" not in c.metadata for c in nb.cells), "timing metadata: use scripts/execute_notebooks.py"
    executed = [c for c in code[1:] if c.source.strip()]
    assert all(c.execution_count is not None for c in executed), "commit notebooks executed"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
