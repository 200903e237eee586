//! Credentials against the fake token endpoint and metadata server, over real HTTP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::adc::AdcEnv;
use super::fake::{self, FakeGoogle, Reply};
use super::metadata::Detection;
use super::*;
use crate::http_client::Timeouts;

fn client() -> HttpClient {
    HttpClient::new(Timeouts::default())
}

fn tuning() -> Tuning {
    Tuning {
        request_timeout: Duration::from_secs(3),
        detection: quick_detection(),
        ..Tuning::default()
    }
}

/// Metadata-server detection that gives up quickly.
fn quick_detection() -> Detection {
    Detection {
        attempts: 2,
        timeout: Duration::from_millis(500),
        pause: Duration::from_millis(50),
    }
}

/// A scratch folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ion-host-credentials-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A service-account key file as the Cloud console issues it.
fn service_account_json(token_uri: &str) -> String {
    serde_json::json!({
        "type": "service_account",
        "project_id": "test-project",
        "private_key_id": "0123456789abcdef",
        "private_key": fake::TEST_KEY_PKCS8,
        "client_email": fake::SA_EMAIL,
        "client_id": "1234567890",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    })
    .to_string()
}

/// An authorized-user file as `gcloud auth application-default login` writes it.
fn authorized_user_json(token_uri: &str) -> String {
    serde_json::json!({
        "type": "authorized_user",
        "client_id": fake::CLIENT_ID,
        "client_secret": fake::CLIENT_SECRET,
        "refresh_token": fake::REFRESH_TOKEN,
        "quota_project_id": "test-project",
        "token_uri": token_uri,
    })
    .to_string()
}

fn env(
    credentials_file: Option<PathBuf>,
    gcloud_dir: Option<&Path>,
    metadata_host: &str,
) -> AdcEnv {
    AdcEnv {
        credentials_file,
        gcloud_dir: gcloud_dir.map(Path::to_path_buf),
        metadata_host: metadata_host.to_owned(),
        quota_project: None,
    }
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// Credentials from the metadata server `fake` (no credentials files).
async fn metadata_credentials(fake: &FakeGoogle, tuning: Tuning) -> Credentials {
    Credentials::discover_in(client(), &env(None, None, &fake.authority()), tuning)
        .await
        .unwrap()
}

/// Credentials from a service-account key file pointing at `fake`.
async fn service_account_credentials(fake: &FakeGoogle, dir: &TempDir) -> Credentials {
    let file = dir.write("sa.json", &service_account_json(&fake.token_uri()));
    Credentials::discover_in(client(), &env(Some(file), None, &closed_port()), tuning())
        .await
        .unwrap()
}

async fn discover(env: &AdcEnv) -> Credentials {
    Credentials::discover_in(client(), env, tuning())
        .await
        .unwrap()
}

async fn discover_error(env: &AdcEnv) -> String {
    let err = Credentials::discover_in(client(), env, tuning())
        .await
        .err()
        .expect("discovery fails");
    format!("{err:#}")
}

fn assert_no_secrets(text: &str) {
    for secret in [fake::CLIENT_SECRET, fake::REFRESH_TOKEN, "MIIE", "ya29."] {
        assert!(!text.contains(secret), "{secret:?} in {text:?}");
    }
}

#[test]
fn credentials_are_shareable_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Credentials>();
}

#[tokio::test]
async fn static_token_is_returned_as_is() {
    let credentials = Credentials::from_static("ya29.static".into());
    assert_eq!(credentials.token().await.unwrap(), "ya29.static");
    credentials.invalidate("ya29.static");
    assert_eq!(credentials.token().await.unwrap(), "ya29.static");
    assert_eq!(credentials.describe(), "static token");
}

