#!/usr/bin/env bash
# Rewrites the generated annotation table in docs/MIGRATING.md from the catalogue.
set -euo pipefail
cd "$(dirname "$0")/.."
table=$(cargo run --quiet --locked -- migrate --list)
python3 - "$table" <<'PY'
import sys
path = "docs/MIGRATING.md"
start, end = "<!-- generated: portcullis migrate --list -->\n", "<!-- end generated -->"
doc = open(path).read()
head, rest = doc.split(start, 1)
_, tail = rest.split(end, 1)
open(path, "w").write(head + start + sys.argv[1] + "\n" + end + tail)
PY
