# syntax=docker/dockerfile:1
# Build: docker build -t cf-invalidator .
# Run:   docker run --rm -e AWS_REGION -e INVALIDATOR_QUEUE_URL -e INVALIDATOR_TABLE cf-invalidator

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
# Dependencies first, so source edits reuse the cached dependency layer. Cargo refuses a manifest whose declared
# targets are missing, even ones it does not build, so the benches are copied as they are and only src is stubbed.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir -p src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin cf-invalidator \
    && rm -rf src
COPY src ./src
# Only the worker: src/bin/cloudfront-sim is test infrastructure.
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin cf-invalidator

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home invalidator
COPY --from=builder /build/target/release/cf-invalidator /usr/local/bin/cf-invalidator
USER 10001
# The metrics and /healthz listener (--metrics-addr); the worker serves it once it has that flag, until then the
# variable is ignored and nothing listens on the port.
ENV INVALIDATOR_LOG_FORMAT=json \
    INVALIDATOR_METRICS_ADDR=0.0.0.0:9464
EXPOSE 9464
# checkov:skip=CKV_DOCKER_2: No HEALTHCHECK yet: the image has no curl, and /healthz arrives with --metrics-addr in a later change. ECS ignores image health checks anyway; the task definition will get its own then (docs/deploy.md).
ENTRYPOINT ["/usr/local/bin/cf-invalidator", "run"]
