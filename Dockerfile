# Vigil's container image: `vigil serve` with the rules of queries/ (a ConfigMap replaces
# them on Kubernetes, see deploy/kubernetes/). Build: docker build -t vigil .

# Build stage: the release binary. librdkafka is built from its vendored sources, which
# needs a C toolchain and make (the full Rust image has both).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin vigil

# Runtime stage: the binary on a slim Debian, run by an unprivileged user.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/vigil --create-home vigil
COPY --from=build /src/target/release/vigil /usr/local/bin/vigil
COPY queries /rules
USER 10001:10001
WORKDIR /var/lib/vigil
EXPOSE 8080
ENV VIGIL_LOG_FORMAT=json
ENTRYPOINT ["vigil"]
# A non-loopback address needs VIGIL_TOKEN (the Deployment takes it from a Secret).
CMD ["serve", "--bind", "0.0.0.0:8080", "--queries", "/rules", "--profile", "kafka"]
