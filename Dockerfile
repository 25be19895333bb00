# deskpilot's image: the release binary on a slim Debian with CA certificates (reqwest's rustls
# platform verifier reads the system store), as a non-root user, with a volume for the SQLite
# store. Build: docker build -t deskpilot .   Run: docker run -p 8080:8080 deskpilot serve

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: it is rebuilt only when Cargo.toml or Cargo.lock
# change. Every target the manifest names gets a stub so that cargo can read it.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches/worker \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && for bench in benches/context.rs benches/worker/main.rs benches/webhook.rs benches/review.rs benches/llm_limits.rs; do \
      echo 'fn main() {}' > "$bench"; \
    done \
 && cargo build --release --locked --bin deskpilot \
 && rm -rf src benches
# The sources, and what they embed at compile time (templates, migrations, prompts, the default
# configuration, the sandbox's sample helpdesks, the demo's new tickets).
COPY src ./src
COPY benches ./benches
COPY templates ./templates
COPY migrations ./migrations
COPY prompts ./prompts
COPY config ./config
COPY data/sandbox ./data/sandbox
COPY data/demo ./data/demo
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin deskpilot

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --create-home --home-dir /app deskpilot \
 && mkdir -p /app/data \
 && chown deskpilot /app/data
WORKDIR /app
COPY --from=build /src/target/release/deskpilot /usr/local/bin/deskpilot
COPY config ./config
COPY prompts ./prompts
# Listen on every interface of the container; the SQLite store (the default) lives in the volume.
ENV DESKPILOT__SERVER__ADDR=0.0.0.0:8080
VOLUME ["/app/data"]
EXPOSE 8080
USER deskpilot
# /healthz answers 200 while the process is up; bash's /dev/tcp needs no extra package.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["deskpilot"]
CMD ["serve"]
