//! ion-bench: the measurements behind docs/performance.md (`scripts/bench.sh`).
//!
//! - `load`: closed-loop HTTP/1.1 load against a loopback URL; latency percentiles and
//!   throughput as text, JSON or a markdown table row.
//! - `cold-start`: spawn a server N times and time each start until the first 200.

mod cold;
mod cpu;
mod load;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand, ValueEnum};
use http::{HeaderName, HeaderValue, Method};
use serde_json::{Value, json};

use crate::stats::{Summary, median, minus_ms, ms, rate};

#[derive(Parser, Debug)]
#[command(name = "ion-bench", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Closed-loop load: CONCURRENCY connections, each sending its next request as soon as the
    /// previous response has been read, for a duration or a number of requests.
    Load(LoadArgs),
    /// Start a server RUNS times and measure process start → first 200 on PATH. The command
    /// follows `--`; `{port}` in it becomes a free port for each run.
    ColdStart(ColdArgs),
    /// Print a markdown table of results saved with --json-out (all from `load`, or all from
    /// `cold-start`).
    Table {
        /// Print the rows only.
        #[arg(long)]
        no_header: bool,
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
    /// Print one value of a result saved with --json-out, e.g. `latency_ms.p99`.
    Value {
        file: PathBuf,
        /// Dot-separated field names.
        path: String,
    },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// A readable summary.
    Text,
    /// One JSON object (also what --baseline reads).
    Json,
    /// A markdown table row, after a header unless --no-header.
    Markdown,
}

#[derive(Args, Debug)]
struct Output {
    /// How to print the result on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// With --format markdown: print the row only.
    #[arg(long)]
    no_header: bool,
    /// Also write the result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json_out: Option<PathBuf>,
    /// Name of the run in the output.
    #[arg(long, default_value = "run")]
    label: String,
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// http:// URL on a loopback address.
    #[arg(long)]
    url: String,
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body.
    #[arg(long, conflicts_with_all = ["body_file", "bodies_file"])]
    body: Option<String>,
    /// Request body, read from a file.
    #[arg(long, value_name = "FILE", conflicts_with = "bodies_file")]
    body_file: Option<PathBuf>,
    /// One request body per line: connection `i` sends line `i` (modulo their number), e.g. a
    /// conversation of its own per connection.
    #[arg(long, value_name = "FILE")]
    bodies_file: Option<PathBuf>,
    /// Extra request header, `name: value`; repeatable.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Connections, each with one request in flight at a time.
    #[arg(long, short = 'c', default_value_t = 50)]
    concurrency: usize,
    /// Length of the measured window, in seconds (with --requests: the most it may take).
    #[arg(long, short = 'd', default_value_t = 10.0)]
    duration: f64,
    /// Stop after this many measured requests.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Seconds of load before the measured window; not recorded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Seconds over which the connections send their first requests, spread evenly (at most
    /// --warmup); 0 starts them all at once.
    #[arg(long, default_value_t = 0.0)]
    ramp_up: f64,
    /// Longest wait for one complete response, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// The status that counts as success; any other counts as an error.
    #[arg(long, default_value_t = 200)]
    expect_status: u16,
    /// Worker threads of the load generator (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Fixed upstream latency in milliseconds: adds overhead = latency − this.
    #[arg(long, value_name = "MS")]
    upstream_ms: Option<f64>,
    /// PID of the server under load: adds the CPU time it used during the run, per response.
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// A previous `--format json` result (e.g. the upstream alone): adds overhead = this
    /// run's percentile − the baseline's same percentile.
    #[arg(long, value_name = "FILE")]
    baseline: Option<PathBuf>,
    #[command(flatten)]
    output: Output,
}

#[derive(Args, Debug)]
struct ColdArgs {
    /// Runs per server.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// The path probed until it answers 200.
    #[arg(long, default_value = "/health")]
    path: String,
    /// Longest wait for one run's first 200, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    /// Pause between probes while the server is not up, in microseconds (the resolution).
    #[arg(long, default_value_t = 500)]
    poll_us: u64,
    /// How to print the results on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// With --format markdown: print the rows only.
    #[arg(long)]
    no_header: bool,
    /// A command run after each run, once the server is killed (not timed); `{port}` in it
    /// becomes that run's port. For what outlives the server's process group, e.g.
    /// `podman rm --force ion-{port}`. Words separated by spaces.
    #[arg(long, value_name = "COMMAND")]
    after_each: Option<String>,
    /// Name of each server in the output, in the order of the commands; repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Also write each server's result as JSON, in the order of the commands; repeatable.
    #[arg(long, value_name = "FILE")]
    json_out: Vec<PathBuf>,
    /// The server command, with `{port}` where the port goes. Several servers: separate their
    /// commands with `::`; their runs are then interleaved.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Load(args) => load(args),
        Cmd::ColdStart(args) => cold_start(args),
        Cmd::Table { no_header, files } => table(&files, no_header),
        Cmd::Value { file, path } => value(&file, &path),
    };
    if let Err(e) = result {
        eprintln!("ion-bench: error: {e:#}");
        std::process::exit(1);
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| anyhow::anyhow!("{what} {value} is not a duration in seconds"))
}

