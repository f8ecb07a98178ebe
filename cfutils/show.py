"""Show cfutils' own source in a notebook, so chapters display the code they run instead of a copy."""
from __future__ import annotations

import inspect
from typing import Any


def source(obj: Any) -> str:
    """The source code of a function, class or module."""
    return inspect.getsource(obj)


def show_source(obj: Any) -> Any:
    """Render the source of ``obj`` as a highlighted Python block (Markdown display object)."""
    from IPython.display import Markdown

    return Markdown(f"```python\n{source(obj).rstrip()}\n```")
