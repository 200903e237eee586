# syntax=docker/dockerfile:1
#
# Ion Mentoring API: the WebAssembly component and ion-host in one small, non-root image.
#
#   docker buildx build --platform linux/amd64 -t ion-mentoring .
#   docker run --rm -p 8080:8080 -e SPIN_VARIABLE_PROJECT_ID=my-project \
#     -e SPIN_VARIABLE_ACCESS_TOKEN="$(gcloud auth print-access-token)" ion-mentoring
#
# (Off Google Cloud there is no metadata server: a static access token stands in for it.)
#
# The build stage builds, with the `dist` profile (release without debug info or symbols):
#   - the component for wasm32-wasip2, and
#   - ion-host as a static x86_64-unknown-linux-musl binary (TLS is rustls + ring: no OpenSSL,
#     no shared libraries at run time),
# then precompiles the component with that very ion-host (`ion-host compile`, portable x86-64
# baseline): a .cwasm only loads in the wasmtime build and configuration that produced it, and a
# precompiled component starts in milliseconds instead of being compiled on every cold start.
#
# The runtime stage is distroless/static (CA roots, /etc/passwd, no shell) running as uid 65532
# with exactly three files: /app/ion-host, /app/ion_mentoring.cwasm and /app/spin.toml.
# tests/container.rs reads this stage and runs it: keep the two in step.
#
# Dependency caching: a cargo-chef recipe (the manifests and the lockfile) is cooked in a layer
# of its own, so the dependencies (wasmtime, cranelift, ...) are rebuilt only when Cargo.toml or
# Cargo.lock change. Chosen over BuildKit cache mounts because layers travel with the image cache
# (`cache-to: type=gha` in .github/workflows/deploy.yml, or a registry cache) and so survive on
# fresh CI runners, while cache mounts stay in one BuildKit daemon's local storage and start
# empty on every new runner.

# ---------------------------------------------------------------------------------------------
# Toolchain: Rust from rust-toolchain.toml (an exact version + wasm32-wasip2), the musl target and
# musl-gcc (ring compiles C and assembly), and cargo-chef.
#
# Base images: the toolchain's version here and in rust-toolchain.toml are the same (bump them
# together). The runtime base is pinned by digest as well; Dependabot (.github/dependabot.yml)
# proposes new digests. The rust image is pinned by its exact version only: its digest could not
# be looked up when this was written (no registry access); add `@sha256:...` from
# `docker buildx imagetools inspect rust:1.99.1-slim-bookworm` to pin it too.
FROM rust:1.99.1-slim-bookworm AS chef
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
 && rm -rf /var/lib/apt/lists/*
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
WORKDIR /build
COPY rust-toolchain.toml ./
RUN rustup toolchain install \
 && rustup target add x86_64-unknown-linux-musl \
 && cargo install cargo-chef --version 0.1.78 --locked

# ---------------------------------------------------------------------------------------------
# The recipe: every Cargo.toml and Cargo.lock, nothing else. Changes only when they do.
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# ---------------------------------------------------------------------------------------------
FROM chef AS build
COPY --from=planner /build/recipe.json recipe.json
# Dependencies only (cached until the recipe changes).
RUN cargo chef cook --recipe-path recipe.json --locked --profile dist \
      --target wasm32-wasip2 -p ion-mentoring \
 && cargo chef cook --recipe-path recipe.json --locked --profile dist \
      --target x86_64-unknown-linux-musl -p ion-host
# The project itself, then the precompiled component.
COPY . .
RUN cargo build --locked --profile dist --target wasm32-wasip2 -p ion-mentoring \
 && cargo build --locked --profile dist --target x86_64-unknown-linux-musl -p ion-host \
 && mkdir -p /out \
 && cp target/x86_64-unknown-linux-musl/dist/ion-host /out/ion-host \
 && /out/ion-host compile target/wasm32-wasip2/dist/ion_mentoring.wasm -o /out/ion_mentoring.cwasm

# ---------------------------------------------------------------------------------------------
# Runtime. Cloud Run sets PORT (8080 with `--port 8080`); ion-host listens on 0.0.0.0:$PORT,
# logs one JSON object per line on stdout, and drains open requests on SIGTERM. No HEALTHCHECK:
# Cloud Run ignores it (it probes the port, or /health when configured) and the image has no
# shell or client to run one.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639 AS runtime
LABEL org.opencontainers.image.title="ion-mentoring" \
      org.opencontainers.image.description="Ion Mentoring API: a WebAssembly component served by ion-host (wasmtime)" \
      org.opencontainers.image.licenses="Apache-2.0"
WORKDIR /app
COPY --from=build /out/ion-host /app/ion-host
COPY --from=build /out/ion_mentoring.cwasm /app/ion_mentoring.cwasm
COPY spin.toml /app/spin.toml
# Google credentials come from the runtime (Application Default Credentials: the metadata server
# on Cloud Run); the component never holds a token. Project, location and model are set per
# deployment (gcloud run deploy --set-env-vars SPIN_VARIABLE_...).
ENV SPIN_VARIABLE_CREDENTIALS=runtime
# Cloud Run's front end appends the caller's address to X-Forwarded-For: one trusted hop, so
# logs and the rate limit (ION_RATE_LIMIT_PER_MINUTE, off unless set) see the real client.
ENV ION_TRUSTED_PROXY_HOPS=1
# distroless "nonroot", numerically, so that runtimes can verify it is not root.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/app/ion-host", "--manifest", "/app/spin.toml", "--component", "/app/ion_mentoring.cwasm"]
