#!/usr/bin/env bash
# A release build of portcullis optimised with a profile of its own request path under
# load (profile-guided optimisation). The compiler learns which branches are taken and
# which calls are hot from a run of the real binary, and lays out and inlines the code
# for that; docs/PERFORMANCE.md ("A build guided by a profile") has what it buys.
#
#   scripts/build-pgo.sh [SECONDS]   → target/pgo/portcullis
#
# 1. An instrumented build (target/pgo/gen) counts every branch it takes.
# 2. scripts/load-test.sh loads it for SECONDS (default 5) per stage, once with the access
#    log on and once off: HTTP/1.1, HTTPS, HTTP/2, the usual path, a route with an auth
#    subrequest, a rate limit and a canary, a new TLS connection per request and webhook
#    reviews. Code no stage reaches is treated as cold and built for size, so every path
#    that matters must be in it.
# 3. llvm-profdata (the one of rustc's LLVM version; Debian's llvm-N package is
#    installed when missing) merges the counts.
# 4. The release build (target/pgo/use) reads them. `cargo build --release` is
#    untouched: its target/release/portcullis stays the plain build.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-5}
host="$(rustc -vV | sed -n 's/^host: //p')"
llvm_major="$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')"
[ -n "$host" ] && [ -n "$llvm_major" ] || { echo "build-pgo: cannot read rustc -vV" >&2; exit 1; }

# A profile is read only by the LLVM that wrote its format: prefer rustup's own tools,
# then the distribution's of the same major version.
profdata=""
for candidate in \
    "$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-profdata" \
    "$(command -v "llvm-profdata-$llvm_major" || true)" \
    "/usr/lib/llvm-$llvm_major/bin/llvm-profdata"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then
        profdata="$candidate"
        break
    fi
done
if [ -z "$profdata" ]; then
    echo "build-pgo: installing llvm-$llvm_major (Debian package) for llvm-profdata" >&2
    sudo_cmd=""
    [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
    ($sudo_cmd apt-get update -qq && $sudo_cmd apt-get install -y -qq "llvm-$llvm_major") >/dev/null
    profdata="/usr/lib/llvm-$llvm_major/bin/llvm-profdata"
fi

out="$PWD/target/pgo"
rm -rf "$out/raw" "$out/merged.profdata"
mkdir -p "$out"
# --target keeps RUSTFLAGS off build scripts and proc macros: only the binary's own
# code is instrumented, then optimised.
echo "build-pgo: instrumented build" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$out/raw" CARGO_TARGET_DIR="$out/gen" \
    cargo build --release --locked --quiet --target "$host" --bin portcullis

# The echo pods run the same binary and add their counts: hyper's HTTP/1 server code
# serves the gateway's own HTTP/1.1 clients and the webhook too. Two runs: the access log
# on, as deployments have it by default, and off, as the side-by-side benchmark has it;
# either path left out of the profile would be built as cold code.
: >"$out/training.log"
for access_log in on off; do
    echo "build-pgo: training run (ACCESS_LOG=$access_log scripts/load-test.sh $secs)" >&2
    ACCESS_LOG=$access_log PORTCULLIS_BIN="$out/gen/$host/release/portcullis" \
        scripts/load-test.sh "$secs" 64 >>"$out/training.log" 2>&1 \
        || { cat "$out/training.log" >&2; exit 1; }
done
ls "$out"/raw/*.profraw >/dev/null 2>&1 || { echo "build-pgo: the training run wrote no profile" >&2; exit 1; }
"$profdata" merge -o "$out/merged.profdata" "$out/raw"

echo "build-pgo: optimised build" >&2
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$out/merged.profdata" CARGO_TARGET_DIR="$out/use" \
    cargo build --release --locked --quiet --target "$host" --bin portcullis
cp "$out/use/$host/release/portcullis" "$out/portcullis"
echo "build-pgo: $out/portcullis" >&2
