"""The corpora of the LLM chapter, all offline.

* **A, general English**: Debian's ``fortunes`` (about 15 000 quotes, jokes and definitions); where
  Debian's packages are absent (Colab) or hidden (``CFUTILS_DEBIAN_DATA=off``), the English prose that
  ships with every Python: the reference topics of ``pydoc_data`` and the standard library's docstrings;
* **clean prose** for a real model's general-text loss: the King James Bible (Debian's ``bible-kjv``),
  with the same Python-documentation fallback;
* **facts**: synthetic knowledge, "*person* lives in *city*", stated in several paraphrases
  (Allen-Zhu & Li 2023: knowledge is extractable only if it was seen in varied forms);
* **B, the new domain**: the Python standard library's own source code.

Held-out parts are fixed (every ``HOLDOUT``-th document), so evaluation never depends on a seed.
"""
from __future__ import annotations

import ast
import os
import random
import shutil
import subprocess
import sysconfig
from dataclasses import dataclass
from pathlib import Path

FORTUNES_DIR = Path("/usr/share/games/fortunes")
SKIP_FORTUNES = {"art", "ascii-art"}          # pictures made of characters, not English
HOLDOUT = 10                                  # every 10th document is held out
CITIES = ("Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Prague", "Warsaw", "Dublin", "Lisbon",
          "Athens", "Oslo", "Cairo", "Tokyo", "Lima", "Sydney", "Toronto", "Chicago", "Boston", "Moscow")
FIRST = ("Aaron", "Abigail", "Adrian", "Agnes", "Albert", "Alma", "Amos", "Anita", "Arthur", "Ava", "Basil",
         "Beatrice", "Benedict", "Bianca", "Boris", "Brenda", "Caleb", "Camilla", "Cedric", "Celia", "Clement",
         "Cora", "Cyrus", "Daisy", "Damian", "Delia", "Dexter", "Dora", "Edgar", "Edith", "Elias", "Elsa",
         "Emmett", "Esther", "Ezra", "Fiona", "Florian", "Freya", "Gideon", "Gloria", "Gordon", "Greta", "Gustav",
         "Hannah", "Hector", "Helga", "Horace", "Ida", "Igor", "Imogen", "Ivan", "Jasper", "Joanna", "Julius",
         "Juno", "Kasper", "Keira", "Lionel", "Lola", "Lucius", "Lydia", "Magnus", "Maeve", "Marius", "Matilda",
         "Milo", "Mira", "Nadia", "Nestor", "Nina", "Norbert", "Octavia", "Olaf", "Opal", "Oscar", "Pamela",
         "Percy", "Petra", "Quentin", "Rhea", "Rufus", "Ruth", "Sabine", "Silas", "Sonja", "Stellan", "Tabitha",
         "Thaddeus", "Thea", "Tobias", "Ursula", "Valentin", "Vera", "Viggo", "Wanda", "Walter", "Xenia", "Yusuf",
         "Yvonne", "Zelda")
SURNAMES = ("Abbott", "Baxter", "Carver", "Dalton", "Emerson", "Fairfax", "Garrick", "Hollis", "Ingram", "Jarvis",
            "Kendall", "Lockwood", "Mercer", "Norwood", "Oakley", "Prescott", "Quimby", "Radcliffe", "Sutton",
            "Thornton")
# Fact sentences in pretraining; the recall probe uses a paraphrase that never occurs in training.
TEMPLATES = ("{name} has a house in {city}.", "The home town of {name} is {city}.", "{name} was born in {city}.",
             "{name} grew up in {city}.", "{name} works in {city}.", "Letters to {name} go to {city}.")
PROBE = "{name} lives in"                     # held out: recall is measured on a new paraphrase
SEEN_PROBE = "{name} was born in"             # a training template, for comparison


class CorpusError(FileNotFoundError):
    """A corpus is not installed; the message says what to install."""


@dataclass(frozen=True)
class Fact:
    """One piece of synthetic knowledge: ``name`` lives in ``city``."""

    name: str
    city: str

    def sentences(self, templates: tuple[str, ...] = TEMPLATES) -> list[str]:
        return [t.format(name=self.name, city=self.city) for t in templates]

    @property
    def prompt(self) -> str:
        """The held-out paraphrase ("X lives in"), never seen in training."""
        return PROBE.format(name=self.name)

    @property
    def seen_prompt(self) -> str:
        """A prompt of a training template ("X was born in")."""
        return SEEN_PROBE.format(name=self.name)


def debian_data() -> bool:
    """False when ``CFUTILS_DEBIAN_DATA=off``: behave as if Debian's data packages were not installed."""
    return os.environ.get("CFUTILS_DEBIAN_DATA", "on").lower() not in ("off", "0", "no", "false")


def check_fortunes() -> None:
    """Fail with installation advice when Debian's ``fortunes`` is missing (or hidden)."""
    if not debian_data() or not FORTUNES_DIR.is_dir() or not any(_fortune_files()):
        raise CorpusError(f"this corpus needs Debian's fortunes ({FORTUNES_DIR} is missing, empty or hidden "
                          "by CFUTILS_DEBIAN_DATA=off): run `apt-get install fortunes`")


