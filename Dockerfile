# syntax=docker/dockerfile:1
# The portcullis image: a release build on Debian bookworm, run on distroless cc (glibc
# and libgcc, which the binary and its ring and aws-lc code need; no shell, no package manager),
# as the non-root user. Build: docker build -t ghcr.io/portcullis/portcullis:0.1.0 .
#
# BUILD=pgo (the default) ships the build the side-by-side benchmark measures:
# scripts/build-pgo.sh builds an instrumented binary, loads it on loopback with
# scripts/load-test.sh (wrk, h2load) and rebuilds with the profile; about 17 minutes on
# 2 cores. BUILD=plain (--build-arg BUILD=plain) is `cargo build --release` alone, a few
# percent slower per request and quicker to build.

FROM rust:1.95-bookworm AS build
ARG BUILD=pgo
# The training load's tools, and llvm-profdata of the compiler's own LLVM to merge the
# profile (rustup's llvm-tools; build-pgo.sh finds it in the sysroot).
RUN if [ "$BUILD" = pgo ]; then \
        apt-get update \
        && apt-get install -y --no-install-recommends wrk nghttp2-client curl python3 \
        && rm -rf /var/lib/apt/lists/* \
        && rustup component add llvm-tools; \
    fi
WORKDIR /src
# Cargo.toml names every bench target, so benches/ must be present for the manifest to
# load even though nothing here builds them. scripts/ and examples/ are the training load.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY scripts ./scripts
COPY examples ./examples
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    case "$BUILD" in \
      pgo) scripts/build-pgo.sh && cp target/pgo/portcullis /portcullis ;; \
      plain) cargo build --release --locked --bin portcullis \
             && cp target/release/portcullis /portcullis ;; \
      *) echo "BUILD is pgo or plain, not '$BUILD'" >&2; exit 1 ;; \
    esac

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /portcullis /portcullis
# distroless's "nonroot" user, by number: the kubelet can only verify runAsNonRoot for a
# numeric USER.
USER 65532:65532
# webhook, ingress HTTP, ingress HTTPS, admin (/healthz, /readyz, /metrics)
EXPOSE 8443 9080 9443 9090
ENTRYPOINT ["/portcullis"]
CMD ["serve"]
