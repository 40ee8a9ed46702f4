#!/usr/bin/env bash
# A candidate for ../shared/perf whose bench Ingress also carries CORS, a per-client rate
# limit (high enough never to refuse) and cookie affinity, to measure what those
# annotations cost on the request path (docs/PERFORMANCE.md). Arguments go to `serve`;
# --manifests is supplied here.
set -euo pipefail
: "${PERF_MANIFESTS:?run me from ../shared/perf/run.sh}"
# exec keeps the PID the harness measures; the copy stays behind in $TMPDIR (a few KiB).
dir=$(mktemp -d)
cp -r "$PERF_MANIFESTS"/. "$dir"/
python3 - "$dir/ingress-bench.yaml" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
line = re.search(r'^(\s*)"?nginx\.ingress\.kubernetes\.io/ssl-redirect"?: .*$', text, re.M)
if not line:
    sys.exit("ingress-bench.yaml: no ssl-redirect annotation to add beside")
pad = line.group(1)
extra = {
    "enable-cors": "true",
    "cors-allow-origin": "https://app.bench.local",
    "limit-rps": "1000000",
    "affinity": "cookie",
}
added = "".join(f'\n{pad}nginx.ingress.kubernetes.io/{k}: "{v}"' for k, v in extra.items())
open(path, "w").write(text[: line.end()] + added + text[line.end():])
PY
exec target/release/portcullis serve --manifests "$dir" "$@"
