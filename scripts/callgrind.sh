#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind while the side-by-side
# harness (../shared/perf) loads the proxy. CPU time per request moves by 10-40 % between
# runs on a shared host; instruction counts of the same build repeat within about 1-2 %,
# so two builds of the request path can be told apart by a change of a few hundred
# instructions (docs/PERFORMANCE.md, "Counting instructions").
#
#   scripts/callgrind.sh TEST [BINARY] [OUT]
#
# TEST is a harness test (http, https, h2); BINARY defaults to target/release/portcullis;
# the profile is written to OUT (default /tmp/callgrind-TEST.out) for callgrind_annotate.
# Instrumentation is switched on once the load has run for a while (the clients' TLS
# handshakes are done), for 6 s, and the requests of that window are read from the
# proxy's /metrics. Under valgrind the proxy runs about 50 times slower, so the load side
# always has requests waiting: batching differs from a real run, equally for both builds.
set -euo pipefail
cd "$(dirname "$0")/.."

test_name="${1:?usage: $0 TEST [BINARY] [OUT]}"
binary="${2:-target/release/portcullis}"
out="${3:-/tmp/callgrind-$test_name.out}"
harness=../shared/perf
[ -x "$harness/run.sh" ] || { echo "callgrind: no harness at $harness" >&2; exit 2; }
[ -x "$binary" ] || { echo "callgrind: no binary at $binary (cargo build --release)" >&2; exit 2; }
if ! command -v valgrind >/dev/null; then
    echo "callgrind: installing valgrind (Debian package)" >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    $sudo_cmd apt-get install -y valgrind >/dev/null
fi

work="$(mktemp -d)"
rm -f "$out"
candidate="valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=$out $binary"
candidate+=' serve --config "$PERF_CONFIG_DIR/config.yaml" --manifests "$PERF_MANIFESTS"'
candidate+=' --http-addr "127.0.0.1:$PERF_HTTP_PORT" --https-addr "127.0.0.1:$PERF_HTTPS_PORT"'
candidate+=' --webhook-addr "127.0.0.1:$PERF_WEBHOOK_PORT" --admin-addr "127.0.0.1:$PERF_ADMIN_PORT"'
"$harness/run.sh" --rounds 1 --duration 16 --ready-timeout 120 --tests "$test_name" --targets "" \
    --out "$work/run" --candidate-name portcullis --candidate-dir "$harness/candidates/portcullis" \
    --candidate "$candidate" >"$work/run.log" 2>&1 &
harness_pid=$!

pid=""
for _ in $(seq 1 600); do
    # The harness' own command line carries the candidate's too: match valgrind's.
    pid="$(pgrep -f "^[^ ]*valgrind[.a-z]* --tool=callgrind .*callgrind-out-file=$out" | head -1 || true)"
    [ -n "$pid" ] && break
    sleep 0.2
done
[ -n "$pid" ] || { echo "callgrind: the proxy did not start (see $work/run.log)" >&2; exit 1; }
admin="$(tr '\0' ' ' </proc/"$pid"/cmdline | grep -o -- '--admin-addr [0-9.:]*' | awk '{print $2}')"

# The load has started when the proxy's CPU time climbs; its handshakes come first.
cpu() { awk '{print $14 + $15}' /proc/"$pid"/stat; }
prev="$(cpu)"
for _ in $(seq 1 600); do
    sleep 0.5
    now="$(cpu)"
    [ $((now - prev)) -ge 40 ] && break
    prev="$now"
done
sleep 8
requests() {
    curl -s "http://$admin/metrics" |
        awk '/^portcullis_ingress_requests_total\{/ {s += $NF} END {print s + 0}'
}
first="$(requests)"
callgrind_control -i on "$pid" >/dev/null 2>&1
sleep 6
callgrind_control -i off "$pid" >/dev/null 2>&1
last="$(requests)"
wait "$harness_pid" || true

total="$(awk '/^totals:/ {print $2; exit}' "$out"* 2>/dev/null || true)"
served=$((last - first))
if [ -z "$total" ] || [ "$served" -le 0 ]; then
    echo "callgrind: nothing counted (see $work/run.log)" >&2
    exit 1
fi
echo "$test_name: $served requests in the window, $((total / served)) instructions per request"
echo "profile: $out (callgrind_annotate --inclusive=yes $out)"
rm -rf "$work"
