"""Notebooks render cfutils' own source instead of pasting a copy."""
from cfutils import metrics
from cfutils.methods import Joint
from cfutils.show import show_source, source


def test_source_is_the_real_code():
    assert source(metrics.bwt).startswith("def bwt(")
    assert "class Joint(Method)" in source(Joint)


def test_show_source_is_a_python_markdown_block():
    md = show_source(metrics.acc)
    assert md.data.startswith("```python\ndef acc(") and md.data.endswith("\n```")
