# syntax=docker/dockerfile:1
# The portcullis image: a release build on Debian bookworm, run on distroless cc (glibc
# and libgcc, which the binary and its ring and aws-lc code need; no shell, no package manager),
# as the non-root user. Build: docker build -t ghcr.io/portcullis/portcullis:0.1.0 .

FROM rust:1.95-bookworm AS build
WORKDIR /src
# Cargo.toml names every bench target, so benches/ must be present for the manifest to
# load even though nothing here builds them.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin portcullis \
    && cp target/release/portcullis /portcullis

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /portcullis /portcullis
# distroless's "nonroot" user, by number: the kubelet can only verify runAsNonRoot for a
# numeric USER.
USER 65532:65532
# webhook, ingress HTTP, ingress HTTPS, admin (/healthz, /readyz, /metrics)
EXPOSE 8443 9080 9443 9090
ENTRYPOINT ["/portcullis"]
CMD ["serve"]
