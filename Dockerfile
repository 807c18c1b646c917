# syntax=docker/dockerfile:1
# One image with Switchyard's binaries: switchyard-control-plane,
# switchyard-data-plane, switchyard-usage-collector, and `switchyard` (everything in
# one process on SQLite). Kubernetes and the local stack pick one by its command.
#
#   docker build -t switchyard .
#   docker run --rm -p 8000:8000 -p 8080:8080 switchyard \
#       switchyard up --proxy-listen 0.0.0.0:8000 --admin-listen 0.0.0.0:8080

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The data plane is built from a profile of its training load (scripts/build-pgo.sh
# runs it on loopback, and installs the llvm-profdata that matches rustc).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    ./scripts/build-pgo.sh \
    && mkdir /out \
    && cp target/release/switchyard-control-plane target/pgo/bin/switchyard-data-plane \
        target/release/switchyard-usage-collector target/release/switchyard /out/

FROM debian:bookworm-slim
# CA roots for TLS to providers; nothing else beyond glibc.
# hadolint ignore=DL3008
RUN apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 switchyard \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/switchyard \
        --shell /usr/sbin/nologin switchyard \
    && mkdir -p /var/lib/switchyard \
    && chown switchyard:switchyard /var/lib/switchyard
COPY --from=build /out/ /usr/local/bin/
USER 10001:10001
WORKDIR /var/lib/switchyard
EXPOSE 8000 8080 8081 8091 8092
CMD ["switchyard-data-plane", "--help"]