fn load(args: LoadArgs) -> Result<()> {
    let target = load::Target::parse(&args.url)?;
    let method = Method::from_bytes(args.method.as_bytes())
        .with_context(|| format!("{:?} is not an HTTP method", args.method))?;
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    let bodies = match (&args.body, &args.body_file, &args.bodies_file) {
        (Some(body), _, _) => vec![Bytes::from(body.clone())],
        (None, Some(path), _) => vec![Bytes::from(read(path)?)],
        (None, None, Some(path)) => {
            let lines: Vec<Bytes> = String::from_utf8(read(path)?)
                .with_context(|| format!("{} is not UTF-8", path.display()))?
                .lines()
                .filter(|line| !line.trim().is_empty())
                .map(|line| Bytes::from(line.to_owned()))
                .collect();
            if lines.is_empty() {
                bail!("{} holds no body", path.display());
            }
            lines
        }
        (None, None, None) => vec![Bytes::new()],
    };
    let headers = args
        .headers
        .iter()
        .map(|h| parse_header(h))
        .collect::<Result<Vec<_>>>()?;
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let baseline = match &args.baseline {
        Some(path) => Some(read_baseline(path)?),
        None => None,
    };
    let plan = load::Plan {
        target,
        method,
        headers,
        bodies,
        concurrency: args.concurrency,
        duration: seconds(args.duration, "--duration")?,
        requests: args.requests,
        warmup: seconds(args.warmup, "--warmup")?,
        ramp_up: seconds(args.ramp_up, "--ramp-up")?,
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        expect_status: args.expect_status,
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let cpu_before = args.server_pid.map(cpu::process_time).transpose()?;
    let wall = std::time::Instant::now();
    let mut outcome = runtime.block_on(load::run(plan.clone()))?;
    let server_cpu = match (args.server_pid, cpu_before) {
        (Some(pid), Some(before)) => {
            let used = cpu::process_time(pid)?.saturating_sub(before);
            Some(json!({
                "pid": pid,
                "seconds": used.as_secs_f64(),
                "cores": used.as_secs_f64() / wall.elapsed().as_secs_f64(),
                "us_per_response": used.as_secs_f64() * 1e6 / outcome.responses_total.max(1) as f64,
            }))
        }
        _ => None,
    };
    let summary = Summary::of(&mut outcome.latencies);
    let mut report = load_report(&args, &plan, &outcome, summary, baseline);
    report["server_cpu"] = server_cpu.unwrap_or(Value::Null);
    let columns = Columns::of([&report]);
    emit(
        &args.output,
        &report,
        &load_header(columns),
        load_row(&report, columns),
    )?;
    if summary.is_none() {
        bail!(
            "no request succeeded with status {}{}",
            plan.expect_status,
            outcome
                .first_failure
                .as_deref()
                .map(|f| format!(" (first failure: {f})"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn parse_header(header: &str) -> Result<(HeaderName, HeaderValue)> {
    let (name, value) = header
        .split_once(':')
        .with_context(|| format!("header {header:?} is not `name: value`"))?;
    Ok((
        HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("{name:?} is not a header name"))?,
        HeaderValue::from_str(value.trim())
            .with_context(|| format!("{value:?} is not a header value"))?,
    ))
}

/// (p50, p99) in milliseconds from a previous JSON result.
fn read_baseline(path: &PathBuf) -> Result<(f64, f64)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let value: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not JSON from `ion-bench load --format json`",
            path.display()
        )
    })?;
    let get = |key: &str| {
        value["latency_ms"][key]
            .as_f64()
            .with_context(|| format!("{} has no latency_ms.{key}", path.display()))
    };
    Ok((get("p50")?, get("p99")?))
}

fn load_report(
    args: &LoadArgs,
    plan: &load::Plan,
    outcome: &load::Outcome,
    summary: Option<Summary>,
    baseline: Option<(f64, f64)>,
) -> Value {
    let ok = summary.map_or(0, |s| s.count as u64);
    let latency = summary.map(|s| {
        json!({
            "min": ms(s.min), "mean": ms(s.mean), "p50": ms(s.p50), "p90": ms(s.p90),
            "p99": ms(s.p99), "p99_9": ms(s.p999), "max": ms(s.max),
        })
    });
    let overhead_fixed = match (summary, args.upstream_ms) {
        (Some(s), Some(up)) => {
            let up_ns = (up * 1e6) as u64;
            json!({
                "upstream_ms": up,
                "p50": minus_ms(s.p50, up_ns), "p90": minus_ms(s.p90, up_ns),
                "p99": minus_ms(s.p99, up_ns), "max": minus_ms(s.max, up_ns),
            })
        }
        _ => Value::Null,
    };
    let overhead_baseline = match (summary, baseline) {
        (Some(s), Some((b50, b99))) => json!({
            "baseline_p50": b50, "baseline_p99": b99,
            "p50": ms(s.p50) - b50, "p99": ms(s.p99) - b99,
        }),
        _ => Value::Null,
    };
    json!({
        "label": args.output.label,
        "url": args.url,
        "method": plan.method.as_str(),
        "concurrency": plan.concurrency,
        "window_s": outcome.window.as_secs_f64(),
        "warmup_s": plan.warmup.as_secs_f64(),
        "ramp_up_s": plan.ramp_up.as_secs_f64(),
        "ok": ok,
        "errors": outcome.errors(plan.expect_status),
        "statuses": outcome.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "failures": outcome.failures,
        "first_failure": outcome.first_failure,
        "connect_failures": outcome.connect_failures,
        "responses_total": outcome.responses_total,
        "throughput_rps": rate(ok, outcome.window),
        "latency_ms": latency,
        "overhead_vs_fixed_ms": overhead_fixed,
        "overhead_vs_baseline_ms": overhead_baseline,
    })
}

const LOAD_HEADER: &str =
    "| run | conc. | ok | errors | req/s | p50 ms | p90 ms | p99 ms | max ms |";
const LOAD_RULE: &str = "|---|---:|---:|---:|---:|---:|---:|---:|---:|";
const CPU_HEADER: &str = " server CPU µs/req |";
const OVERHEAD_HEADER: &str =
    " overhead p50 / p99 ms (− fixed upstream) | overhead p50 / p99 ms (− direct) |";

/// Optional columns of a load table: shown when any of its results has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    cpu: bool,
    overhead: bool,
}

