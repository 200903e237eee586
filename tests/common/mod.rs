//! End-to-end harness: starts the Vertex AI emulator in-process and the service (ion-host or
//! `spin up`) as a real child process on an ephemeral port, and talks plain HTTP to them.
//!
//! The artifacts under test are built before `cargo test` runs (see `scripts/test.sh`):
//! the component (`wasm32-wasip2`, release) and `ion-host` (release).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod python;
pub mod redis;
pub mod serial;
mod sse;
pub use sse::{Event, stream_chat};
pub use vertex_emulator::{Emulator, EmulatorConfig};

/// Bearer token the tests configure; the emulator insists on it.
pub const TOKEN: &str = "e2e-token";
/// Gemini deadline the services get in tests; the emulator's `slow` fault exceeds it.
pub const TIMEOUT_MS: u64 = 1500;

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

fn built(path: PathBuf) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/test.sh, which builds the component and ion-host first",
        path.display()
    );
    path
}

pub fn component_wasm() -> PathBuf {
    built(target_dir().join("wasm32-wasip2/release/ion_mentoring.wasm"))
}

pub fn host_binary() -> PathBuf {
    built(target_dir().join("release/ion-host"))
}

/// `$SPIN_BIN`, then `spin` on PATH, then `../shared/bin/spin` beside the checkout.
pub fn spin_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SPIN_BIN") {
        return Some(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("spin");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let shared = workspace_root().join("../shared/bin/spin");
    shared.is_file().then_some(shared)
}

/// The runtimes to test: ion-host always; Spin when a binary is found. In CI Spin must be found,
/// so that parity is never skipped silently.
pub fn runtimes() -> Vec<Runtime> {
    let mut runtimes = vec![Runtime::IonHost];
    match spin_binary() {
        Some(_) => runtimes.push(Runtime::Spin),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but no spin binary was found ($SPIN_BIN, PATH, ../shared/bin/spin)")
        }
        None => eprintln!("note: no spin binary found; Spin parity checks skipped"),
    }
    runtimes
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    IonHost,
    Spin,
}

/// Starts the emulator on an ephemeral port, recording requests.
pub fn start_emulator() -> Emulator {
    Emulator::start_in_background(EmulatorConfig::default()).expect("emulator starts")
}

/// Variables for a service wired to `emulator`.
pub fn emulator_env(emulator: &Emulator) -> Vec<(String, String)> {
    vec![
        ("SPIN_VARIABLE_PROJECT_ID".into(), "e2e-project".into()),
        ("SPIN_VARIABLE_ACCESS_TOKEN".into(), TOKEN.into()),
        ("SPIN_VARIABLE_VERTEX_ENDPOINT".into(), emulator.url()),
        (
            "SPIN_VARIABLE_REQUEST_TIMEOUT_MS".into(),
            TIMEOUT_MS.to_string(),
        ),
    ]
}

