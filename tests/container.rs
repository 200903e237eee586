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

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::common::*;

/// Largest image, in bytes, as `podman images` counts them (MB = 1,000,000 bytes).
const IMAGE_BUDGET_BYTES: u64 = 30_000_000;

/// What `gcloud run deploy` sets in .github/workflows/deploy.yml.
const MEMORY_LIMIT: &str = "512m";
const MEMORY_LIMIT_BYTES: u64 = 512 * 1024 * 1024;
const CPUS: &str = "1";
/// The image's user: distroless's "nonroot", numerically.
const USER: &str = "65532:65532";
/// Cloud Run's grace between SIGTERM and SIGKILL.
const STOP_GRACE_SECS: u64 = 10;

/// Inside the container, where slirp4netns puts the host's loopback.
const HOST_LOOPBACK_FROM_CONTAINER: &str = "10.0.2.2";
/// The port Cloud Run would set; anything but 8080, so that a hard-coded port fails.
const CONTAINER_PORT: u16 = 9090;

const METADATA_TOKEN: &str = "metadata-token-for-the-container";
const METADATA_PROJECT: &str = "metadata-project";

// ---------------------------------------------------------------------------------------------
// Linters

#[test]
fn containerfile_passes_hadolint() {
    let Some(hadolint) = linter("hadolint") else {
        return;
    };
    let run = |dir: &Path, file: &str| {
        Command::new(&hadolint)
            .args(["--no-color", "--failure-threshold", "info", file])
            .current_dir(dir)
            .output()
            .expect("hadolint runs")
    };

    // The linter is live: a file with well-known mistakes fails.
    let scratch = TempDir::new();
    std::fs::write(
        scratch.path().join("Containerfile"),
        "FROM debian\nRUN apt-get install curl\n",
    )
    .unwrap();
    let bad = run(scratch.path(), "Containerfile");
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stdout).contains("DL3008"),
        "hadolint accepted a file with unpinned, unversioned packages: {bad:?}"
    );

    let out = run(&workspace_root(), "Containerfile");
    assert!(
        out.status.success(),
        "hadolint found problems in Containerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workflows_pass_actionlint() {
    let Some(actionlint) = linter("actionlint") else {
        return;
    };
    // actionlint checks `run:` scripts with shellcheck when it has one.
    let shellcheck = match find_on_path("shellcheck") {
        Some(path) => path.display().to_string(),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but shellcheck is not on PATH (scripts/test.sh installs it)")
        }
        None => {
            eprintln!("note: shellcheck not on PATH; actionlint runs without it (-shellcheck=)");
            String::new()
        }
    };
    let run = |dir: &Path, files: &[PathBuf]| {
        Command::new(&actionlint)
            .arg("-no-color")
            .arg(format!("-shellcheck={shellcheck}"))
            .args(files)
            .current_dir(dir)
            .output()
            .expect("actionlint runs")
    };

    // The linter is live: an unknown key and (with shellcheck) an unquoted variable both fail.
    let scratch = TempDir::new();
    let bad = scratch.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    step:\n      - run: echo hi\n  \
         b:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: rm -rf $DIR/*\n",
    )
    .unwrap();
    let out = run(scratch.path(), &[bad]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("\"step\""),
        "actionlint accepted an unknown key: {out:?}"
    );
    if !shellcheck.is_empty() {
        assert!(
            report.contains("SC2086"),
            "actionlint did not run shellcheck on a `run:` script: {report}"
        );
    }

    let dir = workspace_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    for expected in ["ci.yml", "deploy.yml"] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            ".github/workflows/{expected} is missing (found {files:?})"
        );
    }
    let out = run(&workspace_root(), &files);
    assert!(
        out.status.success(),
        "actionlint found problems in .github/workflows:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A linter on PATH; `None` (with a note) when it is missing outside CI.
fn linter(name: &str) -> Option<PathBuf> {
    match find_on_path(name) {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {name} is not on PATH (scripts/test.sh installs it)")
        }
        None => {
            eprintln!(
                "note: {name} is not on PATH, so this check is skipped; \
                 ./scripts/test.sh installs it"
            );
            None
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

// ---------------------------------------------------------------------------------------------
// The build script

/// Building the image before its artifacts exist names what is missing and the command that
/// makes it, instead of a buildah error about a build context.
#[test]
fn image_build_without_artifacts_names_them_and_the_command() {
    let empty_target = TempDir::new();
    let out = Command::new(workspace_root().join("scripts/build-image.sh"))
        .arg("--prebuilt")
        .env("CARGO_TARGET_DIR", empty_target.path())
        .env("IMAGE", "localhost/ion-mentoring:never-built")
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .expect("scripts/build-image.sh runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit code; stderr:\n{stderr}");
    assert!(
        stderr.contains("x86_64-unknown-linux-musl/dist/ion-host is missing")
            && stderr.contains("./scripts/build-image.sh (without --prebuilt)"),
        "the error should name the missing artifact and the command that builds it:\n{stderr}"
    );
    let bad_flag = Command::new(workspace_root().join("scripts/build-image.sh"))
        .arg("--no-such-flag")
        .current_dir(workspace_root())
        .output()
        .expect("scripts/build-image.sh runs");
    assert_eq!(bad_flag.status.code(), Some(2), "{bad_flag:?}");
    assert!(String::from_utf8_lossy(&bad_flag.stderr).contains("usage:"));
}

// ---------------------------------------------------------------------------------------------
// The image

#[test]
fn image_fits_the_size_budget_and_runs_as_nonroot() {
    let Some(image) = built_image() else { return };
    let inspect = podman_json(&["image", "inspect", &image.reference]);
    let config = &inspect[0]["Config"];
    let size = inspect[0]["Size"].as_u64().expect("image size");
    println!("image {}: {size} bytes", image.reference);
    assert!(
        size <= IMAGE_BUDGET_BYTES,
        "the image is {size} bytes, over the {IMAGE_BUDGET_BYTES}-byte budget"
    );
    assert_eq!(config["User"], USER, "the image's user");
    let env: Vec<&str> = config["Env"]
        .as_array()
        .map(|e| e.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    assert!(
        env.contains(&"SPIN_VARIABLE_CREDENTIALS=runtime"),
        "the image should take Google credentials from the runtime (the metadata server on \
         Cloud Run), so that no token is baked in: Env {env:?}"
    );
    assert!(
        env.contains(&"ION_STATE_DIR=/tmp/ion-state"),
        "the embedded key-value store must live under /tmp, the one writable place of a \
         read-only root: Env {env:?}"
    );
    assert!(
        config["ExposedPorts"].get("8080/tcp").is_some(),
        "EXPOSE 8080 (Cloud Run's --port): {}",
        config["ExposedPorts"]
    );
}

/// One container, started as Cloud Run starts it, through its whole life: every check that
/// needs it runs in order, and the SIGTERM drain ends it.
#[test]
fn image_runs_like_cloud_run() {
    let Some(image) = built_image() else { return };
    let emulator = start_emulator();
    let metadata = CloudRunMetadata::start();
    let container = Container::run(&image, &emulator, &metadata);

    serves_the_api(&container, &emulator);
    the_openai_client_works(&container);
    a_burst_stays_within_the_memory_limit(&container);
    sigterm_drains_requests_and_streams(&container, &emulator);

    let logs = container.logs();
    logs_are_json_on_stdout(&logs);
}

fn serves_the_api(container: &Container, emulator: &vertex_emulator::Emulator) {
    let base = &container.base_url;

    let index = request("GET", &format!("{base}/"), &[], b"");
    assert_eq!(index.status, 200, "GET /: {}", index.body);
    assert_eq!(index.json()["chat"], "/chat", "{}", index.body);

    let health = request("GET", &format!("{base}/health"), &[], b"");
    assert_eq!(health.status, 200, "GET /health: {}", health.body);

    let page = request("GET", &format!("{base}/"), &[("accept", "text/html")], b"");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
            && page.body.contains("/ui/app.js"),
        "GET / from a browser should be the chat page: {page:?}"
    );
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/markdown.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/docs", "text/html"),
        ("/openapi.json", "application/json"),
    ] {
        let r = request("GET", &format!("{base}{path}"), &[], b"");
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with(kind)),
            "GET {path}: content-type {:?}, expected {kind}",
            r.header("content-type")
        );
    }

    // /chat, answered through the metadata server's credentials and project.
    let chat = request(
        "POST",
        &format!("{base}/chat"),
        &[("content-type", "application/json")],
        br#"{"message": "How do I start learning Rust?"}"#,
    );
    assert_eq!(chat.status, 200, "POST /chat: {}", chat.body);
    let body = chat.json();
    assert!(
        body["persona_used"].as_str().is_some_and(|p| !p.is_empty())
            && body["content"]
                .as_str()
                .is_some_and(|c| c.contains("Vertex AI emulator")),
        "POST /chat: {body}"
    );
    let call = emulator.requests().pop().expect("the emulator saw /chat");
    assert_eq!(
        call.authorization.as_deref(),
        Some(format!("Bearer {METADATA_TOKEN}").as_str()),
        "the Vertex AI call should carry the metadata server's token"
    );
    assert!(
        call.path
            .contains(&format!("/projects/{METADATA_PROJECT}/")),
        "the project id should come from the metadata server: {}",
        call.path
    );

    // Streamed: meta, deltas, done.
    let stream = request(
        "POST",
        &format!("{base}/chat"),
        &[("content-type", "application/json")],
        br#"{"message": "Explain ownership briefly", "stream": true}"#,
    );
    assert_eq!(stream.status, 200, "streamed /chat: {}", stream.body);
    for event in ["event: meta", "event: delta", "event: done"] {
        assert!(
            stream.body.contains(event),
            "streamed /chat lacks {event:?}:\n{}",
            stream.body
        );
    }

    // OpenAI's route, plain and streamed.
    let completion = request(
        "POST",
        &format!("{base}/v1/chat/completions"),
        &[("content-type", "application/json")],
        br#"{"model": "ion-auto", "messages": [{"role": "user", "content": "Hello"}]}"#,
    );
    assert_eq!(completion.status, 200, "/v1: {}", completion.body);
    assert_eq!(completion.json()["object"], "chat.completion");
    let chunks = request(
        "POST",
        &format!("{base}/v1/chat/completions"),
        &[("content-type", "application/json")],
        br#"{"model": "ion-auto", "stream": true, "messages": [{"role": "user", "content": "Hello"}]}"#,
    );
    assert_eq!(chunks.status, 200, "/v1 streamed: {}", chunks.body);
    assert!(
        chunks.body.contains("chat.completion.chunk") && chunks.body.contains("data: [DONE]"),
        "/v1 streamed:\n{}",
        chunks.body
    );

    // Bad input is a clear 422 in the container too, in the original service's shape.
    let malformed = request(
        "POST",
        &format!("{base}/chat"),
        &[("content-type", "application/json")],
        b"{not json",
    );
    assert!(
        malformed.status == 422 && malformed.json()["detail"][0]["type"] == "json_invalid",
        "malformed JSON: {malformed:?}"
    );
}

fn the_openai_client_works(container: &Container) {
    if std::env::var_os("ION_TEST_PYTHON_VENV").is_none()
        && !workspace_root()
            .join("target/python-tests/bin/python")
            .exists()
    {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but the Python test tools are missing (scripts/test.sh installs them)"
        );
        eprintln!(
            "note: no Python test tools (./scripts/test.sh installs them); openai client skipped"
        );
        return;
    }
    let script = python::python_dir().join("openai_client.py");
    python::run_tool(
        "openai client against the container",
        "python",
        &[script.to_str().unwrap(), &container.base_url],
        &[],
    );
}

/// 1000 `/chat` requests from 32 clients at once: every one answered, and the process inside
/// the 512 MiB limit (not OOM-killed, its RSS below the limit) afterwards.
fn a_burst_stays_within_the_memory_limit(container: &Container) {
    const REQUESTS: usize = 1000;
    const CLIENTS: usize = 32;
    let next = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, failures) = (next.clone(), failures.clone());
            let url = format!("{}/chat", container.base_url);
            std::thread::spawn(move || {
                while next.fetch_add(1, Ordering::SeqCst) < REQUESTS {
                    let r = request(
                        "POST",
                        &url,
                        &[("content-type", "application/json")],
                        br#"{"message": "burst"}"#,
                    );
                    if r.status != 200 {
                        failures.lock().unwrap().push((r.status, r.body));
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {REQUESTS} burst requests failed, e.g. {:?}",
        failures.len(),
        failures.first()
    );
    let state = container.state();
    assert_eq!(state["Running"], true, "after the burst: {state}");
    assert_eq!(state["OOMKilled"], false, "after the burst: {state}");
    let rss = container.rss_bytes();
    println!(
        "burst: {REQUESTS} /chat in {:.1} s; RSS afterwards {:.1} MiB (limit {MEMORY_LIMIT})",
        started.elapsed().as_secs_f64(),
        rss as f64 / 1048576.0
    );
    assert!(
        rss < MEMORY_LIMIT_BYTES,
        "RSS {rss} bytes after the burst, at or past the {MEMORY_LIMIT} limit"
    );
}

/// `podman stop -t 10` sends SIGTERM to PID 1 (ion-host), and SIGKILL 10 s later. A plain
/// `/chat` and a stream that are in flight when SIGTERM arrives both complete, and ion-host
/// exits 0 well before the SIGKILL.
fn sigterm_drains_requests_and_streams(
    container: &Container,
    emulator: &vertex_emulator::Emulator,
) {
    emulator.clear_requests();
    let url = format!("{}/chat", container.base_url);
    // ~2 s of answer, paced by the emulator: still streaming when SIGTERM arrives.
    let stream = {
        let url = url.clone();
        std::thread::spawn(move || {
            request(
                "POST",
                &url,
                &[("content-type", "application/json")],
                br#"{"message": "Tell me about lifetimes [[emulator:chunk-delay=200]]", "stream": true}"#,
            )
        })
    };
    let plain = std::thread::spawn(move || {
        request(
            "POST",
            &url,
            &[("content-type", "application/json")],
            br#"{"message": "And borrowing? [[emulator:chunk-delay=200]]"}"#,
        )
    });
    wait_for_upstream_requests(emulator, 2);

    let started = Instant::now();
    let stop = podman(&[
        "stop",
        "--time",
        &STOP_GRACE_SECS.to_string(),
        &container.name,
    ]);
    let took = started.elapsed();
    assert!(stop.status.success(), "podman stop: {stop:?}");

    let stream = stream.join().unwrap();
    assert_eq!(stream.status, 200, "the stream: {}", stream.body);
    assert!(
        stream.body.contains("event: done") && !stream.body.contains("event: error"),
        "a stream in flight at SIGTERM should finish with its `done` event:\n{}",
        stream.body
    );
    let plain = plain.join().unwrap();
    assert_eq!(
        plain.status, 200,
        "the plain /chat in flight: {}",
        plain.body
    );

    let state = container.state();
    assert_eq!(
        state["ExitCode"], 0,
        "ion-host should exit 0 after SIGTERM (137 means SIGKILL at the end of the grace): {state}"
    );
    assert!(
        took < Duration::from_secs(STOP_GRACE_SECS),
        "the container took {took:?} to stop: the grace ran out"
    );
    println!(
        "SIGTERM → exit 0 in {:.2} s with a stream in flight",
        took.as_secs_f64()
    );
}

/// Cloud Logging reads stdout: one JSON object per line, each with a severity, the served
/// requests among them. The readiness line is the one plain line.
fn logs_are_json_on_stdout(logs: &Output) {
    let stdout = String::from_utf8_lossy(&logs.stdout);
    let entries: Vec<serde_json::Value> = stdout
        .lines()
        .filter(|line| !line.starts_with("ion-host listening on "))
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            assert!(
                entry["severity"].is_string(),
                "log entry without severity: {line}"
            );
            entry
        })
        .collect();
    for route in ["/chat", "/v1/chat/completions"] {
        assert!(
            entries.iter().any(|e| e["httpRequest"]["requestUrl"]
                .as_str()
                .is_some_and(|u| u.ends_with(route))),
            "no request log entry for {route} on stdout"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// podman

/// The image under test, when podman and the image are there.
struct BuiltImage {
    reference: String,
}

/// `$ION_TEST_IMAGE` or localhost/ion-mentoring:latest; `None` (with a note) when podman or the
/// image is missing outside CI. An `oci-archive:PATH` reference (what the deploy workflow
/// tests) is loaded into local storage first.
fn built_image() -> Option<BuiltImage> {
    let wanted = std::env::var("ION_TEST_IMAGE")
        .unwrap_or_else(|_| "localhost/ion-mentoring:latest".to_owned());
    let found = if find_on_path("podman").is_none() {
        Err("podman is not installed".to_owned())
    } else if wanted.starts_with("oci-archive:") {
        let out = podman(&["pull", "--quiet", &wanted]);
        match out.status.success() {
            true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned()),
            false => Err(format!(
                "podman cannot load {wanted}: {}",
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    } else if podman(&["image", "exists", &wanted]).status.success() {
        Ok(wanted.clone())
    } else {
        Err(format!("there is no image {wanted}"))
    };
    match found {
        Ok(reference) => Some(BuiltImage { reference }),
        Err(why) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {why}: ./scripts/test.sh builds it with ./scripts/build-image.sh")
        }
        Err(why) => {
            eprintln!("note: {why}, so this check is skipped; ./scripts/build-image.sh builds it");
            None
        }
    }
}

/// podman, configured as scripts/containers.sh configures it.
fn podman_command(args: &[&str]) -> Command {
    let mut command = Command::new("podman");
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        command.env(
            "CONTAINERS_CONF",
            workspace_root().join("scripts/containers.conf"),
        );
    }
    if std::env::var_os("CONTAINERS_STORAGE_CONF").is_none() && running_as_root() {
        command.env(
            "CONTAINERS_STORAGE_CONF",
            workspace_root().join("scripts/storage.conf"),
        );
    }
    command.args(args).stdin(Stdio::null());
    command
}

/// Whether this process runs as root (rootless podman keeps its own storage defaults).
fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let uids = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))?
                .to_owned();
            Some(uids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn podman(args: &[&str]) -> Output {
    podman_command(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

fn podman_json(args: &[&str]) -> serde_json::Value {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("podman {args:?} printed no JSON ({e}): {out:?}"))
}

/// The fake metadata server, where the container looks for Cloud Run's: the name
/// metadata.google.internal (mapped to the host's loopback) on port 80 when this test may bind
/// it; otherwise on a free port named by `GCE_METADATA_HOST`.
struct CloudRunMetadata {
    _server: FakeMetadata,
    /// `GCE_METADATA_HOST` for the container, when not on port 80.
    host_override: Option<String>,
}

impl CloudRunMetadata {
    fn start() -> CloudRunMetadata {
        match TcpListener::bind("127.0.0.1:80") {
            Ok(listener) => CloudRunMetadata {
                _server: FakeMetadata::serve(listener, METADATA_TOKEN, METADATA_PROJECT),
                host_override: None,
            },
            Err(e) => {
                eprintln!(
                    "note: cannot bind 127.0.0.1:80 ({e}); the metadata server gets a free port"
                );
                let server = FakeMetadata::start(METADATA_TOKEN, METADATA_PROJECT);
                let port = server.host.rsplit(':').next().unwrap().to_owned();
                CloudRunMetadata {
                    _server: server,
                    host_override: Some(format!("metadata.google.internal:{port}")),
                }
            }
        }
    }
}

/// A running container; removed on drop.
struct Container {
    name: String,
    base_url: String,
}

impl Container {
    fn run(
        image: &BuiltImage,
        emulator: &vertex_emulator::Emulator,
        metadata: &CloudRunMetadata,
    ) -> Container {
        static SEQUENCE: OnceLock<AtomicUsize> = OnceLock::new();
        let n = SEQUENCE
            .get_or_init(|| AtomicUsize::new(0))
            .fetch_add(1, Ordering::SeqCst);
        let name = format!("ion-test-{}-{n}", std::process::id());
        let host_port = free_port();
        let emulator_port = emulator.url().rsplit(':').next().unwrap().to_owned();
        let mut args: Vec<String> = [
            "run",
            "--detach",
            "--name",
            &name,
            "--read-only",
            "--user",
            USER,
            "--memory",
            MEMORY_LIMIT,
            "--memory-swap",
            MEMORY_LIMIT,
            "--cpus",
            CPUS,
            "--network",
            "slirp4netns:allow_host_loopback=true",
            "--add-host",
            &format!("metadata.google.internal:{HOST_LOOPBACK_FROM_CONTAINER}"),
            "--publish",
            &format!("127.0.0.1:{host_port}:{CONTAINER_PORT}"),
            "--env",
            &format!("PORT={CONTAINER_PORT}"),
            "--env",
            "K_SERVICE=ion-api",
            "--env",
            "K_REVISION=ion-api-00001-tst",
            "--env",
            &format!(
                "SPIN_VARIABLE_VERTEX_ENDPOINT=http://{HOST_LOOPBACK_FROM_CONTAINER}:{emulator_port}"
            ),
        ]
        .map(str::to_owned)
        .to_vec();
        if let Some(host) = &metadata.host_override {
            args.extend(["--env".to_owned(), format!("GCE_METADATA_HOST={host}")]);
        }
        args.push(image.reference.clone());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = podman(&args);
        assert!(
            out.status.success(),
            "podman run failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let container = Container {
            name,
            base_url: format!("http://127.0.0.1:{host_port}"),
        };
        container.wait_ready();
        container
    }

    /// Until `/health` answers 200 (20 s at most: the first start of an image copies it).
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let addr = self.base_url.trim_start_matches("http://");
        loop {
            if let Ok(mut stream) = TcpStream::connect(addr) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = stream
                    .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut first = String::new();
                let _ = BufReader::new(&mut stream).read_line(&mut first);
                if first.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if Instant::now() > deadline {
                let logs = self.logs();
                panic!(
                    "the container did not answer /health within 20 s; state {}\nstdout:\n{}\nstderr:\n{}",
                    self.state(),
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn state(&self) -> serde_json::Value {
        podman_json(&["inspect", "--type", "container", &self.name])[0]["State"].clone()
    }

    fn logs(&self) -> Output {
        podman(&["logs", &self.name])
    }

    /// VmRSS of the container's PID 1 (ion-host), read from the host's /proc.
    fn rss_bytes(&self) -> u64 {
        let pid = self.state()["Pid"].as_u64().expect("the container's pid");
        let mut status = String::new();
        std::fs::File::open(format!("/proc/{pid}/status"))
            .and_then(|mut f| f.read_to_string(&mut status))
            .unwrap_or_else(|e| panic!("/proc/{pid}/status: {e}"));
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kib * 1024
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman_command(&["rm", "--force", "--time", "0", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
