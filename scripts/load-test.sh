#!/usr/bin/env bash
# Gateway load test with real load tools (wrk and h2load, installed from Debian's packages
# if missing): the same keep-alive GET straight to an echo pod, then through portcullis
# over HTTP, HTTPS and HTTP/2, requests that take the usual path (a rewrite, POSTs with a
# body), a route with an auth subrequest, a rate limit and a canary, a new TLS connection
# per request, and AdmissionReviews posted to the webhook.
# Prints each tool's requests/s and latency; a stage with failed or non-2xx answers fails
# the script.
#   scripts/load-test.sh [SECONDS] [CONNECTIONS]
# Environment:
#   POD_NET   first three octets of the echo pods' addresses (default 127.0.0; pods are
#             .2-.5, as in examples/manifests)
#   POD_PORT  the pods' port (default: a free one)
#   PORTCULLIS_BIN  a binary to load instead of building target/release/portcullis
#             (scripts/build-pgo.sh loads its instrumented build this way)
#   ACCESS_LOG  on: keep the access log on, as it is by default, writing to /dev/null
#             (default off: it would measure the terminal, not the proxy)
# The listeners' ports are picked free at start, so nothing else on the machine can be
# mistaken for the gateway.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
pod_net=${POD_NET:-127.0.0}
# fd 3 takes serve's standard output: the access log's lines when it is on.
access_log=false
case "${ACCESS_LOG:-off}" in
  on) access_log=true; exec 3>/dev/null ;;
  off) exec 3>&1 ;;
  *) echo "load-test: ACCESS_LOG is on or off, not '$ACCESS_LOG'" >&2; exit 2 ;;
esac
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)..." >&2
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  ($sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "${missing[@]}") >/dev/null
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pod_port=${POD_PORT:-$(free_port)}
http_port=$(free_port); https_port=$(free_port); admin_port=$(free_port); webhook_port=$(free_port)
if [ -n "${PORTCULLIS_BIN:-}" ]; then
  bin="$PORTCULLIS_BIN"
else
  echo "building portcullis (release)..." >&2
  cargo build --release --quiet
  bin="${CARGO_TARGET_DIR:-target}/release/portcullis"
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-load.XXXXXX")
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir "$work/manifests"
cp examples/manifests/*.yaml "$work/manifests/"
# The example's pods, moved to the chosen addresses and port.
sed -i -e "s/127\.0\.0\./$pod_net./g" -e "s/8080/$pod_port/g" "$work/manifests/30-endpoints.yaml" "$work/manifests/20-services.yaml"
"$bin" certs --host shop.example.test --secret shop-tls --secret-namespace demo --out "$work/tls" >/dev/null 2>&1
cp "$work/tls/secret.yaml" "$work/manifests/40-shop-tls.yaml"
# A host without TLS, so plain HTTP is proxied rather than redirected.
cat > "$work/manifests/50-plain.yaml" <<'YAML'
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
# Features a route adds to the request path, so they are in the build-pgo.sh profile too:
# an auth subrequest (to a pod, which answers 2xx), a rate limit no stage reaches, and a
# canary taking half the requests.
cat > "$work/manifests/60-features.yaml" <<YAML
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: features
  namespace: demo
  annotations:
    nginx.ingress.kubernetes.io/auth-url: http://$pod_net.2:$pod_port/auth
    nginx.ingress.kubernetes.io/limit-rps: "1000000"
spec:
  ingressClassName: portcullis
  rules:
    - host: features.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: api, port: {number: 80}}}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: features-canary
  namespace: demo
  annotations:
    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-weight: "50"
spec:
  ingressClassName: portcullis
  rules:
    - host: features.example.test
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
YAML
for i in 2 3 4 5; do
  "$bin" echo --addr "$pod_net.$i:$pod_port" --name "pod-$i" 2>>"$work/pods.log" &
  pids+=($!)
done
# No drain delay: the cleanup's SIGTERM should end the run at once.
printf 'ingress: {accessLog: %s}\nshutdown: {drainDelaySeconds: 0}\n' "$access_log" > "$work/settings.yaml"
RUST_LOG=warn,rustls=error "$bin" serve --manifests "$work/manifests" --config "$work/settings.yaml" \
  --webhook-addr "127.0.0.1:$webhook_port" --admin-addr "127.0.0.1:$admin_port" \
  --http-addr "127.0.0.1:$http_port" --https-addr "127.0.0.1:$https_port" \
  --cert-dir "$work/wh" >&3 2>"$work/serve.log" &
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
  local out
  out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "$@")
  grep -E 'Requests/sec|Latency  |50%|99%|Non-2xx|Socket errors' <<<"$out"
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "load-test: answers other than 2xx/3xx in this stage" >&2
    exit 1
  fi
}
run "direct to the pod (HTTP/1.1 keep-alive)" "http://$pod_net.4:$pod_port/"
run "through portcullis, HTTP" -H 'Host: plain.example.test' "http://127.0.0.1:$http_port/"
run "through portcullis, HTTPS" -H 'Host: shop.example.test' "https://127.0.0.1:$https_port/api/"
h2() {
  echo "== $1"
  shift
  local out
  out=$(h2load -t1 -D "$secs" "$@")
  grep -E '^finished in|^requests:|^status codes:|^time for request:' <<<"$out"
  if ! grep -qE '^requests: .* 0 failed, 0 errored' <<<"$out"; then
    echo "load-test: failed requests in this stage" >&2
    exit 1
  fi
}
h2 "through portcullis, HTTP/2 over TLS ($conns connections x 4 streams)" -c"$conns" -m4 \
  -H ':authority: shop.example.test' "https://127.0.0.1:$https_port/api/"
# Requests the plain lane declines take the usual path (the phases, header maps).
run "through portcullis, HTTPS, a rewritten path (regex route, the usual path)" \
  -H 'Host: shop.example.test' "https://127.0.0.1:$https_port/legacy/items"
h2 "through portcullis, HTTP/2, POST with a body (the usual path)" -c"$conns" -m4 \
  -d examples/review-pod.json -H ':authority: shop.example.test' "https://127.0.0.1:$https_port/api/"
h2 "through portcullis, HTTP/1.1, POST with a body (the usual path)" --h1 -c"$conns" \
  -d examples/review-pod.json -H ':authority: plain.example.test' "http://127.0.0.1:$http_port/api/"
run "through portcullis, HTTP, auth subrequest, rate limit and canary" \
  -H 'Host: features.example.test' "http://127.0.0.1:$http_port/api/"
run "through portcullis, HTTPS, a new TLS connection per request" \
  -H 'Host: shop.example.test' -H 'Connection: close' "https://127.0.0.1:$https_port/api/"
h2 "AdmissionReviews to the webhook (HTTP/1.1 over TLS)" --h1 -c"$conns" \
  -d examples/review-pod.json -H 'content-type: application/json' \
  "https://127.0.0.1:$webhook_port/validate"
if [ -s "$work/serve.log" ]; then
  echo "== warnings from portcullis serve"
  cat "$work/serve.log"
fi
