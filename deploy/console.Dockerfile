# The console image the template's App Runner service runs:
#   docker build -f deploy/console.Dockerfile -t weir-console .
# Tokens live in /data (mount a volume so they survive a restart), the
# registry on AWS (WEIR_REGISTRY_TABLE, components in WEIR_RAW_BUCKET).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p weir --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/weir /usr/local/bin/weir
ENV WEIR_DATA_DIR=/data WEIR_LOG_FORMAT=json
VOLUME /data
EXPOSE 8080
ENTRYPOINT ["weir", "console", "serve", "--backend", "aws", "--console-listen", "0.0.0.0:8080"]
