//! ion-host reuses an instance of the component for request after request. These tests hold it
//! to its promise: each request's answer and log lines are its own, before and after a request
//! that trapped or ran past its deadline, and an instance that trapped is never used again.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::*;
use serde_json::Value;

/// Debug logs say when an instance is retired after its last request: proof that reuse
/// happened at all.
const RETIRED: &str = "instance retired after";

fn start(args: &[&str], extra_env: &[(&str, &str)]) -> (Emulator, Service) {
    let emulator = start_emulator();
    let mut env = vec![
        ("RUST_LOG", "debug"),
        // Every answer from Vertex AI (through the emulator), none from the response cache.
        ("SPIN_VARIABLE_CACHE_TTL_SECONDS", "0"),
    ];
    env.extend_from_slice(extra_env);
    let service = Service::start_host(args, &emulator_env_with(&emulator, &env));
    (emulator, service)
}

/// A chat that must be answered with its own message, and only its own.
struct Asked {
    marker: String,
    request_id: String,
    conversation_id: String,
}

fn ask_own(service: &Service, marker: &str, faults: &str) -> Asked {
    let message = format!("격리 확인 {marker} {faults}").trim_end().to_owned();
    let reply = service.ask(&message);
    assert_eq!(reply.status, 200, "{marker}: {}", reply.body);
    let json = reply.json();
    let content = json["content"].as_str().unwrap();
    assert!(
        content.ends_with(&format!("you said: {message}")),
        "{marker} got another answer: {content}"
    );
    Asked {
        marker: marker.to_owned(),
        request_id: reply.header("x-request-id").unwrap().to_owned(),
        conversation_id: json["conversation_id"].as_str().unwrap().to_owned(),
    }
}

/// A chat that must fail with `status` and `code`; returns its request id.
fn ask_failing(service: &Service, text: &str, status: u16, code: &str) -> String {
    let reply = service.ask(&format!("격리 확인 {text}"));
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.json()["code"], code);
    reply.header("x-request-id").unwrap().to_owned()
}

/// No log line of the `asked` chats mentions `marker`.
fn assert_nowhere_else(by_request: &HashMap<String, Vec<Value>>, asked: &[Asked], marker: &str) {
    for chat in asked {
        for entry in &by_request[&chat.request_id] {
            assert!(!entry.to_string().contains(marker), "{entry}");
        }
    }
}

/// The service's log entries, by request id.
fn entries_by_request(service: &Service) -> HashMap<String, Vec<Value>> {
    let mut by_request: HashMap<String, Vec<Value>> = HashMap::new();
    for line in service.stdout_lines() {
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(id) = entry["logging.googleapis.com/labels"]["request_id"].as_str() {
            by_request.entry(id.to_owned()).or_default().push(entry);
        }
    }
    by_request
}

/// Every chat's log lines carry its own conversation and no other chat's marker; the per-chat
/// line of each is there.
fn assert_logs_apart(service: &Service, asked: &[Asked]) {
    // The per-chat line may follow the answer by a moment.
    std::thread::sleep(Duration::from_millis(200));
    let by_request = entries_by_request(service);
    for chat in asked {
        let entries = by_request
            .get(&chat.request_id)
            .unwrap_or_else(|| panic!("no log lines for {}", chat.request_id));
        let chat_line = entries
            .iter()
            .find(|e| e["message"] == "chat")
            .unwrap_or_else(|| panic!("no per-chat line for {}: {entries:?}", chat.marker));
        let logged = chat_line["chat"]["conversation"].as_str().unwrap();
        assert!(
            chat.conversation_id.starts_with(logged),
            "{}: its per-chat line names conversation {logged}, its answer {}",
            chat.marker,
            chat.conversation_id
        );
        for entry in entries {
            let text = entry.to_string();
            for other in asked.iter().filter(|o| o.request_id != chat.request_id) {
                assert!(
                    !text.contains(&other.marker) && !text.contains(&other.conversation_id[..8]),
                    "{}'s log line carries {}'s data: {text}",
                    chat.marker,
                    other.marker
                );
            }
        }
    }
}

#[test]
fn reused_instances_keep_each_requests_answer_and_log_lines_apart() {
    let (_emulator, service) = start(&["--max-instance-reuse-count", "4"], &[]);
    let mut asked: Vec<Asked> = (0..8)
        .map(|i| ask_own(&service, &format!("seq-{i:02}-marker"), ""))
        .collect();
    let service = &service;
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..6)
            .map(|t| {
                scope.spawn(move || {
                    (0..4)
                        .map(|i| ask_own(service, &format!("par-{t}-{i}-marker"), ""))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for thread in threads {
            asked.extend(thread.join().unwrap());
        }
    });
    assert_logs_apart(service, &asked);
    let retired = service
        .stdout_lines()
        .iter()
        .filter(|l| l.contains(&format!("{RETIRED} 4 requests")))
        .count();
    assert!(
        retired >= 2,
        "instances served 4 requests each before they were retired"
    );
}

#[test]
fn an_instance_that_trapped_is_never_used_again() {
    // 4 MiB of linear memory: a chat fits, a 3 MB upstream reply does not. The guest's
    // allocator fails and it aborts: a trap.
    let (_emulator, service) = start(&["--max-memory-mib", "4"], &[]);
    let mut asked: Vec<Asked> = (0..3)
        .map(|i| ask_own(&service, &format!("before-{i}-marker"), ""))
        .collect();

    let trapped_id = ask_failing(
        &service,
        "trap-marker [[emulator:pad=3000000]]",
        500,
        "internal_error",
    );

    // Sequential requests take the most recently used idle instance: had the trapped one
    // gone back, the next request would find it (and wasmtime refuses to enter it again).
    asked.extend((0..6).map(|i| ask_own(&service, &format!("after-{i}-marker"), "")));
    assert_logs_apart(&service, &asked);

    let by_request = entries_by_request(&service);
    let failure = by_request[&trapped_id]
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("component failed"))
        })
        .expect("the trap is logged");
    assert!(
        failure["message"].as_str().unwrap().contains("abort"),
        "{failure}"
    );
    assert_nowhere_else(&by_request, &asked, "trap-marker");
}

#[test]
fn after_a_timeout_requests_get_their_own_deadline_answer_and_logs() {
    let (_emulator, service) = start(
        &["--request-timeout-ms", "1500"],
        &[("SPIN_VARIABLE_REQUEST_TIMEOUT_MS", "10000")],
    );
    // Four sequential 600 ms chats on the same reused instance: 2.4 s in all, past one
    // request's deadline, so each request must get a deadline of its own.
    let mut asked: Vec<Asked> = (0..4)
        .map(|i| {
            ask_own(
                &service,
                &format!("slow-{i}-marker"),
                "[[emulator:slow=600]]",
            )
        })
        .collect();

    let timed_out_id = ask_failing(
        &service,
        "timeout-marker [[emulator:slow=5000]]",
        504,
        "deadline_exceeded",
    );

    asked.extend((0..4).map(|i| ask_own(&service, &format!("next-{i}-marker"), "")));
    assert_logs_apart(&service, &asked);
    let by_request = entries_by_request(&service);
    assert!(
        by_request[&timed_out_id]
            .iter()
            .all(|e| e["message"] != "chat" || e["chat"]["outcome"] != "ok"),
        "the cut request logs no successful chat"
    );
    assert_nowhere_else(&by_request, &asked, "timeout-marker");
}
