# syntax=docker/dockerfile:1
#
# shardgate's container image: the gateway alone, as a non-root user, on
# distroless (glibc, libgcc, CA certificates; no shell, no package manager).
#
#   docker build --build-arg SHARDGATE_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) -t shardgate .
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg SHARDGATE_BUILD_COMMIT=$(git rev-parse --short=12 HEAD) -t REGISTRY/shardgate:TAG --push .
#   docker run -e SHARDGATE_ADMIN_KEY=... -p 8888:8888 -p 127.0.0.1:9180:9180 \
#     -v shardgate-data:/data --stop-timeout 40 shardgate
#
# SHARDGATE_BUILD_COMMIT is the commit `shardgate_build_info` reports
# (.git is not in the build context); without it the image says "unknown".
#
# Multi-platform builds cross-compile: the builder runs on the build
# machine's own architecture (BUILDPLATFORM) and uses Debian's cross
# toolchain for the other one, so arm64 (AWS Graviton) images build at native
# speed on amd64 and the other way round, without emulation.

ARG RUST_VERSION=1.95
ARG DEBIAN_SUITE=bookworm

FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-${DEBIAN_SUITE} AS builder
ARG TARGETARCH
ARG BUILDARCH
WORKDIR /src

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# protoc and protobuf's well-known types: the etcd client's build script runs
# protoc on the build machine. For another target architecture, Debian's C and
# C++ cross compilers and C library (aws-lc-sys and ring compile C; aws-lc-sys
# needs nothing else for these two targets) and Rust's standard library for it.
# Debian package versions are not pinned: the suite's security updates replace
# them on the mirror, and a pin would break the build rather than secure it.
# hadolint ignore=DL3008
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) rust_target=x86_64-unknown-linux-gnu;  gnu=x86_64-linux-gnu;  cross=(gcc-x86-64-linux-gnu g++-x86-64-linux-gnu libc6-dev-amd64-cross) ;; \
      arm64) rust_target=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu; cross=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross) ;; \
      *) echo "TARGETARCH=$TARGETARCH: shardgate's image builds for amd64 and arm64" >&2; exit 1 ;; \
    esac; \
    [ "$TARGETARCH" != "$BUILDARCH" ] || cross=(); \
    apt-get update; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends protobuf-compiler libprotobuf-dev "${cross[@]}"; \
    rm -rf /var/lib/apt/lists/*; \
    rustup target add "$rust_target"; \
    echo "$rust_target" > /rust-target; \
    echo "$gnu" > /gnu-prefix

COPY . .

# The commit the binary reports (build.rs reads it from the environment,
# where a RUN after this line finds it).
ARG SHARDGATE_BUILD_COMMIT=""

# The registry and the target directory are BuildKit caches (one target
# directory per architecture), so a rebuild compiles only what changed.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=shardgate-target-${TARGETARCH},sharing=locked \
    set -eux; \
    rust_target="$(cat /rust-target)"; gnu="$(cat /gnu-prefix)"; \
    triple="$(echo "$rust_target" | tr 'a-z-' 'A-Z_')"; cc_triple="$(echo "$rust_target" | tr '-' '_')"; \
    export "CARGO_TARGET_${triple}_LINKER=${gnu}-gcc" "CC_${cc_triple}=${gnu}-gcc" \
           "CXX_${cc_triple}=${gnu}-g++" "AR_${cc_triple}=${gnu}-ar"; \
    cargo build --release --locked -p shardgate --target "$rust_target"; \
    install -D -m 0755 "target/$rust_target/release/shardgate" /out/usr/local/bin/shardgate; \
    mkdir -p /out/data

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="shardgate" \
      org.opencontainers.image.description="Edge gateway for online games: TLS/SNI stream gateway with an APISIX-compatible Admin API, caching HTTP edge, AWS WAF v2 rules" \
      org.opencontainers.image.source="https://github.com/shardgate/shardgate" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/usr/local/bin/shardgate /usr/local/bin/shardgate
COPY deploy/docker/shardgate.yaml /etc/shardgate/shardgate.yaml
# The data directory belongs to the user the gateway runs as (distroless's
# "nonroot", 65532), so a fresh named volume is writable.
COPY --from=builder --chown=65532:65532 /out/data /data
VOLUME ["/data"]
# Numeric, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# Players (TLS stream listener), Admin API, metrics and health.
EXPOSE 8888/tcp 9180/tcp 9091/tcp
# SIGTERM drains (see the README's "Drain"); give `docker stop` more than
# drain.delay + drain.timeout + 5 s.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/shardgate", "healthcheck", "--config", "/etc/shardgate/shardgate.yaml"]
ENTRYPOINT ["/usr/local/bin/shardgate"]
CMD ["run", "--config", "/etc/shardgate/shardgate.yaml"]