#[tokio::test]
async fn service_account_exchanges_a_signed_jwt() {
    let fake = FakeGoogle::start().await;
    let dir = TempDir::new();
    let credentials = service_account_credentials(&fake, &dir).await;
    assert_eq!(fake.hits(), 0, "discovery makes no request");

    assert_eq!(credentials.token().await.unwrap(), "ya29.fake-1");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].method, http::Method::POST);
    assert_eq!(requests[0].path, "/token");
    let form = &requests[0].form;
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:jwt-bearer"
    );
    // The fake already refused anything but a valid assertion; check the claims once more.
    let claims = fake::verify_jwt(&form["assertion"]).unwrap();
    assert_eq!(claims["iss"], fake::SA_EMAIL);
    assert_eq!(claims["aud"], fake.token_uri());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );

    let description = credentials.describe();
    assert!(
        description.starts_with(&format!("service account {}", fake::SA_EMAIL)),
        "{description}"
    );
    assert!(
        description.contains("GOOGLE_APPLICATION_CREDENTIALS="),
        "{description}"
    );
    assert!(description.contains(&fake.token_uri()), "{description}");
}

#[tokio::test]
async fn service_account_refusal_is_a_clear_error() {
    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Error {
        status: 400,
        body: r#"{"error":"invalid_grant","error_description":"Invalid JWT Signature."}"#,
    });
    let dir = TempDir::new();
    let err = service_account_credentials(&fake, &dir)
        .await
        .token()
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains(&fake.token_uri()), "{text}");
    assert!(
        text.contains("400 Bad Request: invalid_grant: Invalid JWT Signature."),
        "{text}"
    );
}

#[tokio::test]
async fn authorized_user_sends_the_refresh_token_grant() {
    let fake = FakeGoogle::start().await;
    let home = TempDir::new();
    let file = home.write(
        "gcloud/application_default_credentials.json",
        &authorized_user_json(&fake.token_uri()),
    );
    let env = env(None, Some(&home.0.join("gcloud")), &closed_port());
    let credentials = discover(&env).await;

    assert_eq!(credentials.token().await.unwrap(), "ya29.fake-1");
    let form = &fake.requests()[0].form;
    assert_eq!(form.len(), 4, "{form:?}");
    assert_eq!(form["grant_type"], "refresh_token");
    assert_eq!(form["client_id"], fake::CLIENT_ID);
    assert_eq!(form["client_secret"], fake::CLIENT_SECRET);
    assert_eq!(form["refresh_token"], fake::REFRESH_TOKEN);

    let description = credentials.describe();
    assert!(
        description.starts_with(&format!(
            "authorized user (gcloud ADC file {}",
            file.display()
        )),
        "{description}"
    );
    assert_no_secrets(&description);
}

#[tokio::test]
async fn authorized_user_refusal_names_the_reason_not_the_secrets() {
    let fake = FakeGoogle::start().await;
    let home = TempDir::new();
    let wrong = authorized_user_json(&fake.token_uri()).replace(fake::REFRESH_TOKEN, "1//revoked");
    home.write("application_default_credentials.json", &wrong);
    let env = env(None, Some(&home.0), &closed_port());
    let credentials = discover(&env).await;

    let text = format!("{:#}", credentials.token().await.unwrap_err());
    assert!(
        text.contains("400 Bad Request: invalid_grant: Bad Request"),
        "{text}"
    );
    assert!(!text.contains("1//revoked"), "{text}");
    assert_no_secrets(&text);
}

#[tokio::test]
async fn metadata_server_token_carries_the_flavor_header() {
    let fake = FakeGoogle::start().await;
    let credentials = metadata_credentials(&fake, tuning()).await;
    assert_eq!(
        credentials.describe(),
        format!("metadata server ({})", fake.authority())
    );

    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    let request = &fake.requests()[0];
    assert_eq!(request.method, http::Method::GET);
    assert_eq!(
        request.path,
        "/computeMetadata/v1/instance/service-accounts/default/token"
    );
    assert_eq!(request.metadata_flavor.as_deref(), Some("Google"));
}