/// [`emulator_env`] with `extra` variables added or replaced.
pub fn emulator_env_with(emulator: &Emulator, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut env = emulator_env(emulator);
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

/// Where a service keeps its state.
pub enum Store<'a> {
    /// The runtime's own default: ion-host's embedded file, Spin's SQLite file.
    Default,
    Redis(&'a redis::RedisServer),
}

/// A running service process; killed on drop.
pub struct Service {
    child: Child,
    pub runtime: Runtime,
    pub base_url: String,
    /// Every line the process printed on stdout so far.
    stdout: Arc<Mutex<Vec<String>>>,
    _workdir: TempDir,
}

impl Drop for Service {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        // `spin up` removes its working directory (/tmp/spinup-*) only when it is asked to stop;
        // killed outright, it leaves one behind per test.
        if self.runtime == Runtime::Spin {
            let _ = Command::new("kill")
                .args(["-s", "TERM", "--", &group])
                .status();
            let _ = self.wait_exit(Duration::from_secs(5));
        }
        // `spin up` runs the trigger as a child process: end the whole process group.
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    /// Starts `runtime` with the project's spin.toml and the given environment.
    pub fn start(runtime: Runtime, env: &[(String, String)]) -> Service {
        let manifest = std::fs::read_to_string(workspace_root().join("spin.toml")).unwrap();
        Service::start_with_manifest(runtime, &manifest, env)
    }

    /// Starts `runtime` with a manifest text (its `source` is pointed at the built component).
    pub fn start_with_manifest(
        runtime: Runtime,
        manifest: &str,
        env: &[(String, String)],
    ) -> Service {
        Service::start_full(runtime, manifest, &[], env)
    }

    /// Starts ion-host with extra command-line arguments.
    pub fn start_host(args: &[&str], env: &[(String, String)]) -> Service {
        Service::start_with_args(Runtime::IonHost, args, env)
    }

    /// Starts `runtime` with extra command-line arguments (`--state-dir`,
    /// `--runtime-config-file`: both runtimes take them).
    pub fn start_with_args(runtime: Runtime, args: &[&str], env: &[(String, String)]) -> Service {
        let manifest = std::fs::read_to_string(workspace_root().join("spin.toml")).unwrap();
        Service::start_full(runtime, &manifest, args, env)
    }

    /// Starts `runtime` on `store`, with its state (the default store's file, and the
    /// runtime-config file that points at Redis) under `state_dir`.
    pub fn start_on(
        runtime: Runtime,
        store: &Store<'_>,
        state_dir: &Path,
        extra_args: &[&str],
        env: &[(String, String)],
    ) -> Service {
        let state_dir = state_dir.to_str().unwrap();
        let config = state_dir.to_owned() + "/runtime-config.toml";
        let mut args = vec!["--state-dir", state_dir];
        if let Store::Redis(redis) = store {
            std::fs::write(
                &config,
                format!(
                    "[key_value_store.default]\ntype = \"redis\"\nurl = \"{}\"\n",
                    redis.url()
                ),
            )
            .unwrap();
            args.extend(["--runtime-config-file", config.as_str()]);
        }
        args.extend_from_slice(extra_args);
        Service::start_with_args(runtime, &args, env)
    }

    fn start_full(
        runtime: Runtime,
        manifest: &str,
        extra_args: &[&str],
        env: &[(String, String)],
    ) -> Service {
        let workdir = TempDir::new();
        let manifest = with_source(manifest, &component_wasm());
        let manifest_path = workdir.path().join("spin.toml");
        std::fs::write(&manifest_path, manifest).unwrap();

        let (mut command, port) = match runtime {
            Runtime::IonHost => {
                let mut c = Command::new(host_binary());
                c.arg("--manifest")
                    .arg(&manifest_path)
                    .args(["--listen", "127.0.0.1:0"])
                    .args(extra_args);
                (c, None)
            }
            Runtime::Spin => {
                let port = free_port();
                let mut c = Command::new(spin_binary().expect("spin binary"));
                c.arg("up")
                    .arg("--from")
                    .arg(&manifest_path)
                    .args(["--listen", &format!("127.0.0.1:{port}")])
                    .arg("--log-dir")
                    .arg(workdir.path().join("logs"))
                    .args(extra_args);
                (c, Some(port))
            }
        };
        // Only what the test sets: no SPIN_VARIABLE_* leaks in from the caller's shell.
        for (key, _) in std::env::vars() {
            if key.starts_with("SPIN_VARIABLE_")
                || [
                    "PORT",
                    "GOOGLE_APPLICATION_CREDENTIALS",
                    "GCE_METADATA_HOST",
                ]
                .contains(&key.as_str())
            {
                command.env_remove(key);
            }
        }
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(workdir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        command.process_group(0);
        let mut child = command.spawn().expect("service process starts");
        let stdout = child.stdout.take().unwrap();

        let lines = Arc::new(Mutex::new(Vec::new()));
        let base_url = match port {
            Some(port) => {
                drain(stdout, None, lines.clone());
                format!("http://127.0.0.1:{port}")
            }
            None => {
                let (tx, rx) = mpsc::channel();
                drain(stdout, Some(tx), lines.clone());
                match rx.recv_timeout(Duration::from_secs(60)) {
                    Ok(url) => url,
                    Err(_) => {
                        let _ = child.kill();
                        panic!("ion-host did not report its address: {:?}", child.wait());
                    }
                }
            }
        };
        let service = Service {
            child,
            runtime,
            base_url,
            stdout: lines,
            _workdir: workdir,
        };
        service.wait_ready();
        service
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // Any HTTP answer means the server is up (a test may expect /health itself to fail).
            if try_request("GET", &format!("{}/health", self.base_url), &[], b"").is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not become ready at {}",
                self.runtime,
                self.base_url
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The stdout lines printed so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends SIGTERM to the process.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    pub fn get(&self, path: &str) -> Reply {
        request("GET", &self.url(path), &[], b"")
    }

    /// POST a JSON body to /chat.
    pub fn chat(&self, body: &str) -> Reply {
        request(
            "POST",
            &self.url("/chat"),
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
    }

    /// POST a JSON body to /chat with extra headers.
    pub fn chat_with_headers(&self, body: &Value, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("content-type", "application/json")];
        all.extend_from_slice(headers);
        request(
            "POST",
            &self.url("/chat"),
            &all,
            body.to_string().as_bytes(),
        )
    }

    /// POST `{"message": message}` to /chat.
    pub fn ask(&self, message: &str) -> Reply {
        self.chat(&serde_json::json!({ "message": message }).to_string())
    }
}

/// Rewrites the manifest's component `source` to an absolute path.
fn with_source(manifest: &str, wasm: &Path) -> String {
    manifest
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("source = ") {
                format!("source = {:?}", wasm.display().to_string())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Forwards the child's stdout to ours and keeps it; the first `listening on` URL goes to `tx`.
fn drain(
    stdout: impl Read + Send + 'static,
    tx: Option<mpsc::Sender<String>>,
    lines: Arc<Mutex<Vec<String>>>,
) {
    std::thread::spawn(move || {
        let mut tx = tx;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line.clone());
            if let Some((_, url)) = line.split_once("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(url.trim().to_owned());
            }
            println!("[service] {line}");
        }
    });
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An HTTP reply.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    try_request(method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn try_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let agent = http_agent();
    let mut builder = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(body.to_vec()).expect("valid request");
    let response = agent.run(request)?;
    let status = response.status().as_u16();
    let headers = header_pairs(&response);
    let body = response.into_body().read_to_string()?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// The harness's HTTP client: any status is an answer, not an error; any method may be sent;
/// nothing takes longer than 30 s.
fn http_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .allow_non_standard_methods(true)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A response's headers as (name, value) pairs; a value that is not text reads as empty.
fn header_pairs<B>(response: &http::Response<B>) -> Vec<(String, String)> {
    response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect()
}

/// Sends raw bytes and returns the raw response (read until close or 5 s).
pub fn raw_exchange(base_url: &str, bytes: &[u8]) -> String {
    let addr = base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Like [`raw_exchange`], but a server that closes the connection while the request is still
/// being written (or resets it) gives whatever was read so far instead of a panic.
pub fn raw_exchange_lenient(base_url: &str, bytes: &[u8]) -> String {
    let addr = base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let _ = stream.write_all(bytes);
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A temporary directory removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ion-e2e-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fake GCE metadata server (token and project id), over plain HTTP on 127.0.0.1.
pub struct FakeMetadata {
    pub host: String,
    pub token_requests: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeMetadata {
    /// Serves `token` (valid for an hour) and `project`; requires `Metadata-Flavor: Google`.
    pub fn start(token: &'static str, project: &'static str) -> FakeMetadata {
        FakeMetadata::serve(TcpListener::bind("127.0.0.1:0").unwrap(), token, project)
    }

    /// Like [`FakeMetadata::start`], on a listener of the caller's (a fixed port, say).
    pub fn serve(
        listener: TcpListener,
        token: &'static str,
        project: &'static str,
    ) -> FakeMetadata {
        let host = listener.local_addr().unwrap().to_string();
        let token_requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = token_requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let counter = counter.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    loop {
                        let mut head = Vec::new();
                        loop {
                            let mut line = String::new();
                            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            head.push(line);
                        }
                        let path = head[0].split_whitespace().nth(1).unwrap_or("").to_owned();
                        let flavored = head.iter().any(|h| {
                            h.to_ascii_lowercase()
                                .starts_with("metadata-flavor: google")
                        });
                        let (status, body) = if !flavored {
                            ("403 Forbidden", "missing Metadata-Flavor".to_owned())
                        } else if path.starts_with(
                            "/computeMetadata/v1/instance/service-accounts/default/token",
                        ) {
                            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            (
                                "200 OK",
                                format!(
                                    r#"{{"access_token":"{token}","expires_in":3599,"token_type":"Bearer"}}"#
                                ),
                            )
                        } else if path == "/computeMetadata/v1/project/project-id" {
                            ("200 OK", project.to_owned())
                        } else {
                            ("404 Not Found", "not found".to_owned())
                        };
                        let response = format!(
                            "HTTP/1.1 {status}\r\nMetadata-Flavor: Google\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        FakeMetadata {
            host,
            token_requests,
        }
    }
}

/// Runs ion-host expecting a startup failure (exit 1); returns its stderr.
pub fn host_fails(args: &[&str], env: &[(&str, &str)]) -> String {
    let output = Command::new(host_binary())
        .args(args)
        .envs(env.iter().copied())
        .current_dir(workspace_root())
        .output()
        .expect("ion-host runs");
    assert!(
        !output.status.success(),
        "ion-host should fail for {args:?}"
    );
    assert_eq!(output.status.code(), Some(1), "{args:?}");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Waits until the emulator has received at least `count` requests (10 s at most).
pub fn wait_for_upstream_requests(emulator: &Emulator, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while emulator.requests().len() < count {
        assert!(
            Instant::now() < deadline,
            "the emulator saw fewer than {count} requests"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Service {
    /// The process id (of `spin up` itself for Spin).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `host:port` for raw sockets.
    pub fn addr(&self) -> &str {
        self.base_url.trim_start_matches("http://")
    }
}

/// One HTTP/1.1 response read from a raw socket: status, head and body (by Content-Length).
/// None if the connection closed or failed before a whole response arrived.
pub fn read_raw_response(stream: &mut TcpStream) -> Option<(u16, String, String)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    while data.len() < head_end + length {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
        }
    }
    let body = String::from_utf8_lossy(&data[head_end..head_end + length]).into_owned();
    Some((status, head, body))
}
