#!/usr/bin/env bash
# Runs the example: four echo "pods" on 127.0.0.2-5, a TLS Secret for shop.example.test
# generated on the spot, and portcullis serving the gateway, the webhook and the admin
# listener from examples/manifests (copied to a scratch directory so edits stay local).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "building portcullis (the first build takes a few minutes on a small machine)..." >&2
cargo build
bin="${CARGO_TARGET_DIR:-target}/debug/portcullis"
work=$(mktemp -d "${TMPDIR:-/tmp}/portcullis-example.XXXXXX")
cp examples/manifests/*.yaml "$work/"
"$bin" certs --host shop.example.test --secret shop-tls --secret-namespace demo --out "$work/tls" >/dev/null
cp "$work/tls/secret.yaml" "$work/40-shop-tls.yaml"
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
for i in 2 3 4 5; do
  "$bin" echo --addr "127.0.0.$i:8080" --name "pod-$i" &
  pids+=($!)
done
# Each address must answer as the pod started here: another process on 127.0.0.x:8080
# would answer the README's first request with its own 200.
for i in 2 3 4 5; do
  ok=
  for _ in $(seq 50); do
    if ! kill -0 "${pids[$((i - 2))]}" 2>/dev/null; then
      echo "echo pod pod-$i could not start on 127.0.0.$i:8080 (see the error above)" >&2
      exit 1
    fi
    reply=$(curl -s --max-time 1 "http://127.0.0.$i:8080/" 2>/dev/null || true)
    case "$reply" in *"\"pod-$i\""*) ok=1; break ;; esac
    sleep 0.1
  done
  if [ -z "$ok" ]; then
    echo "127.0.0.$i:8080 does not answer as pod-$i (another process there?): ${reply:-no answer}" >&2
    exit 1
  fi
done
echo "manifests: $work (edit them: changes apply live)"
echo "for the README's examples, in another shell: export DIR=$work"
echo "try: curl -s --resolve shop.example.test:9443:127.0.0.1 --cacert \$DIR/tls/ca.crt https://shop.example.test:9443/"
# No drain delay unless asked for: Ctrl-C should stop a local run at once (the 5 s
# default is for load balancers in a cluster).
case " $* " in *" --drain-delay"*) ;; *) set -- --drain-delay 0 "$@" ;; esac
"$bin" serve --manifests "$work" --webhook-addr 127.0.0.1:8443 --admin-addr 127.0.0.1:9090 \
  --http-addr 127.0.0.1:9080 --https-addr 127.0.0.1:9443 --https-redirect-port 9443 \
  --cert-dir "$work/webhook-certs" "$@"
