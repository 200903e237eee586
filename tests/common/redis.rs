//! A real `redis-server` for tests: on a free loopback port, with no persistence (`--save ""
//! --appendonly no`) in a temporary directory of its own, ready once it answers PING, killed on
//! drop. `restart` brings it back on the same port, empty; `pause` and `resume` stop and continue
//! the process (SIGSTOP / SIGCONT), so a client sees a server that accepts and never answers.
//!
//! The binary: `$REDIS_SERVER_BIN`, then `redis-server` on PATH, then `/usr/bin/redis-server`
//! (`scripts/test.sh` installs Debian's). Without one a test is skipped with a message, except
//! in CI (`CI` set), where that is a failure.
//!
//! Only std: ion-host's own tests include this file too.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub struct RedisServer {
    binary: PathBuf,
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

/// `$REDIS_SERVER_BIN`, then `redis-server` on PATH, then `/usr/bin/redis-server`.
pub fn redis_server_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER_BIN") {
        return Some(PathBuf::from(path));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join("redis-server");
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    let debian = PathBuf::from("/usr/bin/redis-server");
    debian.is_file().then_some(debian)
}

impl RedisServer {
    /// Starts a server, or returns `None` (saying why) when there is no binary outside CI.
    pub fn start() -> Option<RedisServer> {
        let Some(binary) = redis_server_binary() else {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "CI is set but no redis-server was found ($REDIS_SERVER_BIN, PATH, \
                     /usr/bin/redis-server): scripts/test.sh installs it"
                );
            }
            eprintln!(
                "skipping: no redis-server ($REDIS_SERVER_BIN, PATH, /usr/bin/redis-server); \
                 `apt-get install redis-server` or run scripts/test.sh"
            );
            return None;
        };
        let port = free_port();
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("ion-redis-{}-{port}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the redis-server directory");
        let mut server = RedisServer {
            binary,
            port,
            dir,
            child: None,
        };
        server.spawn();
        Some(server)
    }

    /// Used by ion-host's own store tests (host/src/kv/tests_redis.rs includes this file).
    #[allow(dead_code)]
    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("redis-server is running").id()
    }

    /// Kills the server and starts a new one on the same port (with no data).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        signal("STOP", self.pid());
    }

    /// Continues a paused process (SIGCONT).
    pub fn resume(&self) {
        signal("CONT", self.pid());
    }

    /// Runs `redis-cli` (beside the server binary, else on PATH) against this server and
    /// returns its output: for tests that write what the service would never write.
    pub fn cli(&self, args: &[&str]) -> String {
        let beside = self.binary.with_file_name("redis-cli");
        let cli = if beside.is_file() {
            beside
        } else {
            PathBuf::from("redis-cli")
        };
        let out = Command::new(&cli)
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cli.display()));
        assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.join("redis.log")).expect("create redis.log");
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if ping(self.port) {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "redis-server exited ({status}) before answering PING:\n{}",
                    std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (SIGKILL): connections drop, new ones are refused.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused process dies of SIGKILL too.
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("find a free port")
}

/// Whether a server on `port` answers PING with PONG.
fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).is_ok() && &reply == b"+PONG\r\n"
}

fn signal(name: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}
