#!/usr/bin/env bash
# Writes the webhook serving certificate that `kubectl apply -k manifests/` installs:
# manifests/certs/{tls.crt,tls.key,ca.crt}. kustomize turns them into the Secret
# portcullis-webhook-tls (mounted by the pods) and copies ca.crt into the caBundle of both
# webhook configurations (manifests/kustomization.yaml), so Secret and caBundle always
# come from the same files.
#
#   scripts/install-certs.sh            new CA + serving certificate for
#                                       portcullis-webhook.portcullis.svc; on a rotation
#                                       ca.crt keeps the previous CA after the new one
#   scripts/install-certs.sh --trim     drop the previous CA from ca.crt (after every pod
#                                       serves the new certificate)
#   options: --out DIR (default manifests/certs), --service NAME, --namespace NS
#
# Then: kubectl apply -k manifests/
#
# The CA's private key is never written: every run makes a new CA, which is why a
# rotation needs the overlap (docs/DEPLOY.md, "Certificate rotation"). The portcullis
# binary is $PORTCULLIS, else `portcullis` on PATH, else built with cargo.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$root/manifests/certs"
service=portcullis-webhook
namespace=portcullis
trim=false
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --service) service="$2"; shift 2 ;;
    --namespace) namespace="$2"; shift 2 ;;
    --trim) trim=true; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-certs.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
done

# The first certificate of a PEM file.
first_cert() {
  awk '/-----BEGIN CERTIFICATE-----/{p=1} p{print} /-----END CERTIFICATE-----/{if(p) exit}' "$1"
}

count_certs() {
  grep -c -- '-----BEGIN CERTIFICATE-----' "$1" || true
}

if $trim; then
  if [ ! -s "$out/ca.crt" ]; then
    echo "install-certs.sh: no $out/ca.crt to trim; run without --trim first" >&2
    exit 1
  fi
  first_cert "$out/ca.crt" > "$out/ca.crt.new"
  mv "$out/ca.crt.new" "$out/ca.crt"
  echo "kept only the current CA in $out/ca.crt; now: kubectl apply -k manifests/" >&2
  exit 0
fi

bin="${PORTCULLIS:-}"
if [ -z "$bin" ]; then
  if command -v portcullis >/dev/null 2>&1; then
    bin=portcullis
  else
    (cd "$root" && cargo build --quiet --bin portcullis)
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/portcullis"
  fi
fi

mkdir -p "$out"
previous=""
if [ -s "$out/ca.crt" ]; then
  # The CA the pods' current certificate chains to; the API server must keep trusting it
  # until every pod has reloaded the new one.
  previous="$(first_cert "$out/ca.crt")"
fi
# Its own report (and the caBundle it prints) would only repeat what follows.
if ! err="$("$bin" certs --service "$service" --namespace "$namespace" --out "$out" 2>&1 >/dev/null)"; then
  echo "$err" >&2
  exit 1
fi
if [ -n "$previous" ]; then
  printf '%s\n' "$previous" >> "$out/ca.crt"
fi
chmod 600 "$out/tls.key"
echo "wrote $out/tls.crt, tls.key and ca.crt ($(count_certs "$out/ca.crt") CA certificate(s)) for $service.$namespace.svc" >&2
if [ -n "$previous" ]; then
  echo "rotation: the caBundle trusts the new and the previous CA; once every pod serves" >&2
  echo "the new certificate, run: scripts/install-certs.sh --trim && kubectl apply -k manifests/" >&2
fi
echo "now: kubectl apply -k manifests/" >&2
