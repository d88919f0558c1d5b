# Build: the full toolchain. Runtime: a slim Debian with the one binary.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY sql ./sql
COPY benches ./benches
RUN cargo build --release --locked --bin outbox-relay

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --no-create-home --shell /usr/sbin/nologin relay
COPY --from=build /src/target/release/outbox-relay /usr/local/bin/outbox-relay
USER relay
# SIGTERM stops claiming and finishes in-flight batches (SHUTDOWN_GRACE, default 30s).
STOPSIGNAL SIGTERM
# METRICS_ADDR, when set to 0.0.0.0:9187: /metrics, /healthz, /readyz.
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/outbox-relay"]
CMD ["run"]
