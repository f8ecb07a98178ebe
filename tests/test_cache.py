"""The store of records that are not RunSpec runs (chapter 8's language models, chapter 4's
multi-task pairs)."""
from cfutils import cache


def test_records_are_reused_and_a_wrong_or_corrupt_file_is_recomputed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CFUTILS_RESULTS", str(tmp_path))
    calls = []
    compute = (lambda: calls.append(1) or {"x": [1.5, 2]})
    spec = {"a": 1, "b": [1, 2]}
    assert cache.cached("toy", "t", spec, compute) == {"x": [1.5, 2]} == cache.cached("toy", "t", spec, compute)
    assert len(calls) == 1
    cache.cached("toy", "t", spec, compute, store=False)
    assert len(calls) == 2
    path = cache.path("toy", "t", spec)
    path.write_bytes(b"not gzip")
    assert cache.cached("toy", "t", spec, compute) == {"x": [1.5, 2]} and len(calls) == 3
    assert "unreadable" in capsys.readouterr().err
    other = cache.path("toy", "t", {"a": 2, "b": [1, 2]})
    other.write_bytes(path.read_bytes())                     # a record of another spec under this name
    cache.cached("toy", "t", {"a": 2, "b": [1, 2]}, compute)
    assert len(calls) == 4 and "another specification" in capsys.readouterr().err
    monkeypatch.setenv("CFUTILS_RECORDS", "off")
    cache.cached("toy", "t", spec, compute)
    assert len(calls) == 5