impl Columns {
    fn of<'a>(reports: impl IntoIterator<Item = &'a Value>) -> Columns {
        let mut columns = Columns {
            cpu: false,
            overhead: false,
        };
        for r in reports {
            columns.cpu |= !r["server_cpu"].is_null();
            columns.overhead |=
                !r["overhead_vs_fixed_ms"].is_null() || !r["overhead_vs_baseline_ms"].is_null();
        }
        columns
    }
}

fn load_header(columns: Columns) -> String {
    let mut header = LOAD_HEADER.to_owned();
    let mut rule = LOAD_RULE.to_owned();
    if columns.cpu {
        header.push_str(CPU_HEADER);
        rule.push_str("---:|");
    }
    if columns.overhead {
        header.push_str(OVERHEAD_HEADER);
        rule.push_str("---:|---:|");
    }
    format!("{header}\n{rule}")
}

fn load_row(r: &Value, columns: Columns) -> String {
    let l = &r["latency_ms"];
    let mut row = format!(
        "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {} |",
        r["label"].as_str().unwrap_or(""),
        r["concurrency"],
        r["ok"],
        r["errors"],
        r["throughput_rps"].as_f64().unwrap_or(0.0),
        num(&l["p50"]),
        num(&l["p90"]),
        num(&l["p99"]),
        num(&l["max"]),
    );
    if columns.cpu {
        let cpu = &r["server_cpu"]["us_per_response"];
        row.push_str(&match cpu.as_f64() {
            Some(us) => format!(" {us:.0} |"),
            None => " – |".to_owned(),
        });
    }
    if columns.overhead {
        let pair = |v: &Value| {
            if v.is_null() {
                "–".to_owned()
            } else {
                format!("{} / {}", num(&v["p50"]), num(&v["p99"]))
            }
        };
        row.push_str(&format!(
            " {} | {} |",
            pair(&r["overhead_vs_fixed_ms"]),
            pair(&r["overhead_vs_baseline_ms"])
        ));
    }
    row
}

