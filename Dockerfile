# syntax=docker/dockerfile:1
# Build: docker build -t cf-invalidator .
# Run:   docker run --rm -e AWS_REGION -e INVALIDATOR_QUEUE_URL -e INVALIDATOR_TABLE cf-invalidator

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
# Dependencies first, so source edits reuse the cached dependency layer.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/batching.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates=20230311+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home invalidator
COPY --from=builder /build/target/release/cf-invalidator /usr/local/bin/cf-invalidator
USER 10001
ENV INVALIDATOR_LOG_FORMAT=json
ENTRYPOINT ["/usr/local/bin/cf-invalidator", "run"]
