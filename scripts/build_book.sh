#!/usr/bin/env bash
# Build the HTML book into _build/html from the committed, executed notebooks.
#   scripts/build_book.sh            render the committed outputs (~1 min after the first install)
#   scripts/build_book.sh --execute  re-execute every notebook (ci profile) first, then render
source "$(dirname "$0")/env.sh"
if [ "${1:-}" = "--execute" ]; then
    python scripts/execute_notebooks.py
fi
python scripts/vendor_mathjax.py      # the book's own MathJax (_vendor/mathjax), or one line saying why not
rm -rf _build
jupyter-book build . --all -W -n --keep-going
echo "[book] open _build/html/index.html"
