//! The chat page in a real browser: starts the Vertex AI emulator and ion-host, then runs
//! `tests/browser/chat_page.py` (Playwright driving Debian's headless Chromium) against it.
//!
//! A second ion-host, whose key-value store cannot be reached (Redis at a closed port), shows
//! the page the service's real `503 store_unavailable` and `null` conversation ids. Three more
//! show it the access layer: limits for callers without a key (questions per minute; a daily
//! token budget), and a service that requires API keys, with the admin API on to make them.
//!
//! The script asks this test for the facts only the server side can see, one line each way
//! (`@@check {json}` → `ok` | `fail: why`): what the emulator received, and whether the
//! emulator saw its client go away when the page stopped an answer.
//!
//! `scripts/test.sh` installs Chromium (apt), Playwright (PyPI) and axe-core (npm) under
//! `target/browser-tools`. Without them the test is skipped with a message, except in CI
//! (`CI` set), where it fails.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::serial;
use crate::common::{
    Emulator, Service, emulator_env, free_port, request, runtimes, start_emulator, workspace_root,
};
use serde_json::Value;
use vertex_emulator::RecordedRequest;

/// The whole browser run is bounded: past this the script and its browser are killed.
const RUN_LIMIT: Duration = Duration::from_secs(420);
/// The admin API's token on the service that requires keys (the script makes keys with it).
const ADMIN_TOKEN: &str = "browser-test-admin-token-0123456789abcdef";

struct BrowserTools {
    python: PathBuf,
    chromium: PathBuf,
    axe: PathBuf,
}

/// The installed tools, or why they are missing.
fn browser_tools() -> Result<BrowserTools, String> {
    let tools = workspace_root().join("target/browser-tools");
    let chromium = std::env::var_os("CHROMIUM_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let found = BrowserTools {
        python: tools.join("venv/bin/python"),
        chromium,
        axe: tools.join("node_modules/axe-core/axe.min.js"),
    };
    for (what, path) in [
        ("Chromium", &found.chromium),
        ("Playwright's Python", &found.python),
        ("axe-core", &found.axe),
    ] {
        if !path.is_file() {
            return Err(format!(
                "{what} is not installed at {} (./scripts/test.sh installs it)",
                path.display()
            ));
        }
    }
    Ok(found)
}

#[test]
fn the_chat_page_works_in_a_real_browser() {
    let _heavy = serial::heavy();
    let tools = match browser_tools() {
        Ok(tools) => tools,
        Err(why) if std::env::var_os("CI").is_some() => panic!("CI is set: {why}"),
        Err(why) => {
            eprintln!("note: browser tests skipped: {why}");
            return;
        }
    };
    let emulator = start_emulator();
    let mut env = emulator_env(&emulator);
    for (key, value) in &mut env {
        if key == "SPIN_VARIABLE_REQUEST_TIMEOUT_MS" {
            // Long enough for the slow streams the page is tested with.
            *value = "30000".into();
        }
    }
    let service = Service::start_host(&[], &env);
    let mut down = env.clone();
    down.push((
        "ION_RUNTIME_CONFIG".into(),
        format!(
            r#"key_value_store.default = {{ type = "redis", url = "redis://127.0.0.1:{}" }}"#,
            free_port()
        ),
    ));
    let store_down = Service::start_host(&[], &down);
    let with = |vars: &[(&str, &str)]| {
        let mut env = env.clone();
        env.extend(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        Service::start_host(&[], &env)
    };
    // Two questions a minute and a generous budget: the allowance shown, then the minute's limit.
    let limited = with(&[
        ("SPIN_VARIABLE_ANONYMOUS_REQUESTS_PER_MINUTE", "2"),
        ("SPIN_VARIABLE_ANONYMOUS_DAILY_TOKENS", "1000000"),
    ]);
    // One token a day: the first answer spends it, the next question is refused.
    let budget = with(&[("SPIN_VARIABLE_ANONYMOUS_DAILY_TOKENS", "1")]);
    let keys = with(&[
        ("SPIN_VARIABLE_AUTH_MODE", "keys"),
        ("SPIN_VARIABLE_ADMIN_TOKEN", ADMIN_TOKEN),
    ]);

    let screenshots = workspace_root().join("target/screenshots");
    let mut command = Command::new(&tools.python);
    command
        .arg(workspace_root().join("tests/browser/chat_page.py"))
        .arg("--base-url")
        .arg(&service.base_url)
        .arg("--store-down-url")
        .arg(&store_down.base_url)
        .arg("--limited-url")
        .arg(&limited.base_url)
        .arg("--budget-url")
        .arg(&budget.base_url)
        .arg("--keys-url")
        .arg(&keys.base_url)
        .arg("--admin-token")
        .arg(ADMIN_TOKEN)
        .arg("--chromium")
        .arg(&tools.chromium)
        .arg("--axe")
        .arg(&tools.axe)
        .arg("--screenshots")
        .arg(&screenshots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0);
    let mut child = command.spawn().expect("the browser script starts");
    let finished = Arc::new(AtomicBool::new(false));
    watchdog(child.id(), finished.clone());

    let mut answers = child.stdin.take().unwrap();
    let mut failures = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        let Some(request) = line.strip_prefix("@@check ") else {
            println!("[browser] {line}");
            continue;
        };
        let request: Value = serde_json::from_str(request).expect("a JSON check");
        let verdict = verify(&request, &emulator);
        println!("[check] {} → {verdict:?}", request["kind"]);
        let reply = match &verdict {
            Ok(()) => "ok".to_owned(),
            Err(why) => {
                failures.push(why.clone());
                format!("fail: {why}")
            }
        };
        if writeln!(answers, "{reply}").is_err() {
            break;
        }
    }
    let status = child.wait().expect("the browser script ends");
    finished.store(true, Ordering::SeqCst);
    assert!(
        failures.is_empty(),
        "server-side checks failed: {failures:#?}"
    );
    assert!(
        status.success(),
        "the browser scenarios failed ({status}); see the output above"
    );
    for name in ["desktop-light", "desktop-dark", "phone-light", "phone-dark"] {
        let shot = screenshots.join(format!("chat-{name}.png"));
        assert!(shot.is_file(), "{} was not saved", shot.display());
    }
}

