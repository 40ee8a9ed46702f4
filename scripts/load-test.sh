#!/usr/bin/env bash
# Gateway load test with a real load tool (wrk, installed from Debian's packages if
# missing): the same keep-alive GET straight to an echo pod, then through portcullis over
# HTTP and over HTTPS. Prints wrk's requests/s and latency percentiles for each.
#   scripts/load-test.sh [SECONDS] [CONNECTIONS]
# Environment:
#   POD_NET   first three octets of the echo pods' addresses (default 127.0.0; pods are
#             .2-.5, as in examples/manifests)
#   POD_PORT  the pods' port (default: a free one)
# The listeners' ports are picked free at start, so nothing else on the machine can be
# mistaken for the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
pod_net=${POD_NET:-127.0.0}
if ! command -v wrk >/dev/null; then
  echo "installing wrk (Debian package)..." >&2
  (apt-get update -qq && apt-get install -y -qq wrk) >/dev/null
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pod_port=${POD_PORT:-$(free_port)}
http_port=$(free_port); https_port=$(free_port); admin_port=$(free_port); webhook_port=$(free_port)
echo "building portcullis (release)..." >&2
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/portcullis"
work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-load.XXXXXX")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cp examples/manifests/*.yaml "$work/"
# The example's pods, moved to the chosen addresses and port.
sed -i -e "s/127\.0\.0\./$pod_net./g" -e "s/8080/$pod_port/g" "$work/30-endpoints.yaml" "$work/20-services.yaml"
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
  "$bin" echo --addr "$pod_net.$i:$pod_port" --name "pod-$i" 2>>"$work/pods.log" &
  pids+=($!)
done
# Access log off: it would measure the terminal, not the proxy.
# No drain delay: the cleanup's SIGTERM should end the run at once.
printf 'ingress: {accessLog: false}\nshutdown: {drainDelaySeconds: 0}\n' > "$work/settings.yaml"
RUST_LOG=warn "$bin" serve --manifests "$work" --config "$work/settings.yaml" \
  --webhook-addr "127.0.0.1:$webhook_port" --admin-addr "127.0.0.1:$admin_port" \
  --http-addr "127.0.0.1:$http_port" --https-addr "127.0.0.1:$https_port" \
  --cert-dir "$work/wh" 2>"$work/serve.log" &
serve_pid=$!
pids+=("$serve_pid")
ready=
for _ in $(seq 100); do
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "portcullis serve exited:" >&2
    cat "$work/serve.log" >&2
    exit 1
  fi
  # Ready only counts from our own process: it must still be running when it answers.
  if curl -sf "127.0.0.1:$admin_port/readyz" >/dev/null && kill -0 "$serve_pid" 2>/dev/null; then
    ready=1
    break
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "portcullis serve did not become ready:" >&2
  cat "$work/serve.log" >&2
  exit 1
fi
if [ -s "$work/pods.log" ]; then
  echo "echo pods reported errors:" >&2
  cat "$work/pods.log" >&2
  exit 1
fi
run() {
  echo "== $1"
  shift
  wrk -t1 -c"$conns" -d"${secs}s" --latency "$@" | grep -E 'Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors'
}
run "direct to the pod (HTTP/1.1 keep-alive)" "http://$pod_net.4:$pod_port/"
run "through portcullis, HTTP" -H 'Host: plain.example.test' "http://127.0.0.1:$http_port/"
run "through portcullis, HTTPS" -H 'Host: shop.example.test' "https://127.0.0.1:$https_port/api/"
if [ -s "$work/serve.log" ]; then
  echo "== warnings from portcullis serve"
  cat "$work/serve.log"
fi