const COLD_HEADER: &str =
    "| server | runs | median ms | min ms | max ms |\n|---|---:|---:|---:|---:|";

fn cold_row(r: &Value) -> String {
    format!(
        "| {} | {} | {} | {} | {} |",
        r["label"].as_str().unwrap_or(""),
        r["runs"],
        num(&r["median_ms"]),
        num(&r["min_ms"]),
        num(&r["max_ms"]),
    )
}

/// `ion-bench table`: results of one kind as one markdown table.
fn table(files: &[PathBuf], no_header: bool) -> Result<()> {
    let reports = files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            serde_json::from_str::<Value>(&text)
                .with_context(|| format!("{} is not an ion-bench JSON result", path.display()))
        })
        .collect::<Result<Vec<_>>>()?;
    let cold = reports.iter().filter(|r| !r["runs_ms"].is_null()).count();
    let (header, rows): (String, Vec<String>) = if cold == reports.len() {
        (
            COLD_HEADER.to_owned(),
            reports.iter().map(cold_row).collect(),
        )
    } else if cold == 0 {
        let columns = Columns::of(&reports);
        (
            load_header(columns),
            reports.iter().map(|r| load_row(r, columns)).collect(),
        )
    } else {
        bail!("mixed `load` and `cold-start` results: make one table of each");
    };
    if !no_header {
        println!("{header}");
    }
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

/// `ion-bench value`: one field of a saved result, by dot path.
fn value(file: &PathBuf, path: &str) -> Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let report: Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an ion-bench JSON result", file.display()))?;
    let found = path
        .trim_start_matches('.')
        .split('.')
        .try_fold(&report, |v, key| v.get(key))
        .filter(|v| !v.is_null())
        .with_context(|| format!("{} has no value at {path}", file.display()))?;
    match found {
        Value::String(s) => println!("{s}"),
        other => println!("{other}"),
    }
    Ok(())
}

/// Milliseconds with three significant decimals where it matters.
fn num(v: &Value) -> String {
    match v.as_f64() {
        None => "–".to_owned(),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.2}"),
        Some(x) => format!("{x:.3}"),
    }
}

fn cold_start(args: ColdArgs) -> Result<()> {
    let servers = cold::split_commands(&args.command);
    let n = servers.len();
    if args.label.len() > n {
        bail!("{} labels for {n} commands", args.label.len());
    }
    if !args.json_out.is_empty() && args.json_out.len() != n {
        bail!("{} --json-out files for {n} commands", args.json_out.len());
    }
    let plan = cold::Plan {
        servers: servers.clone(),
        runs: args.runs,
        path: args.path.clone(),
        timeout: Duration::from_millis(args.timeout_ms.max(1)),
        poll: Duration::from_micros(args.poll_us),
        after_each: args
            .after_each
            .as_deref()
            .map(|c| c.split_whitespace().map(str::to_owned).collect())
            .filter(|words: &Vec<String>| !words.is_empty()),
    };
    let results = cold::run(&plan)?;
    let mut reports = Vec::with_capacity(n);
    for (i, mut samples) in results.into_iter().enumerate() {
        let runs_ms: Vec<f64> = samples.iter().map(|&s| ms(s)).collect();
        let summary = Summary::of(&mut samples).context("no run finished")?;
        let label = args
            .label
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("server {}", i + 1));
        let report = json!({
            "label": label,
            "command": servers[i].join(" "),
            "path": args.path,
            "runs": samples.len(),
            "interleaved_with": n - 1,
            "poll_us": args.poll_us,
            "median_ms": ms(median(&samples)),
            "min_ms": ms(summary.min),
            "p90_ms": ms(summary.p90),
            "max_ms": ms(summary.max),
            "runs_ms": runs_ms,
        });
        if let Some(path) = args.json_out.get(i) {
            write_json(path, &report)?;
        }
        reports.push(report);
    }
    match args.format {
        Format::Json if n == 1 => println!("{:#}", reports[0]),
        Format::Json => println!("{:#}", Value::Array(reports)),
        Format::Markdown => {
            if !args.no_header {
                println!("{COLD_HEADER}");
            }
            for report in &reports {
                println!("{}", cold_row(report));
            }
        }
        Format::Text => {
            let texts: Vec<String> = reports.iter().map(text).collect();
            println!("{}", texts.join("\n\n"));
        }
    }
    Ok(())
}

