"""The bibliography holds each work once: no two entries share a key, a DOI, an arXiv id or a title."""
from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

import pytest

BIB = Path(__file__).resolve().parent.parent / "book" / "references.bib"


def braced(text: str, start: int) -> tuple[str, int]:
    """The text inside the brace group opening at ``text[start]``, and the index after its closing brace."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i], i + 1
    raise ValueError(f"unbalanced braces from character {start} of {BIB.name}")


def parse(text: str) -> list[tuple[str, dict[str, str]]]:
    """(key, {field: value}) of every entry; values in braces or quotes, nested braces allowed."""
    entries = []
    for head in re.finditer(r"@\w+\s*\{", text):
        body, _ = braced(text, head.end() - 1)
        key, _, rest = body.partition(",")
        fields, pos = {}, 0
        while (m := re.compile(r"\s*(\w+)\s*=\s*").match(rest, pos)):
            pos = m.end()
            if rest[pos] == "{":
                value, pos = braced(rest, pos)
            else:
                close = rest.index('"', pos + 1) if rest[pos] == '"' else rest.find(",", pos)
                close = len(rest) if close < 0 else close
                value, pos = rest[pos:close].strip('"'), close + (rest[pos] == '"')
            fields[m.group(1).lower()] = value
            pos = rest.find(",", pos) + 1 or len(rest)
        entries.append((key.strip(), fields))
    return entries


def identities(fields: dict[str, str]) -> list[str]:
    """What names the work: its normalised title and year (a conference paper and its later journal
    version are two publications), DOI and arXiv id."""
    title = re.sub(r"[^a-z0-9]", "", fields.get("title", "").lower())
    ids = [f"title {title} {fields.get('year', '').strip()}"]
    if "doi" in fields:
        ids.append(f"DOI {fields['doi'].lower().strip()}")
    arxiv = re.search(r"arxiv\.org/abs/([\d.]+)", fields.get("url", "")) or re.fullmatch(
        r"([\d.]+)(v\d+)?", fields.get("eprint", "").strip())
    if arxiv:
        ids.append(f"arXiv {arxiv.group(1)}")
    return ids


ENTRIES = parse(BIB.read_text(encoding="utf-8"))


def test_the_parser_reads_every_entry():
    assert len(ENTRIES) == len(re.findall(r"^@\w+\s*\{", BIB.read_text(encoding="utf-8"), re.M)) > 0
    assert all(fields.get("title") for _, fields in ENTRIES), "an entry without a title"


def test_no_two_entries_share_a_key():
    seen = defaultdict(int)
    for key, _ in ENTRIES:
        seen[key] += 1
    assert not [k for k, n in seen.items() if n > 1], f"duplicate keys: {[k for k, n in seen.items() if n > 1]}"


def test_no_two_entries_name_the_same_work():
    owners = defaultdict(list)
    for key, fields in ENTRIES:
        for identity in identities(fields):
            owners[identity].append(key)
    clashes = {identity: keys for identity, keys in owners.items() if len(keys) > 1}
    assert not clashes, f"one work under several keys (keep one key, cite it everywhere): {clashes}"


@pytest.mark.parametrize(("bib", "clash"), [
    ("@article{a, title={Same Title}, doi={10.1/x}}\n@misc{b, title={Other}, doi={10.1/X}}", "DOI"),
    ("@article{a, title={{LoRA}: Low-Rank}}\n@misc{b, title = \"LoRA: low-rank\"}", "title"),
    ("@misc{a, title={A}, eprint={1810.12488}}\n@misc{b, title={B}, url={https://arxiv.org/abs/1810.12488}}",
     "arXiv"),
])
def test_a_duplicate_is_caught(bib: str, clash: str):
    owners = defaultdict(list)
    for key, fields in parse(bib):
        for identity in identities(fields):
            owners[identity].append(key)
    assert [i for i, keys in owners.items() if len(keys) > 1 and i.startswith(clash)]
