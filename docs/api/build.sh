#!/bin/sh
# Build vmtest's API reference from the docstrings (Sphinx autodoc; warnings are errors):
#   HTML             -> docs/api/_build/html/index.html
#   plain text       -> docs/api.txt (committed; tests/unit/test_code_quality.py checks it is current)
# Run from anywhere; uses the checkout's .venv when there is one (./run setup makes it), else sphinx-build on PATH.
set -eu
repo=$(cd "$(dirname "$0")/../.." && pwd)
sphinx=sphinx-build
[ -x "$repo/.venv/bin/sphinx-build" ] && sphinx="$repo/.venv/bin/sphinx-build"
build="$repo/docs/api/_build"
"$sphinx" -W --keep-going -q -E -d "$build/doctrees" -b html "$repo/docs/api" "$build/html"
"$sphinx" -W --keep-going -q -E -d "$build/doctrees" -b text "$repo/docs/api" "$build/text"
cp "$build/text/index.txt" "$repo/docs/api.txt"
echo "docs/api.txt and $build/html/index.html are up to date"
