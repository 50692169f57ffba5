# syntax=docker/dockerfile:1
# switchyard's container image: a release build on Debian 12 (bookworm), run on distroless
# cc-debian12 (glibc, libgcc, CA certificates; no shell, no package manager) as a non-root
# user. The build compiles C too (the vendored Lua interpreter and the bundled SQLite) with
# the builder's gcc; TLS is rustls, so no OpenSSL is needed at run time.
#
#   docker build -t switchyard .
#   docker run --rm -p 8080:8080 -p 50051:50051 -v "$PWD/config:/etc/switchyard:ro" switchyard
#
# Why glibc on distroless rather than static musl on scratch: the gateway's hot path is
# allocation-heavy and musl's allocator is markedly slower than glibc's; the glibc build is
# the one docs/performance.md measures. The builder is bookworm so that the binary needs no
# newer glibc than the runtime image has. See docs/operations.md#container.

FROM rust:1.95-bookworm AS builder
WORKDIR /src
COPY . .
# The cache mounts keep crates.io downloads and compiled dependencies between builds; the
# binary is copied out of the cached target folder in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin switchyard \
    && install -D -m 0755 target/release/switchyard /out/usr/local/bin/switchyard \
    && install -d -m 0755 /out/var/lib/switchyard /out/etc/switchyard

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/usr/local/bin/switchyard /usr/local/bin/switchyard
# The config folder is mounted (a ConfigMap, or a host folder: mount the folder, not the
# file, so that hot reload sees saves); the state folder holds the embedded usage ledger
# when the config has no state.redis_url (set [state] dir = "/var/lib/switchyard").
COPY --from=builder /out/etc/switchyard /etc/switchyard
COPY --from=builder --chown=65532:65532 /out/var/lib/switchyard /var/lib/switchyard
WORKDIR /var/lib/switchyard
# distroless' "nonroot" user, by number, so that Kubernetes' runAsNonRoot can verify it.
USER 65532:65532
# HTTP (REST, gRPC over h2c, /healthz, /readyz, /metrics) and the separate gRPC listener.
EXPOSE 8080 50051
# No shell or curl here: the binary checks itself (GET /healthz, exit 0 or 1).
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/switchyard", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/switchyard"]
# The mounted file must listen on the exposed ports: server.http_addr = "0.0.0.0:8080"
# and server.grpc_addr = "0.0.0.0:50051" (the defaults are loopback only). Without a
# file, `serve --http-addr 0.0.0.0:8080 --grpc-addr 0.0.0.0:50051` serves the embedded
# default (simulated providers, or those whose keys are in the environment).
CMD ["serve", "--config", "/etc/switchyard/switchyard.toml"]
