//! Conversations and the response cache, end to end, on every store both runtimes offer:
//! ion-host with its embedded store and with Redis, `spin up` with its default (SQLite) store
//! and with Redis through a runtime-config file. The same suite runs on each; Redis is a real
//! `redis-server` started on a free port (see `crate::common::redis`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::redis::RedisServer as Redis;
use crate::common::serial;
use crate::common::{
    Emulator, Event, Reply, Runtime, Service, Store, TempDir, emulator_env, request, runtimes,
    start_emulator, stream_chat,
};
use serde_json::{Value, json};

/// Starts `runtime` on `store`, with its state under `state_dir`.
fn start(
    runtime: Runtime,
    store: &Store<'_>,
    state_dir: &Path,
    emulator: &Emulator,
    extra_env: &[(&str, &str)],
) -> Service {
    let mut env = emulator_env(emulator);
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Service::start_on(runtime, store, state_dir, &[], &env)
}

fn ok(reply: Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()
}

/// Every event of a streamed `/chat` answer to `body`.
fn stream_events(service: &Service, body: &Value) -> Vec<Event> {
    let mut stream = service.stream(body);
    assert_eq!(stream.status, 200);
    stream.rest()
}

fn transcript(service: &Service, id: &str) -> Value {
    ok(service.get(&format!("/conversations/{id}")))
}

fn upstream_calls(emulator: &Emulator) -> usize {
    emulator.wait_until_settled(Duration::from_secs(5)).len()
}

