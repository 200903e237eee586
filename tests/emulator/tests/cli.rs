//! The `vertex-emulator` binary: startup line, flags, busy port, SIGTERM.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use crate::common::*;

const BIN: &str = env!("CARGO_BIN_EXE_vertex-emulator");

struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(args: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vertex-emulator");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim_end()
        .strip_prefix("vertex-emulator listening on http://")
        .unwrap_or_else(|| panic!("unexpected startup line {line:?}"))
        .parse()
        .expect("an address");
    Running { child, addr }
}

fn terminate(running: &mut Running) -> std::process::ExitStatus {
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    running.child.wait().unwrap()
}

fn generate(addr: SocketAddr, token: &str, text: &str) -> Response {
    let auth = format!("Bearer {token}");
    Connection::open(addr)
        .send(
            "POST",
            &generate_path(),
            &[("Authorization", &auth)],
            user_body(text).to_string().as_bytes(),
        )
        .unwrap()
}

#[test]
fn prints_the_real_address_serves_and_exits_0_on_sigterm() {
    let mut running = spawn(&["--listen", "127.0.0.1:0"]);
    assert_ne!(running.addr.port(), 0);
    let response = generate(running.addr, "anything", "from the cli test");
    assert!(
        response
            .reply_text()
            .ends_with("you said: from the cli test")
    );
    let status = terminate(&mut running);
    assert_eq!(status.code(), Some(0), "{status:?}");
}

#[test]
fn token_and_latency_flags_apply() {
    let mut running = spawn(&[
        "--listen",
        "127.0.0.1:0",
        "--token",
        "cli-token",
        "--latency-ms",
        "200",
        "--chunk-delay-ms",
        "1",
        "--no-record",
    ]);
    let start = std::time::Instant::now();
    generate(running.addr, "wrong", "hi").expect_error(401, "UNAUTHENTICATED");
    assert!(start.elapsed() >= std::time::Duration::from_millis(200));
    assert_eq!(generate(running.addr, "cli-token", "hi").status, 200);
    assert_eq!(terminate(&mut running).code(), Some(0));
}

#[test]
fn chunk_delay_flag_paces_streams() {
    let mut running = spawn(&["--listen", "127.0.0.1:0", "--chunk-delay-ms", "80"]);
    let auth = format!("Bearer {TOKEN}");
    let start = std::time::Instant::now();
    let response = Connection::open(running.addr)
        .send(
            "POST",
            &sse_path(),
            &[("Authorization", &auth)],
            user_body("one two three four").to_string().as_bytes(),
        )
        .unwrap();
    let events = sse_events(&response.body);
    assert!(events.len() >= 3);
    assert!(
        start.elapsed() >= std::time::Duration::from_millis(80) * (events.len() as u32 - 1),
        "{:?} for {} events",
        start.elapsed(),
        events.len()
    );
    assert_eq!(terminate(&mut running).code(), Some(0));
}

#[test]
fn help_lists_the_faults_and_flags() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--chunk-delay-ms",
        "STATUSxN",
        "stream-error",
        "chunk-delay=MS",
        "retry-delay=MS",
        "parallel-calls",
        "no-tool",
    ] {
        assert!(help.contains(needle), "{needle} missing from {help}");
    }
}

#[test]
fn busy_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let output = Command::new(BIN)
        .args(["--listen", &addr])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {:?}",
        output.stdout
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
}

#[test]
fn bad_flags_are_rejected() {
    let output = Command::new(BIN)
        .args(["--latency-ms", "soon"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--latency-ms"));
}
