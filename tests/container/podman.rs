//! podman, configured as scripts/containers.sh configures it: the image under test, the fake
//! metadata server where Cloud Run's would be, and a container run with Cloud Run's limits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{CPUS, MEMORY_LIMIT, METADATA_PROJECT, METADATA_TOKEN, USER, find_on_path};
use crate::common::{FakeMetadata, free_port, workspace_root};

/// Inside the container, where slirp4netns puts the host's loopback.
const HOST_LOOPBACK_FROM_CONTAINER: &str = "10.0.2.2";
/// The port Cloud Run would set; anything but 8080, so that a hard-coded port fails.
const CONTAINER_PORT: u16 = 9090;

/// The image under test, when podman and the image are there.
pub(super) struct BuiltImage {
    pub(super) reference: String,
}

/// `$ION_TEST_IMAGE` or localhost/ion-mentoring:latest; `None` (with a note) when podman or the
/// image is missing outside CI. An `oci-archive:PATH` reference (what the deploy workflow
/// tests) is loaded into local storage first.
pub(super) fn built_image() -> Option<BuiltImage> {
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

pub(super) fn podman(args: &[&str]) -> Output {
    podman_command(args)
        .output()
        .unwrap_or_else(|e| panic!("podman {args:?}: {e}"))
}

pub(super) fn podman_json(args: &[&str]) -> serde_json::Value {
    let out = podman(args);
    assert!(out.status.success(), "podman {args:?}: {out:?}");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("podman {args:?} printed no JSON ({e}): {out:?}"))
}

/// The fake metadata server, where the container looks for Cloud Run's: the name
/// metadata.google.internal (mapped to the host's loopback) on port 80 when this test may bind
/// it; otherwise on a free port named by `GCE_METADATA_HOST`.
pub(super) struct CloudRunMetadata {
    _server: FakeMetadata,
    /// `GCE_METADATA_HOST` for the container, when not on port 80.
    host_override: Option<String>,
}

impl CloudRunMetadata {
    pub(super) fn start() -> CloudRunMetadata {
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
pub(super) struct Container {
    pub(super) name: String,
    pub(super) base_url: String,
}

impl Container {
    pub(super) fn run(
        image: &BuiltImage,
        emulator: &vertex_emulator::Emulator,
        metadata: &CloudRunMetadata,
    ) -> Container {
        static SEQUENCE: AtomicUsize = AtomicUsize::new(0);
        let n = SEQUENCE.fetch_add(1, Ordering::SeqCst);
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

    pub(super) fn state(&self) -> serde_json::Value {
        podman_json(&["inspect", "--type", "container", &self.name])[0]["State"].clone()
    }

    pub(super) fn logs(&self) -> Output {
        podman(&["logs", &self.name])
    }

    /// VmRSS of the container's PID 1 (ion-host), read from the host's /proc.
    pub(super) fn rss_bytes(&self) -> u64 {
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