/// Plain HTTP, on both runtimes: browsers get the page and its files with their security
/// headers; every other caller of `/` gets the same JSON as before.
#[test]
fn both_runtimes_serve_the_page_to_browsers_only() {
    const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let emulator = start_emulator();
    for runtime in runtimes() {
        let service = Service::start(runtime, &emulator_env(&emulator));
        let page = request("GET", &service.url("/"), &[("accept", BROWSER)], b"");
        assert_eq!(page.status, 200, "{runtime:?}");
        assert_eq!(
            page.header("content-type"),
            Some("text/html; charset=utf-8"),
            "{runtime:?}"
        );
        assert!(
            page.body.contains("<title>Ion Mentoring</title>"),
            "{runtime:?}"
        );
        let csp = page.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{runtime:?}: {csp}"
        );
        assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
        assert_eq!(page.header("vary"), Some("accept"));

        for (path, content_type) in [
            ("/ui/app.js", "text/javascript; charset=utf-8"),
            ("/ui/markdown.js", "text/javascript; charset=utf-8"),
            ("/ui/app.css", "text/css; charset=utf-8"),
            ("/ui/icon.svg", "image/svg+xml"),
        ] {
            let file = service.get(path);
            assert_eq!(file.status, 200, "{runtime:?} {path}");
            assert_eq!(file.header("content-type"), Some(content_type), "{path}");
            assert_eq!(file.header("x-content-type-options"), Some("nosniff"));
        }
        assert_eq!(service.get("/ui/nope.js").status, 404, "{runtime:?}");
        assert_eq!(
            request("POST", &service.url("/ui/app.js"), &[], b"").status,
            405,
            "{runtime:?}"
        );

        for accept in [None, Some("*/*"), Some("application/json")] {
            let headers: Vec<(&str, &str)> = accept.map(|a| ("accept", a)).into_iter().collect();
            let index = request("GET", &service.url("/"), &headers, b"");
            assert_eq!(index.status, 200, "{runtime:?} {accept:?}");
            assert_eq!(index.header("content-type"), Some("application/json"));
            assert_eq!(index.json()["status"], "running", "{runtime:?} {accept:?}");
            assert_eq!(index.header("content-security-policy"), None);
        }
    }
}

/// Kills the script's process group (Python, Playwright's driver, Chromium) past [`RUN_LIMIT`].
fn watchdog(pid: u32, finished: Arc<AtomicBool>) {
    std::thread::spawn(move || {
        let deadline = Instant::now() + RUN_LIMIT;
        while Instant::now() < deadline {
            if finished.load(Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        eprintln!("browser scenarios still running after {RUN_LIMIT:?}: killing them");
        let _ = Command::new("kill")
            .args(["-s", "KILL", "--", &format!("-{pid}")])
            .status();
    });
}

/// One server-side fact the script asked about.
fn verify(request: &Value, emulator: &Emulator) -> Result<(), String> {
    let message = request["message"].as_str().unwrap_or_default();
    match request["kind"].as_str() {
        Some("history") => {
            let body = upstream_request_for(emulator, message)?.body;
            let contents = body["contents"].as_array().cloned().unwrap_or_default();
            let turns: Vec<(String, String)> = contents
                .iter()
                .map(|c| {
                    let text = c["parts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|p| p["text"].as_str())
                        .collect::<String>();
                    (c["role"].as_str().unwrap_or_default().to_owned(), text)
                })
                .collect();
            let earlier: Vec<&str> = request["earlier"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let expected = vec![
                ("user".to_owned(), earlier[0].to_owned()),
                ("model".to_owned(), earlier[1].to_owned()),
                ("user".to_owned(), message.to_owned()),
            ];
            (turns == expected)
                .then_some(())
                .ok_or_else(|| format!("Gemini got {turns:?}, expected {expected:?}"))
        }
        Some("persona") => {
            let persona = request["persona"].as_str().unwrap_or_default();
            let body = upstream_request_for(emulator, message)?.body;
            let instruction = body["systemInstruction"].to_string();
            (instruction.contains(&format!("멘토 {persona}"))
                || instruction.contains(&format!("You are {persona}")))
            .then_some(())
            .ok_or_else(|| format!("the system instruction is not {persona}'s: {instruction}"))
        }
        Some("cancelled") => {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let call = upstream_request_for(emulator, message)?;
                if call.client_disconnected() {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the emulator's stream was not cancelled within 10 s: {:?}",
                        call.delivery
                    ));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        other => Err(format!("unknown check {other:?}")),
    }
}

/// The newest request the emulator received whose last user text is `message`.
fn upstream_request_for(emulator: &Emulator, message: &str) -> Result<RecordedRequest, String> {
    emulator
        .requests()
        .into_iter()
        .rev()
        .find(|r| {
            r.body["contents"]
                .as_array()
                .and_then(|c| c.last())
                .and_then(|c| c["parts"][0]["text"].as_str())
                == Some(message)
        })
        .ok_or_else(|| format!("the emulator never received {message:?}"))
}