/// The suite every store passes.
fn conversations_and_cache(runtime: Runtime, store: Store<'_>) {
    let emulator = start_emulator();
    let state = TempDir::new();
    let service = start(runtime, &store, state.path(), &emulator, &[]);
    let label = format!("{runtime:?}");

    // A first turn starts a conversation; the second continues it with its history.
    let first = ok(service.chat_with_headers(
        &json!({"message": format!("How do I begin, {label}?")}),
        &[],
    ));
    let id = first["conversation_id"]
        .as_str()
        .expect("a new conversation id")
        .to_owned();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(first["metadata"]["cache"], "miss");
    let second = ok(service.chat_with_headers(
        &json!({"message": "And after that?", "conversation_id": id}),
        &[],
    ));
    assert_eq!(second["conversation_id"], id.as_str());
    assert!(
        second["content"].as_str().unwrap().contains("turn 3]"),
        "{second}"
    );
    assert!(
        second["metadata"]["usage"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{second}"
    );
    let sent = emulator.requests().last().unwrap().body.clone();
    assert_eq!(
        sent["contents"][0]["parts"][0]["text"],
        format!("How do I begin, {label}?")
    );

    // Streamed: the id comes in the first event, and the turn is stored before `done`.
    let streamed = stream_events(
        &service,
        &json!({"message": "Stream the next step", "conversation_id": id}),
    );
    assert_eq!(streamed[0].name, "meta");
    assert_eq!(streamed[0].data["conversation_id"], id.as_str());
    let done = streamed.last().unwrap();
    assert_eq!(done.name, "done", "{streamed:?}");
    assert_eq!(done.data["conversation_id"], id.as_str());
    let text: String = streamed
        .iter()
        .filter(|e| e.name == "delta")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    let kept = transcript(&service, &id);
    let turns = kept["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{kept}");
    assert_eq!(turns[2]["question"], "Stream the next step");
    assert_eq!(turns[2]["answer"], text.as_str());
    assert_eq!(kept["conversation_id"], id.as_str());

    // A streamed first turn starts a conversation that can be read at once.
    let fresh = stream_events(
        &service,
        &json!({"message": format!("A new topic for {label}")}),
    );
    let new_id = fresh[0].data["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(new_id, id);
    assert_eq!(
        transcript(&service, &new_id)["turns"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Callers that keep their own history still can; the server then stores nothing.
    let own = ok(service.chat_with_headers(&json!({"message": "Mine", "history": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
        &[],
    ));
    assert_eq!(own["conversation_id"], Value::Null);

    // Bad ids and bad combinations.
    let both = service.chat_with_headers(&json!({"message": "x", "conversation_id": id, "history": [{"role": "user", "content": "a"}]}),
        &[],
    );
    assert_eq!(both.status, 422, "{}", both.body);
    for bad in ["nope", "../../etc/passwd", &"A".repeat(32), &"0".repeat(33)] {
        let r = service.chat_with_headers(&json!({"message": "x", "conversation_id": bad}), &[]);
        assert_eq!(r.status, 422, "{bad}: {}", r.body);
    }
    let r = service.chat_with_headers(&json!({"message": "x", "conversation_id": 12}), &[]);
    assert_eq!(r.status, 422);
    let unknown = "0123456789abcdef".repeat(2);
    let r = service.chat_with_headers(&json!({"message": "x", "conversation_id": unknown}), &[]);
    assert_eq!(r.status, 404, "{}", r.body);
    assert_eq!(r.json()["code"], "conversation_not_found");
    assert_eq!(
        service.get(&format!("/conversations/{unknown}")).status,
        404
    );
    let r = service.get("/conversations/not-an-id");
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(
        r.json()["detail"][0]["loc"],
        json!(["path", "conversation_id"])
    );
    let r = request(
        "PUT",
        &service.url(&format!("/conversations/{id}")),
        &[],
        b"",
    );
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, DELETE"));

    // The response cache: a repeated first question is answered without Gemini.
    let question = json!({"message": format!("What is a good first project, {label}?")});
    let miss = ok(service.chat_with_headers(&question, &[]));
    let calls = upstream_calls(&emulator);
    let hit = ok(service.chat_with_headers(
        &json!({"message": format!("  what is a good FIRST project, {label}? ")}),
        &[],
    ));
    assert_eq!(hit["metadata"]["cache"], "hit", "{hit}");
    assert_eq!(hit["content"], miss["content"]);
    assert_eq!(hit["metadata"]["attempts"], 0);
    assert_ne!(hit["conversation_id"], miss["conversation_id"]);
    let replay = stream_events(&service, &json!({"message": question["message"]}));
    assert_eq!(replay.last().unwrap().data["metadata"]["cache"], "hit");
    let replayed: String = replay
        .iter()
        .filter(|e| e.name == "delta")
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(replayed, miss["content"].as_str().unwrap());
    assert_eq!(
        upstream_calls(&emulator),
        calls,
        "hits make no upstream call"
    );
    let bypass = ok(service.chat_with_headers(&question, &[("cache-control", "no-cache")]));
    assert_eq!(bypass["metadata"]["cache"], "miss");
    assert_eq!(upstream_calls(&emulator), calls + 1);

    // 50 turns at once on one conversation: none lost, none paired with another's answer.
    let base = Arc::new(service.base_url.clone());
    let id = Arc::new(id);
    let workers: Vec<_> = (0..50)
        .map(|i| {
            let (base, id) = (base.clone(), id.clone());
            std::thread::spawn(move || {
                let body =
                    json!({"message": format!("parallel question {i}"), "conversation_id": *id});
                request(
                    "POST",
                    &format!("{base}/chat"),
                    &[("content-type", "application/json")],
                    body.to_string().as_bytes(),
                )
                .status
            })
        })
        .collect();
    for worker in workers {
        assert_eq!(worker.join().unwrap(), 200);
    }
    let kept = transcript(&service, &id);
    let turns = kept["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3 + 50, "no turn lost");
    let mut seen: Vec<u32> = Vec::new();
    for turn in &turns[3..] {
        let question = turn["question"].as_str().unwrap();
        assert!(
            turn["answer"]
                .as_str()
                .unwrap()
                .ends_with(&format!("you said: {question}")),
            "a question paired with another turn's answer: {turn}"
        );
        seen.push(question.rsplit(' ').next().unwrap().parse().unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..50).collect::<Vec<_>>());

    // Deleted means gone, for reading and for chatting.
    let path = format!("/conversations/{id}");
    assert_eq!(request("DELETE", &service.url(&path), &[], b"").status, 204);
    assert_eq!(service.get(&path).status, 404);
    assert_eq!(request("DELETE", &service.url(&path), &[], b"").status, 404);
    let r = service.chat_with_headers(&json!({"message": "x", "conversation_id": *id}), &[]);
    assert_eq!(r.status, 404);

    // Ids grant access: the logs show only their first 8 digits.
    let full_ids = service
        .stdout_lines()
        .into_iter()
        .filter(|line| line.contains(id.as_str()) || line.contains(new_id.as_str()))
        .collect::<Vec<_>>();
    assert!(full_ids.is_empty(), "{full_ids:?}");
    assert!(
        runtime == Runtime::Spin || service.stdout_lines().iter().any(|l| l.contains(&id[..8])),
        "the logs name conversations by their first 8 digits"
    );

    // The state outlives the process.
    drop(service);
    let again = start(runtime, &store, state.path(), &emulator, &[]);
    assert_eq!(
        transcript(&again, &new_id)["turns"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn ion_host_with_its_embedded_store() {
    conversations_and_cache(Runtime::IonHost, Store::Default);
}

#[test]
fn ion_host_with_redis() {
    let Some(redis) = Redis::start() else { return };
    conversations_and_cache(Runtime::IonHost, Store::Redis(&redis));
}

#[test]
fn spin_with_its_default_store() {
    if runtimes().contains(&Runtime::Spin) {
        conversations_and_cache(Runtime::Spin, Store::Default);
    }
}

#[test]
fn spin_with_redis() {
    if runtimes().contains(&Runtime::Spin) {
        let Some(redis) = Redis::start() else { return };
        conversations_and_cache(Runtime::Spin, Store::Redis(&redis));
    }
}

/// Expiry, the turn limit and the cache switch, which are variables.
#[test]
fn conversations_expire_fill_up_and_the_cache_turns_off() {
    let emulator = start_emulator();
    for runtime in runtimes() {
        let state = TempDir::new();
        let service = start(
            runtime,
            &Store::Default,
            state.path(),
            &emulator,
            &[
                ("SPIN_VARIABLE_CONVERSATION_TTL_SECONDS", "2"),
                ("SPIN_VARIABLE_CONVERSATION_TURN_LIMIT", "2"),
                ("SPIN_VARIABLE_CACHE_TTL_SECONDS", "0"),
            ],
        );
        let first = ok(service.chat_with_headers(&json!({"message": "one"}), &[]));
        let id = first["conversation_id"].as_str().unwrap().to_owned();
        ok(service.chat_with_headers(&json!({"message": "two", "conversation_id": id}), &[]));
        let full =
            service.chat_with_headers(&json!({"message": "three", "conversation_id": id}), &[]);
        assert_eq!(full.status, 422, "{runtime:?}: {}", full.body);
        assert_eq!(full.json()["code"], "conversation_full");

        let again = ok(service.chat_with_headers(&json!({"message": "one"}), &[]));
        assert_eq!(again["metadata"]["cache"], "miss", "the cache is off");

        std::thread::sleep(Duration::from_millis(3100));
        let r = service.get(&format!("/conversations/{id}"));
        assert_eq!(r.status, 404, "{runtime:?}: expired: {}", r.body);
    }
}

/// Gemini's implicit caching is reported on the OpenAI route too.
#[test]
fn implicit_caching_is_reported_on_v1() {
    let emulator = start_emulator();
    let state = TempDir::new();
    let service = start(
        Runtime::IonHost,
        &Store::Default,
        state.path(),
        &emulator,
        &[],
    );
    let body = json!({"model": "ion-auto", "messages": [
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "second"},
    ]});
    let r = request(
        "POST",
        &service.url("/v1/chat/completions"),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    );
    let v = ok(r);
    assert!(
        v["usage"]["prompt_tokens_details"]["cached_tokens"]
            .as_u64()
            .unwrap()
            > 0,
        "{v}"
    );
}

/// Redis goes away and comes back: plain chats keep answering, a named conversation gets a
/// prompt 503, and the service recovers by itself.
#[test]
fn a_redis_outage_is_survived() {
    let _timed = serial::timed();
    let emulator = start_emulator();
    let Some(mut redis) = Redis::start() else {
        return;
    };
    let state = TempDir::new();
    let service = start(
        Runtime::IonHost,
        &Store::Redis(&redis),
        state.path(),
        &emulator,
        &[],
    );
    let first = ok(service.chat_with_headers(&json!({"message": "before the outage"}), &[]));
    let id = first["conversation_id"].as_str().unwrap().to_owned();

    redis.stop();
    let plain = ok(service.chat_with_headers(&json!({"message": "during the outage"}), &[]));
    assert_eq!(plain["conversation_id"], Value::Null);
    assert_eq!(plain["metadata"]["cache"], "miss");
    let started = Instant::now();
    let named = service.chat_with_headers(&json!({"message": "x", "conversation_id": id}), &[]);
    assert_eq!(named.status, 503, "{}", named.body);
    assert_eq!(named.json()["code"], "store_unavailable");
    assert!(named.header("retry-after").is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(service.get(&format!("/conversations/{id}")).status, 503);
    assert!(
        service
            .stdout_lines()
            .iter()
            .any(|l| l.contains("\"store\":\"unavailable\"")),
        "the chat's log line says the store was unavailable"
    );

    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = ok(service.chat_with_headers(&json!({"message": "after the outage"}), &[]));
        if r["conversation_id"].is_string() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the service did not recover: {r}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Records that are not ours (corrupt, foreign) are answered, never a crash.
#[test]
fn corrupt_and_foreign_records_are_answered() {
    let emulator = start_emulator();
    let Some(redis) = Redis::start() else { return };
    let state = TempDir::new();
    let service = start(
        Runtime::IonHost,
        &Store::Redis(&redis),
        state.path(),
        &emulator,
        &[],
    );
    let first = ok(service.chat_with_headers(&json!({"message": "a real one"}), &[]));
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    ok(service.chat_with_headers(
        &json!({"message": "and another", "conversation_id": id}),
        &[],
    ));

    // A garbled turn is skipped; garbled dates make the conversation unknown.
    redis.cli(&["SET", &format!("conv/{id}/t/1"), "\u{1}garbage"]);
    let kept = transcript(&service, &id);
    assert_eq!(kept["turns"].as_array().unwrap().len(), 1, "{kept}");
    redis.cli(&["SET", &format!("conv/{id}"), "[1,2,3]"]);
    assert_eq!(service.get(&format!("/conversations/{id}")).status, 404);
    let r = service.chat_with_headers(&json!({"message": "x", "conversation_id": id}), &[]);
    assert_eq!(r.status, 404, "{}", r.body);

    // A counter that is not a number is a store error for that conversation, not a crash.
    let other =
        ok(service.chat_with_headers(&json!({"message": "a third"}), &[]))["conversation_id"]
            .as_str()
            .unwrap()
            .to_owned();
    redis.cli(&["SET", &format!("conv/{other}/n"), "not a number"]);
    let r = service.get(&format!("/conversations/{other}"));
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(service.get("/health").status, 200);
}

/// SIGTERM while a streamed turn is still arriving: ion-host drains it, the turn is stored
/// before the process exits, and the next process on the same state finds it.
#[test]
fn a_turn_in_flight_at_sigterm_is_stored_before_exit() {
    let emulator = crate::common::Emulator::start_in_background(crate::common::EmulatorConfig {
        chunk_delay: Duration::from_millis(150),
        ..crate::common::EmulatorConfig::default()
    })
    .expect("emulator starts");
    let state = TempDir::new();
    let mut service = start(
        Runtime::IonHost,
        &Store::Default,
        state.path(),
        &emulator,
        &[],
    );
    let first = ok(service.chat_with_headers(&json!({"message": "the first turn"}), &[]));
    let id = first["conversation_id"].as_str().unwrap().to_owned();

    let base_url = service.base_url.clone();
    let body = json!({"message": "answered while shutting down", "conversation_id": id});
    let streaming = std::thread::spawn(move || {
        let mut stream = stream_chat(&base_url, &body);
        assert_eq!(stream.status, 200);
        stream.rest()
    });
    crate::common::wait_for_upstream_requests(&emulator, 2);
    service.terminate();
    let streamed = streaming.join().unwrap();
    assert_eq!(streamed.last().unwrap().name, "done", "{streamed:?}");
    assert!(
        service.wait_exit(Duration::from_secs(30)).is_some(),
        "ion-host exited"
    );

    let again = start(
        Runtime::IonHost,
        &Store::Default,
        state.path(),
        &emulator,
        &[],
    );
    let kept = transcript(&again, &id);
    let turns = kept["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{kept}");
    assert_eq!(turns[1]["question"], "answered while shutting down");
}

/// What a client has been told is stored survives ion-host being killed (SIGKILL) the moment
/// the answer arrives: a unary first turn, a streamed turn after it, and a conversation started
/// by a stream. The embedded store puts a request's writes on disk before its answer (or the
/// stream's next event) leaves; the next process on the same state finds every turn.
#[test]
fn answered_turns_survive_sigkill() {
    let emulator = start_emulator();
    let state = TempDir::new();
    let start_host = || {
        start(
            Runtime::IonHost,
            &Store::Default,
            state.path(),
            &emulator,
            &[],
        )
    };

    let service = start_host();
    let first = ok(service.chat_with_headers(&json!({"message": "kept through a crash"}), &[]));
    let id = first["conversation_id"].as_str().unwrap().to_owned();
    // Dropping a service kills it with SIGKILL: no shutdown, no final commit.
    drop(service);

    let service = start_host();
    assert_eq!(
        transcript(&service, &id)["turns"].as_array().unwrap().len(),
        1
    );
    let streamed = stream_events(
        &service,
        &json!({"message": "streamed before a crash", "conversation_id": id}),
    );
    assert_eq!(streamed.last().unwrap().name, "done", "{streamed:?}");
    let started = stream_events(&service, &json!({"message": "a stream starts this one"}));
    assert_eq!(started.last().unwrap().name, "done", "{started:?}");
    let new_id = started[0].data["conversation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(service);

    let service = start_host();
    let kept = transcript(&service, &id);
    let turns = kept["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{kept}");
    assert_eq!(turns[1]["question"], "streamed before a crash");
    let kept = transcript(&service, &new_id);
    assert_eq!(
        kept["turns"][0]["question"], "a stream starts this one",
        "{kept}"
    );
}
