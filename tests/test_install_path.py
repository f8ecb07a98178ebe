"""The install paths' pieces: Colab cells, pyproject's lower bounds, Binder's files (the venv checks themselves run
in CI through ``scripts/check_install_path.py``, not here: they take minutes)."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import check_install_path as cip  # noqa: E402
import set_colab_cell  # noqa: E402

TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
NOTEBOOKS = [ROOT / f"{c['file']}.ipynb" for part in TOC["parts"] for c in part["chapters"]
             if c["file"].startswith("notebooks/")]
IMAGE = [p for p in NOTEBOOKS if not p.stem.startswith("08")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_colab_cell_installs_from_the_checkout(path: Path, tmp_path: Path):
    installs = cip.colab_installs(path, tmp_path)
    specs = [a for args in installs for a in args if a.startswith("cfutils")]
    assert specs == [f"cfutils{'[llm]' if path.stem.startswith('08') else ''} @ {tmp_path.as_uri()}"], specs


@pytest.mark.parametrize("path", IMAGE, ids=[p.stem for p in IMAGE])
def test_image_chapters_have_the_canonical_cell(path: Path):
    assert set_colab_cell.set_cell(path, set_colab_cell.cell_source(llm=False), check=True), \
        f"run scripts/set_colab_cell.py {path.relative_to(ROOT)}"


def test_set_colab_cell_changes_only_that_source(tmp_path: Path):
    src = NOTEBOOKS[0]
    copy = tmp_path / src.name
    shutil.copy(src, copy)
    assert not set_colab_cell.set_cell(copy, "import sys\nif 'google.colab' in sys.modules:\n    pass", check=False)
    before, after = json.loads(src.read_text()), json.loads(copy.read_text())
    changed = [i for i, (a, b) in enumerate(zip(before["cells"], after["cells"])) if a != b]
    colab = next(i for i, c in enumerate(before["cells"]) if c["cell_type"] == "code")
    assert changed == [colab] and before["metadata"] == after["metadata"]
    assert {k: v for k, v in before["cells"][colab].items() if k != "source"} == \
           {k: v for k, v in after["cells"][colab].items() if k != "source"}
    assert set_colab_cell.set_cell(copy, "import sys\nif 'google.colab' in sys.modules:\n    pass", check=True)


def test_every_dependency_has_a_tested_lower_bound():
    bounds = dict(b.split("==") for b in cip.lower_bounds(("llm",)))
    assert {"torch", "transformers", "peft", "tokenizers", "accelerate", "gguf", "ipywidgets"} <= set(bounds)
    assert tuple(int(x) for x in bounds["transformers"].split(".")[:2]) >= (4, 56), "from_config(..., dtype=)"


def test_requirements_pin_ipywidgets_and_satisfy_the_bounds():
    pins = cip.pins()
    assert "ipywidgets" in pins
    from packaging.version import Version
    for bound in cip.lower_bounds(("llm",)):
        name, low = bound.split("==")
        pinned = pins.get(name.lower())
        assert pinned is None or Version(pinned) >= Version(low), f"requirements.txt pins {name}=={pinned} < {low}"


def test_binder_files():
    apt = (ROOT / "apt.txt").read_text().split()
    env_sh = (ROOT / "scripts" / "env.sh").read_text()
    for package in ("dataset-fashion-mnist", "fortunes", "bible-kjv"):
        assert package in apt and package in env_sh
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in pip
    pins = cip.pins()
    assert f"torch=={pins['torch']}+cpu" in pip and f"torchvision=={pins['torchvision']}+cpu" in pip
    post = (ROOT / "postBuild").read_text()
    assert "--no-deps -r requirements-nodeps.txt" in post and (ROOT / "postBuild").stat().st_mode & 0o111