fn write_json(path: &PathBuf, report: &Value) -> Result<()> {
    std::fs::write(path, format!("{report:#}\n"))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn emit(output: &Output, report: &Value, header: &str, row: String) -> Result<()> {
    if let Some(path) = &output.json_out {
        write_json(path, report)?;
    }
    match output.format {
        Format::Json => println!("{report:#}"),
        Format::Markdown => {
            if !output.no_header {
                println!("{header}");
            }
            println!("{row}");
        }
        Format::Text => println!("{}", text(report)),
    }
    Ok(())
}

/// `key: value` lines of the report's scalar fields and one level of nested objects.
fn text(report: &Value) -> String {
    let mut lines = Vec::new();
    if let Value::Object(map) = report {
        for (key, value) in map {
            match value {
                Value::Null => {}
                Value::Object(inner) => {
                    let fields: Vec<String> = inner
                        .iter()
                        .map(|(k, v)| format!("{k}={}", num_or(v)))
                        .collect();
                    lines.push(format!("{key}: {}", fields.join(" ")));
                }
                Value::Array(items) => {
                    let items: Vec<String> = items.iter().map(num_or).collect();
                    lines.push(format!("{key}: {}", items.join(" ")));
                }
                other => lines.push(format!("{key}: {}", num_or(other))),
            }
        }
    }
    lines.join("\n")
}

fn num_or(v: &Value) -> String {
    match v {
        Value::Number(n) if n.is_f64() => num(v),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_parses_both_subcommands() {
        let cli = Cli::try_parse_from([
            "ion-bench",
            "load",
            "--url",
            "http://127.0.0.1:1/health",
            "-c",
            "100",
            "-d",
            "2",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Cmd::Load(LoadArgs {
                concurrency: 100,
                ..
            })
        ));
        let cli = Cli::try_parse_from([
            "ion-bench",
            "cold-start",
            "--runs",
            "3",
            "--",
            "srv",
            "--listen",
            "127.0.0.1:{port}",
        ])
        .unwrap();
        let Cmd::ColdStart(args) = cli.command else {
            panic!("not cold-start")
        };
        assert_eq!(args.command, ["srv", "--listen", "127.0.0.1:{port}"]);
        let cli = Cli::try_parse_from([
            "ion-bench",
            "cold-start",
            "--label",
            "a",
            "--label",
            "b",
            "--",
            "a",
            "{port}",
            "::",
            "b",
            "{port}",
        ])
        .unwrap();
        let Cmd::ColdStart(args) = cli.command else {
            panic!("not cold-start")
        };
        assert_eq!(args.label, ["a", "b"]);
        assert_eq!(cold::split_commands(&args.command).len(), 2);
        assert!(Cli::try_parse_from(["ion-bench", "cold-start"]).is_err());
    }

    #[test]
    fn headers_and_rows() {
        let (name, value) = parse_header("Content-Type: application/json").unwrap();
        assert_eq!(
            (name.as_str(), value.to_str().unwrap()),
            ("content-type", "application/json")
        );
        assert!(parse_header("no colon").is_err());
        let report = json!({
            "label": "x", "concurrency": 5, "ok": 10, "errors": 0, "throughput_rps": 99.6,
            "latency_ms": {"p50": 51.23456, "p90": 52.0, "p99": 150.26, "max": 3.0},
            "overhead_vs_fixed_ms": {"p50": 1.23456, "p99": 100.26},
            "overhead_vs_baseline_ms": null,
        });
        let columns = Columns::of([&report]);
        assert_eq!(
            columns,
            Columns {
                cpu: false,
                overhead: true
            }
        );
        assert_eq!(
            load_row(&report, columns),
            "| x | 5 | 10 | 0 | 100 | 51.23 | 52.00 | 150.3 | 3.000 | 1.235 / 100.3 | – |"
        );
        let plain = Columns {
            cpu: false,
            overhead: false,
        };
        assert_eq!(
            load_row(&report, plain),
            "| x | 5 | 10 | 0 | 100 | 51.23 | 52.00 | 150.3 | 3.000 |"
        );
        let all = Columns {
            cpu: true,
            overhead: true,
        };
        assert!(load_row(&report, all).contains("| 3.000 | – | 1.235 / 100.3 |"));
        for columns in [plain, columns, all] {
            let header = load_header(columns);
            let mut lines = header.lines();
            let (title, rule) = (lines.next().unwrap(), lines.next().unwrap());
            let cells = load_row(&report, columns).matches('|').count();
            assert_eq!(title.matches('|').count(), cells);
            assert_eq!(rule.matches('|').count(), cells);
        }
    }
}
