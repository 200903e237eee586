//! CPU time a process has used, from `/proc/PID/stat` (all its threads, user + system).

use std::time::Duration;

use anyhow::{Context, Result};

/// Clock ticks per second of `/proc` times: USER_HZ, 100 on Linux whatever the kernel's HZ.
const TICKS_PER_SECOND: u64 = 100;

pub fn process_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {path}: is process {pid} running?"))?;
    parse_stat(&stat).with_context(|| format!("{path} has an unexpected format"))
}

/// utime + stime (fields 14 and 15). The command name (field 2) may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Duration> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): field N is fields[N - 3].
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = utime + stime;
    Some(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_plus_system_time_after_the_command_name() {
        let stat = "4242 (ion host) (x)) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 37 0 0 20 0 \
                    3 0 100 0 0";
        assert_eq!(parse_stat(stat), Some(Duration::from_millis(1870)));
        assert_eq!(parse_stat("4242 (short) S 1"), None);
        assert!(process_time(std::process::id()).is_ok());
    }
}