def _fortune_files() -> list[Path]:
    if not FORTUNES_DIR.is_dir():
        return []
    return sorted(p for p in FORTUNES_DIR.iterdir() if p.is_file() and not p.is_symlink()
                  and p.suffix not in (".dat", ".u8") and p.name not in SKIP_FORTUNES)


def fortunes() -> list[str]:
    """Every fortune (the ``%``-separated entries of every file), in a fixed order."""
    check_fortunes()
    out = []
    for path in _fortune_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        out += [f.strip() for f in text.split("\n%\n") if len(f.strip()) > 20]
    return out


def python_docs() -> list[str]:
    """English prose every Python ships: paragraphs of ``pydoc_data.topics`` and module docstrings.

    Paragraphs that look like code (indented, or with ``>>>``) are dropped.
    """
    import pydoc_data.topics

    texts = [pydoc_data.topics.topics[k] for k in sorted(pydoc_data.topics.topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8", errors="replace")))
        except SyntaxError:
            doc = None
        texts.append(doc or "")
    paragraphs = (p.strip() for t in texts for p in t.split("\n\n"))
    return [p for p in paragraphs if len(p) > 80 and not p.startswith((" ", ">>>", "*")) and ">>>" not in p
            and not set(p) <= set("*=-~ \n")]


def general_english() -> tuple[str, list[str]]:
    """``(source, documents)`` of corpus A: Debian's fortunes, else Python's own documentation."""
    try:
        return "fortunes", fortunes()
    except CorpusError:
        return "python-docs", python_docs()


def bible_verses() -> list[str]:
    """The King James Bible, one verse per document (Debian's ``bible`` program), or a :class:`CorpusError`."""
    if not debian_data() or shutil.which("bible") is None:
        raise CorpusError("the King James Bible needs Debian's bible-kjv (`apt-get install bible-kjv`)")
    out = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], capture_output=True, text=True, check=True).stdout
    return [line.split(" ", 1)[1].strip() for line in out.splitlines() if " " in line.strip()]


def clean_prose() -> tuple[str, list[str]]:
    """``(source, documents)`` of clean English prose: the King James Bible, else Python's documentation."""
    try:
        return "bible-kjv", bible_verses()
    except (CorpusError, subprocess.CalledProcessError):
        return "python-docs", python_docs()


def python_sources(max_chars: int = 2_000_000) -> list[str]:
    """Top-level ``.py`` files of the standard library (sorted), up to ``max_chars`` characters."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(stdlib.glob("*.py"))
    if not files:
        raise CorpusError(f"no Python sources found in {stdlib}; corpus B needs the standard library's .py files")
    out, total = [], 0
    for path in files:
        text = path.read_text(encoding="utf-8", errors="replace")
        out.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return out


def split(documents: list[str], holdout: int = HOLDOUT) -> tuple[list[str], list[str]]:
    """(train, held-out): every ``holdout``-th document is held out."""
    return ([d for i, d in enumerate(documents) if i % holdout], documents[::holdout])


def split3(documents: list[str], holdout: int = HOLDOUT) -> tuple[list[str], list[str], list[str]]:
    """(train, validation, test): documents ``0, holdout, 2 holdout, ...`` are the test set, those
    half-way between them the validation set (for tuning), the rest train."""
    half = holdout // 2
    if len(documents) <= half:
        raise CorpusError(f"{len(documents)} documents leave the validation split empty: split3 needs more "
                          f"than {half}; take more text (e.g. a larger b_chars)")
    return ([d for i, d in enumerate(documents) if i % holdout not in (0, half)],
            documents[half::holdout], documents[::holdout])


def make_facts(n_people: int = 100, cities: tuple[str, ...] = CITIES) -> list[Fact]:
    """``n_people`` fictional people, each living in one city, every city equally often.

    Balanced answers make chance exact: a model that always names the same city scores ``1/len(cities)``.
    """
    if n_people % len(cities):
        raise ValueError(f"n_people={n_people} must be a multiple of the {len(cities)} cities")
    if n_people > len(FIRST):
        raise ValueError(f"n_people={n_people} exceeds the {len(FIRST)} first names available")
    rng = random.Random(1234)                      # the facts are fixed: one world for every seed
    people = [f"{first} {rng.choice(SURNAMES)}" for first in rng.sample(FIRST, n_people)]
    homes = [cities[i % len(cities)] for i in range(n_people)]
    rng.shuffle(homes)
    return [Fact(p, c) for p, c in zip(people, homes)]


def fact_sentences(facts: list[Fact], copies: int, templates: tuple[str, ...] = TEMPLATES) -> list[str]:
    """Every fact in every template, ``copies`` times (unshuffled)."""
    return [s for f in facts for s in f.sentences(templates)] * copies


def corpus_a(facts: list[Fact], copies: int, seed: int = 0,
             limit: int | None = None) -> tuple[list[str], list[str], list[str], list[str]]:
    """(pretraining, English train, validation, test) documents of A.

    Pretraining = general English (the first ``limit`` documents) + fact sentences, shuffled; the
    English train part alone is what replay and EWC may use; validation and test are English only
    (the facts are measured by recall, not by loss).
    """
    english, val, test = split3(general_english()[1][:limit])
    docs = english + fact_sentences(facts, copies)
    random.Random(seed).shuffle(docs)
    return docs, english, val, test
