//! The container image as it ships, built and run here the way Cloud Run runs it.
//!
//! `scripts/build-image.sh` builds the image (`Containerfile`, with buildah); these tests run
//! that very image with podman:
//! - `PORT` other than 8080, reached through a published port, so ion-host must listen on every
//!   interface of the container;
//! - a read-only root filesystem, uid 65532, 512 MiB of memory and 1 CPU (what deploy sets);
//! - Google credentials from a fake metadata server at `metadata.google.internal` (port 80 when
//!   the test may bind it, as on Cloud Run), and no project id but the metadata server's;
//! - the black-box API: `/`, `/health`, `/chat` plain and streamed, `/v1`, the page and `/docs`,
//!   and the official `openai` client;
//! - JSON logs on stdout; a 1000-request burst within the memory limit;
//! - `podman stop` with 10 s of grace (Cloud Run's): in-flight requests and streams complete,
//!   and the process, PID 1 of its container, exits 0.
//!
//! The container reaches the host's loopback (the Vertex AI emulator, the fake metadata server)
//! through slirp4netns at 10.0.2.2; nothing leaves the machine.
//!
//! The image is `$ION_TEST_IMAGE`, else `localhost/ion-mentoring:latest`. Without podman or the
//! image these tests are skipped with a note, except when `CI` is set: there they fail.
//! Linters (hadolint, actionlint) come from `scripts/test.sh` and are found on PATH.
//!
//! One file per job: `lint` (the Containerfile and the workflows), `build_script`
//! (scripts/build-image.sh's errors), `image_config` (the built image's configuration, as podman
//! reports it), `image_run` (the container at work); `podman` runs them.

mod build_script;
mod image_config;
mod image_run;
mod lint;
mod podman;

use std::path::PathBuf;

/// What `gcloud run deploy` sets in .github/workflows/deploy.yml.
const MEMORY_LIMIT: &str = "512m";
const MEMORY_LIMIT_BYTES: u64 = 512 * 1024 * 1024;
const CPUS: &str = "1";
/// The image's user: distroless's "nonroot", numerically.
const USER: &str = "65532:65532";
/// Cloud Run's grace between SIGTERM and SIGKILL.
const STOP_GRACE_SECS: u64 = 10;

const METADATA_TOKEN: &str = "metadata-token-for-the-container";
const METADATA_PROJECT: &str = "metadata-project";

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