#[tokio::test]
async fn fake_metadata_server_refuses_requests_without_the_header() {
    // The check above can fail: the fake enforces the header as the real server does.
    let fake = FakeGoogle::start().await;
    let uri = format!(
        "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
        fake.authority()
    );
    let request = http::Request::get(uri)
        .body(crate::http_client::empty_body())
        .unwrap();
    let response = client().send(request, Timeouts::default()).await.unwrap();
    assert_eq!(response.status(), http::StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unreachable_metadata_server_says_where_credentials_were_looked_for() {
    let home = TempDir::new();
    let host = closed_port();
    let env = env(None, Some(&home.0), &host);
    let started = Instant::now();
    let text = discover_error(&env).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(text.starts_with("no Google credentials"), "{text}");
    assert!(
        text.contains("GOOGLE_APPLICATION_CREDENTIALS is not set"),
        "{text}"
    );
    assert!(
        text.contains("application_default_credentials.json does not exist"),
        "{text}"
    );
    assert!(text.contains("no metadata server answered"), "{text}");
}

#[tokio::test]
async fn metadata_server_detection_is_retried_while_it_starts() {
    // Nothing listens on the port yet; the server comes up during the attempts.
    let port = closed_port().rsplit(':').next().unwrap().parse().unwrap();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(250)).await;
        FakeGoogle::start_on(port).await
    });
    let patient = Tuning {
        detection: Detection {
            attempts: 6,
            timeout: Duration::from_millis(500),
            pause: Duration::from_millis(100),
        },
        ..tuning()
    };
    let credentials = Credentials::discover_in(
        client(),
        &env(None, None, &format!("127.0.0.1:{port}")),
        patient,
    )
    .await
    .expect("found on a later attempt");
    let fake = late.await.unwrap();
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    assert_eq!(fake.hits(), 1);

    // Something that answers without `Metadata-Flavor: Google` is not a metadata server.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let impostor = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut buf);
            let _ = std::io::Write::write_all(
                &mut stream,
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
            );
        }
    });
    let text = discover_error(&env(None, None, &impostor)).await;
    assert!(text.starts_with("no Google credentials"), "{text}");
}

