//! Cold start: the time from spawning a server process to its first 200 on a path.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// The placeholder in the command line replaced by a free port for each run.
pub const PORT_PLACEHOLDER: &str = "{port}";

/// Separates the commands of several servers measured together.
pub const SEPARATOR: &str = "::";

#[derive(Debug, Clone)]
pub struct Plan {
    /// The server commands; each has an argument containing [`PORT_PLACEHOLDER`].
    pub servers: Vec<Vec<String>>,
    /// Runs per server. Runs are interleaved (A B, B A, A B, ...) so that every server meets
    /// the same machine conditions.
    pub runs: usize,
    pub path: String,
    /// Longest wait for the first 200 of one run.
    pub timeout: Duration,
    /// Pause between two probes while the server is not up yet.
    pub poll: Duration,
    /// Run after each run (its port in [`PORT_PLACEHOLDER`]), once the server is killed: for
    /// what outlives the server's process group, such as a container that podman's monitor
    /// keeps running. Not timed.
    pub after_each: Option<Vec<String>>,
}

/// Splits `a b :: c d` into `[[a, b], [c, d]]`.
pub fn split_commands(words: &[String]) -> Vec<Vec<String>> {
    words
        .split(|w| w == SEPARATOR)
        .map(<[String]>::to_vec)
        .collect()
}

/// Times, in nanoseconds, from spawn to the first 200: one list per server, one entry per run.
pub fn run(plan: &Plan) -> Result<Vec<Vec<u64>>> {
    if plan.runs == 0 {
        bail!("--runs must be at least 1");
    }
    for command in &plan.servers {
        if command.is_empty() {
            bail!("an empty command: put each after `--`, separated by `{SEPARATOR}`");
        }
        if !command.iter().any(|a| a.contains(PORT_PLACEHOLDER)) {
            bail!(
                "`{}` has no {PORT_PLACEHOLDER} where the listening port goes, e.g. \
                 `-- ion-host --listen 127.0.0.1:{PORT_PLACEHOLDER}`",
                command.join(" ")
            );
        }
    }
    let n = plan.servers.len();
    let mut samples = vec![Vec::with_capacity(plan.runs); n];
    for run in 0..plan.runs {
        for k in 0..n {
            let server = (run + k) % n;
            let elapsed = once(&plan.servers[server], plan).with_context(|| {
                format!("run {} of `{}`", run + 1, plan.servers[server].join(" "))
            })?;
            samples[server].push(crate::stats::nanos(elapsed));
            // Let the port and the process's memory go before the next start.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(samples)
}

/// Starts the server once, waits for its first 200 and kills it.
fn once(command: &[String], plan: &Plan) -> Result<Duration> {
    let port = free_port()?;
    let args: Vec<String> = command[1..]
        .iter()
        .map(|a| a.replace(PORT_PLACEHOLDER, &port.to_string()))
        .collect();
    let mut spawn = Command::new(&command[0]);
    spawn
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        // Its own process group, so that what it starts goes with it (`spin up` serves from a
        // child process).
        .process_group(0);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    let child = spawn
        .spawn()
        .with_context(|| format!("cannot start {}", command[0]))?;
    let mut child = KillOnDrop(child);
    let result = wait_for_200(&mut child.0, addr, plan, started);
    drop(child);
    if let Some(after) = &plan.after_each {
        let args: Vec<String> = after
            .iter()
            .map(|a| a.replace(PORT_PLACEHOLDER, &port.to_string()))
            .collect();
        let status = Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .with_context(|| format!("cannot run the after-each command {}", args[0]))?;
        if !status.success() {
            bail!(
                "the after-each command `{}` failed ({status})",
                args.join(" ")
            );
        }
    }
    result
}

fn wait_for_200(
    child: &mut Child,
    addr: SocketAddr,
    plan: &Plan,
    started: Instant,
) -> Result<Duration> {
    let mut last = String::from("no connection accepted yet");
    loop {
        match probe(addr, &plan.path) {
            Ok(200) => return Ok(started.elapsed()),
            Ok(status) => last = format!("last answer was {status}"),
            Err(e) => {
                if !is_refused(&e) {
                    last = format!("{e:#}");
                }
            }
        }
        if let Some(status) = child.try_wait()? {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = pipe.read_to_string(&mut stderr);
            }
            bail!(
                "the server exited ({status}) before answering 200 on {}; its stderr:\n{}",
                plan.path,
                stderr.trim_end()
            );
        }
        if started.elapsed() > plan.timeout {
            bail!(
                "no 200 from http://{addr}{} within {:?} ({last})",
                plan.path,
                plan.timeout
            );
        }
        std::thread::sleep(plan.poll);
    }
}

fn is_refused(e: &anyhow::Error) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused)
}

/// One `GET path` on a fresh connection; the response's status code.
fn probe(addr: SocketAddr, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::with_capacity(64);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 1024 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    parse_status_line(&head).context("the server's answer is not an HTTP/1.x response")
}

fn parse_status_line(head: &[u8]) -> Option<u16> {
    let line = std::str::from_utf8(head).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.trim().parse().ok()
}

/// A port that was free a moment ago (the server binds it right after).
fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Kills (SIGKILL) the server's process group and reaps the server when a run ends,
/// successfully or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK\r\n"), Some(200));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 \r\n"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0-x\r\n"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn commands_split_on_the_separator() {
        let words: Vec<String> = ["a", "{port}", "::", "b", "-p", "{port}"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            split_commands(&words),
            vec![vec!["a", "{port}"], vec!["b", "-p", "{port}"]]
        );
        assert_eq!(split_commands(&words[..2]).len(), 1);
    }

    #[test]
    fn a_command_without_the_port_placeholder_is_refused() {
        let plan = Plan {
            servers: vec![vec!["true".into(), "{port}".into()], vec!["true".into()]],
            runs: 1,
            path: "/health".into(),
            timeout: Duration::from_secs(1),
            poll: Duration::from_millis(1),
            after_each: None,
        };
        let err = run(&plan).unwrap_err().to_string();
        assert!(err.contains("`true` has no {port}"), "{err}");
    }
}
