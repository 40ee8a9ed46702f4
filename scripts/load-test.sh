#!/usr/bin/env bash
# Gateway load test with a real load tool (wrk, installed from Debian's packages if
# missing): the same keep-alive GET straight to an echo pod, then through portcullis over
# HTTP and over HTTPS. Prints wrk's requests/s and latency percentiles for each.
#   scripts/load-test.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..." >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/portcullis"
work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-load.XXXXXX")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cp examples/manifests/*.yaml "$work/"
"$bin" certs --host shop.example.test --secret shop-tls --secret-namespace demo --out "$work/tls" >/dev/null 2>&1
cp "$work/tls/secret.yaml" "$work/40-shop-tls.yaml"
# A host without TLS, so plain HTTP is proxied rather than redirected.
cat > "$work/50-plain.yaml" <<'YAML'
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: plain, namespace: demo}
spec:
  ingressClassName: portcullis
  rules:
    - host: plain.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
YAML
for i in 2 3 4 5; do
  "$bin" echo --addr "127.0.0.$i:8080" --name "pod-$i" 2>/dev/null &
  pids+=($!)
done
# Access log off: it would measure the terminal, not the proxy.
# No drain delay: the cleanup's SIGTERM should end the run at once.
printf 'ingress: {accessLog: false}\nshutdown: {drainDelaySeconds: 0}\n' > "$work/settings.yaml"
RUST_LOG=warn "$bin" serve --manifests "$work" --config "$work/settings.yaml" \
  --webhook-addr 127.0.0.1:18443 --admin-addr 127.0.0.1:19090 \
  --http-addr 127.0.0.1:19080 --https-addr 127.0.0.1:19443 --cert-dir "$work/wh" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do curl -sf 127.0.0.1:19090/readyz >/dev/null && break; sleep 0.1; done
run() {
  echo "== $1"
  shift
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" | grep -E 'Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors'
}
run "direct to the pod (HTTP/1.1 keep-alive)" http://127.0.0.4:8080/
run "through portcullis, HTTP" -H 'Host: plain.example.test' http://127.0.0.1:19080/
run "through portcullis, HTTPS" -H 'Host: shop.example.test' https://127.0.0.1:19443/api/