#[tokio::test]
async fn a_cached_token_is_reused() {
    let fake = FakeGoogle::start().await;
    let credentials = metadata_credentials(&fake, tuning()).await;
    let first = credentials.token().await.unwrap();
    let second = credentials.token().await.unwrap();
    assert_eq!(first, second);
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn a_nearly_expired_token_is_refreshed_before_use() {
    let fake = FakeGoogle::start().await;
    // Less life than `min_remaining` (30 s): unusable, so the next call waits for a new one.
    fake.reply(Reply::Token { expires_in: 20 });
    let credentials = metadata_credentials(&fake, tuning()).await;
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-2");
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn a_token_inside_the_margin_is_refreshed_in_the_background() {
    let fake = FakeGoogle::start().await;
    // Inside the 225 s margin but still usable.
    fake.reply(Reply::Token { expires_in: 120 });
    let credentials = metadata_credentials(&fake, tuning()).await;
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");

    fake.reply(Reply::Token { expires_in: 3599 });
    fake.delay(Duration::from_millis(500));
    let started = Instant::now();
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "did not wait for the refresh"
    );
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    fake.wait_for_hits(2).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-2");
    assert_eq!(fake.hits(), 2, "one background refresh");
}

#[tokio::test]
async fn a_failed_background_refresh_keeps_the_current_token() {
    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Token { expires_in: 120 });
    let credentials = metadata_credentials(&fake, tuning()).await;
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");

    fake.reply(Reply::Error {
        status: 503,
        body: "unavailable",
    });
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    fake.wait_for_hits(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Within `background_retry` of the failure: no new attempt.
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn a_failed_background_refresh_is_logged_as_part_of_the_request_that_started_it() {
    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Token { expires_in: 120 });
    let credentials = metadata_credentials(&fake, tuning()).await;
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");

    let log = crate::logging::Capture::start();
    fake.reply(Reply::Error {
        status: 503,
        body: "unavailable",
    });
    let request = Arc::new(crate::logging::RequestContext {
        request_id: "r-refresh".into(),
        telemetry: None,
        trace: Some(crate::logging::Trace {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: Some("00f067aa0ba902b7".into()),
            sampled: Some(true),
        }),
    });
    assert_eq!(
        credentials.token_for(&request).await.unwrap(),
        "ya29.metadata-1"
    );
    fake.wait_for_hits(2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let warnings = log.matching("background token refresh failed");
    assert_eq!(warnings.len(), 1, "{:?}", log.entries());
    let warning = &warnings[0];
    assert_eq!(warning["severity"], "WARNING");
    assert_eq!(
        warning["logging.googleapis.com/labels"]["request_id"],
        "r-refresh"
    );
    assert!(
        warning["logging.googleapis.com/trace"]
            .as_str()
            .unwrap()
            .ends_with("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(warning["logging.googleapis.com/spanId"], "00f067aa0ba902b7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_one_refresh() {
    let fake = FakeGoogle::start().await;
    fake.delay(Duration::from_millis(300));
    let credentials = Arc::new(metadata_credentials(&fake, tuning()).await);
    let mut callers = JoinSet::new();
    for _ in 0..50 {
        let credentials = credentials.clone();
        callers.spawn(async move { credentials.token().await });
    }
    let tokens = callers.join_all().await;
    assert_eq!(tokens.len(), 50);
    for token in tokens {
        assert_eq!(token.unwrap(), "ya29.metadata-1");
    }
    assert_eq!(fake.hits(), 1);
}

#[tokio::test]
async fn a_caller_that_gives_up_does_not_cancel_the_refresh() {
    let fake = FakeGoogle::start().await;
    fake.delay(Duration::from_millis(300));
    let credentials = Arc::new(metadata_credentials(&fake, tuning()).await);
    let first = {
        let credentials = credentials.clone();
        tokio::spawn(async move { credentials.token().await })
    };
    fake.wait_for_hits(1).await;
    first.abort();
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-1");
    assert_eq!(fake.hits(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_refreshes_once_and_ignores_stale_tokens() {
    let fake = FakeGoogle::start().await;
    let credentials = Arc::new(metadata_credentials(&fake, tuning()).await);
    let first = credentials.token().await.unwrap();

    credentials.invalidate(&first);
    let second = credentials.token().await.unwrap();
    assert_ne!(first, second);
    assert_eq!(fake.hits(), 2);

    // A late 401 for the replaced token changes nothing.
    credentials.invalidate(&first);
    assert_eq!(credentials.token().await.unwrap(), second);
    assert_eq!(fake.hits(), 2);

    // Many 401s for the same token: one refresh.
    fake.delay(Duration::from_millis(100));
    let mut callers = JoinSet::new();
    for _ in 0..20 {
        let credentials = credentials.clone();
        let rejected = second.clone();
        callers.spawn(async move {
            credentials.invalidate(&rejected);
            credentials.token().await
        });
    }
    for token in callers.join_all().await {
        assert_eq!(token.unwrap(), "ya29.metadata-3");
    }
    assert_eq!(fake.hits(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_refresh_fails_every_waiter_and_the_next_call_retries() {
    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Error {
        status: 500,
        body: r#"{"error":"internal_failure","error_description":"Backend error"}"#,
    });
    fake.delay(Duration::from_millis(200));
    let credentials = Arc::new(metadata_credentials(&fake, tuning()).await);
    let started = Instant::now();
    let mut callers = JoinSet::new();
    for _ in 0..20 {
        let credentials = credentials.clone();
        callers.spawn(async move { credentials.token().await });
    }
    for outcome in callers.join_all().await {
        let text = format!("{:#}", outcome.unwrap_err());
        assert!(
            text.contains("500 Internal Server Error: internal_failure: Backend error"),
            "{text}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(fake.hits(), 1);

    fake.reply(Reply::Token { expires_in: 3599 });
    assert_eq!(credentials.token().await.unwrap(), "ya29.metadata-2");
    assert_eq!(fake.hits(), 2);
}

#[tokio::test]
async fn an_endpoint_that_never_answers_fails_within_the_timeout() {
    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Hang);
    let dir = TempDir::new();
    let file = dir.write("sa.json", &service_account_json(&fake.token_uri()));
    let short = Tuning {
        request_timeout: Duration::from_millis(300),
        ..Tuning::default()
    };
    let credentials =
        Credentials::discover_in(client(), &env(Some(file), None, &closed_port()), short)
            .await
            .unwrap();

    let started = Instant::now();
    let text = format!("{:#}", credentials.token().await.unwrap_err());
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    assert!(text.contains(&fake.token_uri()), "{text}");
    assert!(text.contains("no answer within 300ms"), "{text}");

    fake.reply(Reply::Token { expires_in: 3599 });
    assert_eq!(credentials.token().await.unwrap(), "ya29.fake-2");
}

#[tokio::test]
async fn an_answer_that_never_ends_fails_within_the_timeout() {
    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Trickle);
    let short = Tuning {
        request_timeout: Duration::from_millis(300),
        ..Tuning::default()
    };
    let credentials = metadata_credentials(&fake, short).await;
    let started = Instant::now();
    let text = format!("{:#}", credentials.token().await.unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(
        text,
        format!(
            "metadata server at {}: the answer was not complete within 300ms",
            fake.authority()
        )
    );
}

#[tokio::test]
async fn discovery_prefers_the_environment_variable_then_gcloud_then_metadata() {
    let dir = TempDir::new();
    let sa = dir.write(
        "sa.json",
        &service_account_json("https://oauth2.example/token"),
    );
    dir.write(
        "gcloud/application_default_credentials.json",
        &authorized_user_json("https://oauth2.example/token"),
    );
    let gcloud = dir.0.join("gcloud");
    let metadata = FakeGoogle::start().await;
    let host = metadata.authority();

    let both = discover(&env(Some(sa.clone()), Some(&gcloud), &host)).await;
    assert!(
        both.describe().starts_with("service account"),
        "{}",
        both.describe()
    );
    let gcloud_only = discover(&env(None, Some(&gcloud), &host)).await.describe();
    assert!(gcloud_only.starts_with("authorized user"), "{gcloud_only}");
    let neither = discover(&env(None, Some(&dir.0.join("elsewhere")), &host)).await;
    assert_eq!(neither.describe(), format!("metadata server ({host})"));
    let no_home = discover(&env(None, None, &host)).await;
    assert_eq!(no_home.describe(), format!("metadata server ({host})"));
    assert_eq!(metadata.hits(), 0, "detection is not a token request");
}

#[tokio::test]
async fn a_missing_file_named_by_the_variable_is_an_error() {
    let dir = TempDir::new();
    let missing = dir.0.join("nope.json");
    let text = discover_error(&env(Some(missing.clone()), None, "metadata.test")).await;
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("GOOGLE_APPLICATION_CREDENTIALS"), "{text}");
}

#[tokio::test]
async fn a_malformed_file_is_an_error_naming_it() {
    let dir = TempDir::new();
    let file = dir.write("sa.json", "{\"type\": \"service_account\", ");
    let text = discover_error(&env(Some(file.clone()), None, "metadata.test")).await;
    assert!(
        text.starts_with(&format!(
            "credentials file {} is not valid JSON",
            file.display()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_broken_gcloud_file_is_an_error_naming_it() {
    let dir = TempDir::new();
    let file = dir.write("application_default_credentials.json", "not json");
    let text = discover_error(&env(None, Some(&dir.0), "metadata.test")).await;
    assert!(text.contains(&file.display().to_string()), "{text}");

    // Present but unreadable (here: a folder) is an error too, not "absent".
    let dir = TempDir::new();
    std::fs::create_dir(dir.0.join("application_default_credentials.json")).unwrap();
    let text = discover_error(&env(None, Some(&dir.0), "metadata.test")).await;
    assert!(
        text.starts_with("cannot read the gcloud credentials file"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_and_missing_types_are_errors_naming_the_file() {
    let dir = TempDir::new();
    let file = dir.write(
        "wif.json",
        r#"{"type": "impersonated_service_account", "audience": "x"}"#,
    );
    let text = discover_error(&env(Some(file.clone()), None, "metadata.test")).await;
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(
        text.contains("unsupported credentials type \"impersonated_service_account\""),
        "{text}"
    );

    let file = dir.write("untyped.json", r#"{"client_email": "x"}"#);
    let text = discover_error(&env(Some(file.clone()), None, "metadata.test")).await;
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("no \"type\" field"), "{text}");
}

#[tokio::test]
async fn a_bad_key_or_missing_field_is_an_error_naming_the_file_not_the_secret() {
    let dir = TempDir::new();
    let truncated = &fake::TEST_KEY_PKCS8[..400];
    let json = service_account_json("https://oauth2.example/token").replace(
        &serde_json::to_string(fake::TEST_KEY_PKCS8).unwrap(),
        &serde_json::to_string(truncated).unwrap(),
    );
    let file = dir.write("sa.json", &json);
    let text = discover_error(&env(Some(file.clone()), None, "metadata.test")).await;
    assert!(
        text.starts_with(&format!(
            "invalid service account key in credentials file {}: invalid private_key",
            file.display()
        )),
        "{text}"
    );
    assert_no_secrets(&text);

    let file = dir.write(
        "user.json",
        r#"{"type": "authorized_user", "client_id": "x", "client_secret": "y"}"#,
    );
    let text = discover_error(&env(Some(file.clone()), None, "metadata.test")).await;
    assert!(text.contains(&file.display().to_string()), "{text}");
    assert!(text.contains("missing field `refresh_token`"), "{text}");
}

#[tokio::test]
async fn a_bad_token_uri_or_metadata_host_is_an_error() {
    let dir = TempDir::new();
    let file = dir.write("sa.json", &service_account_json("oauth2.example/token"));
    let text = discover_error(&env(Some(file), None, "metadata.test")).await;
    assert!(
        text.contains("token_uri \"oauth2.example/token\" is not an http(s) URL"),
        "{text}"
    );

    let text = discover_error(&env(None, None, "bad host/x")).await;
    assert!(text.contains("GCE_METADATA_HOST"), "{text}");
}

#[tokio::test]
async fn project_id_comes_from_the_metadata_server() {
    let fake = FakeGoogle::start().await;
    let id = metadata::project_id(&client(), &fake.authority(), quick_detection())
        .await
        .unwrap();
    assert_eq!(id.as_deref(), Some(fake::PROJECT_ID));
    let request = &fake.requests()[0];
    assert_eq!(request.path, "/computeMetadata/v1/project/project-id");
    assert_eq!(request.metadata_flavor.as_deref(), Some("Google"));
}

#[tokio::test]
async fn no_metadata_server_means_no_project_id() {
    let started = Instant::now();
    let id = metadata::project_id(&client(), &closed_port(), quick_detection())
        .await
        .unwrap();
    assert_eq!(id, None);

    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Hang);
    let id = metadata::project_id(&client(), &fake.authority(), quick_detection())
        .await
        .unwrap();
    assert_eq!(id, None);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_metadata_server_refusing_the_project_id_is_an_error() {
    let fake = FakeGoogle::start().await;
    fake.reply(Reply::Error {
        status: 404,
        body: "Not Found",
    });
    let err = metadata::project_id(&client(), &fake.authority(), quick_detection())
        .await
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("404 Not Found"), "{text}");
}

/// An external-account file as `gcloud iam workload-identity-pools create-cred-config` writes
/// it, with the fake as STS and `source` as its credential_source.
fn external_account_json(
    fake: &FakeGoogle,
    source: serde_json::Value,
    impersonate: bool,
) -> String {
    let mut json = serde_json::json!({
        "type": "external_account",
        "audience": fake::AUDIENCE,
        "subject_token_type": fake::SUBJECT_TOKEN_TYPE,
        "token_url": fake.url("/v1/token"),
        "credential_source": source,
        "universe_domain": "googleapis.com",
    });
    if impersonate {
        json["service_account_impersonation_url"] = serde_json::json!(fake.url(&format!(
            "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            fake::SA_EMAIL
        )));
        json["service_account_impersonation"] =
            serde_json::json!({ "token_lifetime_seconds": 1800 });
    }
    json.to_string()
}

#[tokio::test]
async fn external_account_exchanges_a_file_sourced_subject_token() {
    let fake = FakeGoogle::start().await;
    let dir = TempDir::new();
    let subject = dir.write("oidc-token", &format!("{}\n", fake::SUBJECT_TOKEN));
    let source = serde_json::json!({ "file": subject, "format": { "type": "text" } });
    let file = dir.write("wif.json", &external_account_json(&fake, source, false));
    let credentials = discover(&env(Some(file), None, &closed_port())).await;
    assert_eq!(fake.hits(), 0, "discovery makes no request");

    assert_eq!(credentials.token().await.unwrap(), "ya29.sts-1");
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/v1/token");
    let form = &requests[0].form;
    assert_eq!(
        form["grant_type"],
        "urn:ietf:params:oauth:grant-type:token-exchange"
    );
    assert_eq!(
        form["subject_token"],
        fake::SUBJECT_TOKEN,
        "read and trimmed"
    );
    assert_eq!(form["audience"], fake::AUDIENCE);
    assert!(!form.contains_key("options"));
    let description = credentials.describe();
    assert!(
        description.starts_with(&format!("external account {}", fake::AUDIENCE)),
        "{description}"
    );

    // The token is cached; the file is read again for the next exchange (providers rotate it).
    assert_eq!(credentials.token().await.unwrap(), "ya29.sts-1");
    std::fs::write(&subject, "rotated-and-wrong").unwrap();
    credentials.invalidate("ya29.sts-1");
    let text = format!("{:#}", credentials.token().await.unwrap_err());
    assert!(text.contains("400 Bad Request: invalid_grant"), "{text}");
    assert!(!text.contains("rotated-and-wrong"), "{text}");
}

#[tokio::test]
async fn external_account_reads_a_url_subject_and_impersonates() {
    let fake = FakeGoogle::start().await;
    let dir = TempDir::new();
    let source = serde_json::json!({
        "url": fake.url("/subject.json"),
        "headers": { fake::SUBJECT_HEADER.0: fake::SUBJECT_HEADER.1 },
        "format": { "type": "json", "subject_token_field_name": "value" },
    });
    let file = dir.write("wif.json", &external_account_json(&fake, source, true));
    let credentials = discover(&env(Some(file), None, &closed_port())).await;
    assert!(
        credentials
            .describe()
            .contains(&format!("as {}", fake::SA_EMAIL)),
        "{}",
        credentials.describe()
    );

    assert_eq!(credentials.token().await.unwrap(), "ya29.impersonated-3");
    let requests = fake.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/subject.json",
            "/v1/token",
            &*format!(
                "/v1/projects/-/serviceAccounts/{}:generateAccessToken",
                fake::SA_EMAIL
            )
        ]
    );
    assert_eq!(requests[1].form["subject_token"], fake::SUBJECT_TOKEN);
    assert_eq!(
        requests[2].authorization.as_deref(),
        Some("Bearer ya29.sts-2")
    );
    assert_eq!(requests[2].json.as_ref().unwrap()["lifetime"], "1800s");
}

#[tokio::test]
async fn external_account_failures_say_which_step_failed() {
    let fake = FakeGoogle::start().await;
    let dir = TempDir::new();

    // The identity provider refuses (no header configured).
    let source = serde_json::json!({
        "url": fake.url("/subject.json"),
        "format": { "type": "json", "subject_token_field_name": "value" },
    });
    let file = dir.write("a.json", &external_account_json(&fake, source, false));
    let text = format!(
        "{:#}",
        discover(&env(Some(file), None, &closed_port()))
            .await
            .token()
            .await
            .unwrap_err()
    );
    assert!(
        text.contains("subject token URL") && text.contains("401"),
        "{text}"
    );

    // A subject file that is not there.
    let missing = dir.0.join("nope");
    let source = serde_json::json!({ "file": missing });
    let file = dir.write("b.json", &external_account_json(&fake, source, false));
    let text = format!(
        "{:#}",
        discover(&env(Some(file), None, &closed_port()))
            .await
            .token()
            .await
            .unwrap_err()
    );
    assert!(
        text.contains(&format!("subject token file {}", missing.display())),
        "{text}"
    );

    // A JSON subject without the named field.
    let subject = dir.write("subject.json", r#"{"other": "x"}"#);
    let source = serde_json::json!({
        "file": subject,
        "format": { "type": "json", "subject_token_field_name": "value" },
    });
    let file = dir.write("c.json", &external_account_json(&fake, source, false));
    let text = format!(
        "{:#}",
        discover(&env(Some(file), None, &closed_port()))
            .await
            .token()
            .await
            .unwrap_err()
    );
    assert!(text.contains("no string field \"value\""), "{text}");
}

#[tokio::test]
async fn unsupported_external_accounts_are_startup_errors() {
    let fake = FakeGoogle::start().await;
    let dir = TempDir::new();
    for (source, expected) in [
        (
            serde_json::json!({ "environment_id": "aws1", "region_url": "http://x" }),
            "AWS",
        ),
        (
            serde_json::json!({ "executable": { "command": "/bin/token" } }),
            "executable",
        ),
        (serde_json::json!({}), "neither file nor url"),
        (
            serde_json::json!({ "file": "/x", "format": { "type": "json" } }),
            "subject_token_field_name",
        ),
        (
            serde_json::json!({ "url": "ftp://x/token" }),
            "not an http(s) URL",
        ),
    ] {
        let file = dir.write("wif.json", &external_account_json(&fake, source, false));
        let text = discover_error(&env(Some(file.clone()), None, "metadata.test")).await;
        assert!(
            text.starts_with(&format!(
                "invalid external account in credentials file {}",
                file.display()
            )),
            "{text}"
        );
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
}

#[tokio::test]
async fn quota_projects_come_from_the_file_or_the_environment() {
    let dir = TempDir::new();
    // authorized_user_json names quota_project_id "test-project".
    let user = dir.write(
        "user.json",
        &authorized_user_json("https://oauth2.example/token"),
    );
    let credentials = discover(&env(Some(user.clone()), None, "metadata.test")).await;
    assert_eq!(credentials.quota_project(), Some("test-project"));
    assert!(
        credentials
            .describe()
            .ends_with("quota project test-project"),
        "{}",
        credentials.describe()
    );

    let mut overridden = env(Some(user), None, "metadata.test");
    overridden.quota_project = Some("billing-project".into());
    assert_eq!(
        discover(&overridden).await.quota_project(),
        Some("billing-project")
    );

    let sa = dir.write(
        "sa.json",
        &service_account_json("https://oauth2.example/token"),
    );
    assert_eq!(
        discover(&env(Some(sa), None, "metadata.test"))
            .await
            .quota_project(),
        None
    );
    assert_eq!(Credentials::from_static("t".into()).quota_project(), None);
}
