# Minimal image: builds the release binary and runs it on a slim base with CA certificates
# (reqwest's rustls platform verifier reads the system store).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin deskpilot

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --home-dir /app deskpilot
WORKDIR /app
COPY --from=build /src/target/release/deskpilot /usr/local/bin/deskpilot
COPY config ./config
COPY prompts ./prompts
USER deskpilot
ENTRYPOINT ["deskpilot"]
CMD ["check"]
