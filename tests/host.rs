//! ion-host's own behaviour as a process: startup errors, $PORT, HTTP edge cases.

use std::process::Command;

use crate::common::*;

#[test]
fn startup_errors_are_clear_and_exit_non_zero() {
    let err = host_fails(
        &[
            "--component",
            "/nonexistent/x.wasm",
            "--listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    assert!(
        err.contains("/nonexistent/x.wasm") && err.contains("not found"),
        "{err}"
    );

    let err = host_fails(&["--manifest", "/nonexistent/spin.toml"], &[]);
    assert!(err.contains("cannot read manifest"), "{err}");

    let dir = TempDir::new();
    let bad = dir.path().join("spin.toml");
    std::fs::write(
        &bad,
        "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/...\"\ncomponent = \"x\"\n",
    )
    .unwrap();
    let err = host_fails(&["--manifest", bad.to_str().unwrap()], &[]);
    assert!(err.contains("no [component.x] table"), "{err}");

    std::fs::write(&bad, "this is = not [toml").unwrap();
    let err = host_fails(&["--manifest", bad.to_str().unwrap()], &[]);
    assert!(err.contains("invalid manifest"), "{err}");

    let err = host_fails(&[], &[("PORT", "eighty")]);
    assert!(err.contains("PORT=\"eighty\""), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let wasm = component_wasm();
    let err = host_fails(
        &["--listen", &addr, "--component", wasm.to_str().unwrap()],
        &[],
    );
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
}

#[test]
fn required_variables_are_enforced_at_startup() {
    let manifest = std::fs::read_to_string(workspace_root().join("spin.toml")).unwrap();
    let required = manifest.replace(
        r#"project_id = { default = "", "#,
        r#"project_id = { required = true, "#,
    );
    assert_ne!(manifest, required);
    let dir = TempDir::new();
    let path = dir.path().join("spin.toml");
    let wasm = component_wasm();
    std::fs::write(&path, required).unwrap();
    let err = host_fails(
        &[
            "--manifest",
            path.to_str().unwrap(),
            "--component",
            wasm.to_str().unwrap(),
        ],
        &[],
    );
    assert!(err.contains("SPIN_VARIABLE_PROJECT_ID"), "{err}");
}

#[test]
fn listens_on_port_from_the_environment() {
    let port = free_port();
    let mut child = Command::new(host_binary())
        .args(["--component", component_wasm().to_str().unwrap()])
        .env("PORT", port.to_string())
        .current_dir(workspace_root())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/health");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        let probe = std::panic::catch_unwind(|| request("GET", &url, &[], b"").status);
        match probe {
            Ok(status) => break status,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100))
            }
            Err(_) => break 0,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200);
}

#[test]
fn hostile_http_gets_4xx_and_the_server_keeps_serving() {
    let emulator = start_emulator();
    let service = Service::start(Runtime::IonHost, &emulator_env(&emulator));

    let raw = raw_exchange(&service.base_url, b"GARBAGE\r\n\r\n");
    assert!(raw.is_empty() || raw.starts_with("HTTP/1.1 400"), "{raw}");

    // HTTP/1.0 without a Host header still reaches the component.
    let raw = raw_exchange(&service.base_url, b"GET /health HTTP/1.0\r\n\r\n");
    assert!(
        raw.starts_with("HTTP/1.0 200") || raw.starts_with("HTTP/1.1 200"),
        "{raw}"
    );

    let huge_header = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let raw = raw_exchange(&service.base_url, huge_header.as_bytes());
    assert!(
        raw.is_empty() || raw.starts_with("HTTP/1.1 431") || raw.starts_with("HTTP/1.1 400"),
        "{raw}"
    );

    // A client that sends half a body and hangs up does not disturb anyone else.
    let raw = raw_exchange(
        &service.base_url,
        b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"mess",
    );
    assert!(!raw.contains(" 500 "), "{raw}");

    assert_eq!(service.get("/health").status, 200);
    assert_eq!(service.ask("아직 살아 있나요?").status, 200);
}

#[test]
fn concurrent_chats_each_get_their_own_answer() {
    let emulator = start_emulator();
    let service = Service::start(Runtime::IonHost, &emulator_env(&emulator));
    let service = &service;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                scope.spawn(move || {
                    let message = format!("질문 번호 {i} 입니다");
                    let reply = service.ask(&message);
                    assert_eq!(reply.status, 200, "{}", reply.body);
                    let content = reply.json()["content"].as_str().unwrap().to_owned();
                    assert!(
                        content.ends_with(&format!("you said: {message}")),
                        "{content}"
                    );
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
}
