//! Test doubles of Google's token endpoint, metadata server, Security Token Service and IAM
//! Credentials API, and of an identity provider's subject-token URL: a real HTTP server on
//! 127.0.0.1 that checks requests as Google does (RS256 signature and claims of JWT
//! assertions, refresh-token form fields, the `Metadata-Flavor` header, token-exchange fields,
//! the federated token on impersonation), counts them, and can delay, refuse or never answer.
//! Metadata-server detection (`GET /`) is answered at once and not counted.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

/// TEST-ONLY RSA key (PKCS#8), see host/tests/fixtures/README.md.
pub const TEST_KEY_PKCS8: &str = include_str!("../../tests/fixtures/test-service-account-key.pem");
/// The same TEST-ONLY key in PKCS#1 form.
pub const TEST_KEY_PKCS1: &str =
    include_str!("../../tests/fixtures/test-service-account-key.pkcs1.pem");
/// Its public key (PKCS#1 `RSA PUBLIC KEY`).
const TEST_PUBLIC_KEY: &str = include_str!("../../tests/fixtures/test-service-account-key.pub.pem");

/// What the fake accepts.
pub const SA_EMAIL: &str = "ion-test@test-project.iam.gserviceaccount.com";
pub const CLIENT_ID: &str = "123-test.apps.googleusercontent.com";
pub const CLIENT_SECRET: &str = "d-FL95Q19q7MQmFpd7hHD0Ty/+=&x";
pub const REFRESH_TOKEN: &str = "1//0test-refresh+token/=&secret";
pub const PROJECT_ID: &str = "test-project";
/// The workload identity pool provider an external account names.
pub const AUDIENCE: &str =
    "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/gh";
pub const SUBJECT_TOKEN: &str = "eyJ.subject-token.from-the-idp";
pub const SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
/// The header (and value) the subject-token URL requires.
pub const SUBJECT_HEADER: (&str, &str) = ("x-idp-auth", "letmein");

/// How the fake answers requests for tokens (and the project id).
#[derive(Debug, Clone)]
pub enum Reply {
    /// Checks the request and issues a token with this lifetime.
    Token { expires_in: u64 },
    /// Answers `status` with `body`, whatever was asked.
    Error { status: u16, body: &'static str },
    /// Never answers.
    Hang,
    /// Answers 200 at once, then sends its body a byte every 50 ms, forever.
    Trickle,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub metadata_flavor: Option<String>,
    pub authorization: Option<String>,
    pub form: HashMap<String, String>,
    /// The body when it is not a form.
    pub json: Option<serde_json::Value>,
}

type FakeBody = BoxBody<Bytes, Infallible>;

struct State {
    hits: AtomicUsize,
    reply: Mutex<Reply>,
    delay: Mutex<Duration>,
    requests: Mutex<Vec<Recorded>>,
    token_uri: String,
}

/// A running fake; it stops with the test's runtime.
pub struct FakeGoogle {
    addr: SocketAddr,
    state: Arc<State>,
}

impl FakeGoogle {
    /// Starts a fake issuing tokens that live an hour.
    pub async fn start() -> FakeGoogle {
        FakeGoogle::start_on(0).await
    }

    /// Starts a fake on 127.0.0.1:`port` (0: any free port).
    pub async fn start_on(port: u16) -> FakeGoogle {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            hits: AtomicUsize::new(0),
            reply: Mutex::new(Reply::Token { expires_in: 3599 }),
            delay: Mutex::new(Duration::ZERO),
            requests: Mutex::new(Vec::new()),
            token_uri: format!("http://{addr}/token"),
        });
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let state = shared.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeGoogle { addr, state }
    }

    /// `127.0.0.1:port`, as `GCE_METADATA_HOST` would hold it.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// The token endpoint URL.
    pub fn token_uri(&self) -> String {
        self.state.token_uri.clone()
    }

    /// A URL on the fake.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Requests received so far.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    pub fn reply(&self, reply: Reply) {
        *self.state.reply.lock().unwrap() = reply;
    }

    /// Delay before every answer.
    pub fn delay(&self, delay: Duration) {
        *self.state.delay.lock().unwrap() = delay;
    }

    /// Waits until `n` requests have arrived; panics after 5 s.
    pub async fn wait_for_hits(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.hits() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {n} requests, got {}",
                self.hits()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn handle(
    state: &State,
    request: http::Request<hyper::body::Incoming>,
) -> Response<FakeBody> {
    if request.uri().path() == "/" {
        // Metadata-server detection: the real server answers its root with a listing.
        return answer(200, "computeMetadata/\n".into());
    }
    let n = state.hits.fetch_add(1, Ordering::SeqCst) + 1;
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let is_form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v == "application/x-www-form-urlencoded");
    let form: HashMap<String, String> = if is_form {
        form_urlencoded::parse(&body).into_owned().collect()
    } else {
        HashMap::new()
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("?").to_owned())
    };
    let metadata_flavor = header("metadata-flavor");
    let authorization = header("authorization");
    let json = (!is_form)
        .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
        .flatten();
    state.requests.lock().unwrap().push(Recorded {
        method: parts.method.clone(),
        path: parts.uri.path().to_owned(),
        metadata_flavor: metadata_flavor.clone(),
        authorization: authorization.clone(),
        form: form.clone(),
        json: json.clone(),
    });

    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let reply = state.reply.lock().unwrap().clone();
    let expires_in = match reply {
        Reply::Token { expires_in } => expires_in,
        Reply::Error { status, body } => return answer(status, body.to_owned()),
        Reply::Hang => std::future::pending().await,
        Reply::Trickle => return Response::new(Trickle::new().boxed()),
    };

    let path = parts.uri.path();
    if path.starts_with("/computeMetadata/") {
        if metadata_flavor.as_deref() != Some("Google") {
            return answer(403, "Missing required header: \"Metadata-Flavor\"".into());
        }
        return match (parts.method, path) {
            (Method::GET, "/computeMetadata/v1/instance/service-accounts/default/token") => {
                token(&format!("ya29.metadata-{n}"), expires_in)
            }
            (Method::GET, "/computeMetadata/v1/project/project-id") => {
                answer(200, PROJECT_ID.into())
            }
            _ => answer(404, "Not Found".into()),
        };
    }
    if (&parts.method, path) == (&Method::GET, "/subject.json") {
        return if header(SUBJECT_HEADER.0).as_deref() == Some(SUBJECT_HEADER.1) {
            answer(
                200,
                serde_json::json!({ "value": SUBJECT_TOKEN }).to_string(),
            )
        } else {
            answer(401, "missing identity provider credentials".into())
        };
    }
    if (&parts.method, path) == (&Method::POST, "/v1/token") {
        return sts(&form, n, expires_in);
    }
    let impersonation = format!("/v1/projects/-/serviceAccounts/{SA_EMAIL}:generateAccessToken");
    if (&parts.method, path) == (&Method::POST, impersonation.as_str()) {
        return impersonate(authorization.as_deref(), json.as_ref(), n);
    }
    if (&parts.method, path) != (&Method::POST, "/token") {
        return answer(404, "Not Found".into());
    }
    if !is_form {
        return oauth_error(400, "invalid_request", "Expected a form body.");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let assertion = form.get("assertion").map_or("", String::as_str);
            match check_assertion(assertion, &state.token_uri) {
                Ok(()) => token(&format!("ya29.fake-{n}"), expires_in),
                Err(why) => oauth_error(400, "invalid_grant", &why),
            }
        }
        Some("refresh_token") => {
            let field = |name: &str| form.get(name).map_or("", String::as_str);
            if field("client_id") != CLIENT_ID || field("client_secret") != CLIENT_SECRET {
                oauth_error(401, "invalid_client", "The OAuth client was not found.")
            } else if field("refresh_token") != REFRESH_TOKEN {
                oauth_error(400, "invalid_grant", "Bad Request")
            } else {
                token(&format!("ya29.fake-{n}"), expires_in)
            }
        }
        _ => oauth_error(400, "unsupported_grant_type", "Invalid grant_type."),
    }
}

/// Google's Security Token Service: an RFC 8693 exchange of the subject token.
fn sts(form: &HashMap<String, String>, n: usize, expires_in: u64) -> Response<FakeBody> {
    let field = |name: &str| form.get(name).map_or("", String::as_str);
    let checks = [
        (
            field("grant_type") == "urn:ietf:params:oauth:grant-type:token-exchange",
            "unsupported_grant_type",
        ),
        (field("audience") == AUDIENCE, "invalid_target"),
        (
            field("scope") == "https://www.googleapis.com/auth/cloud-platform",
            "invalid_scope",
        ),
        (
            field("requested_token_type") == "urn:ietf:params:oauth:token-type:access_token",
            "invalid_request",
        ),
        (
            field("subject_token_type") == SUBJECT_TOKEN_TYPE,
            "invalid_request",
        ),
        (field("subject_token") == SUBJECT_TOKEN, "invalid_grant"),
    ];
    if let Some((_, error)) = checks.into_iter().find(|(ok, _)| !ok) {
        return oauth_error(400, error, "The token exchange was refused.");
    }
    let body = serde_json::json!({
        "access_token": format!("ya29.sts-{n}"),
        "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
        "token_type": "Bearer",
        "expires_in": expires_in,
    });
    answer(200, body.to_string())
}

/// The IAM Credentials API's generateAccessToken, which takes a federated token.
fn impersonate(
    authorization: Option<&str>,
    body: Option<&serde_json::Value>,
    n: usize,
) -> Response<FakeBody> {
    if !authorization.is_some_and(|a| a.starts_with("Bearer ya29.sts-")) {
        return answer(
            401,
            r#"{"error":{"code":401,"message":"Request had invalid authentication credentials.","status":"UNAUTHENTICATED"}}"#.into(),
        );
    }
    let scoped = body.is_some_and(|b| {
        b["scope"] == serde_json::json!(["https://www.googleapis.com/auth/cloud-platform"])
            && b["lifetime"].as_str().is_some_and(|l| l.ends_with('s'))
    });
    if !scoped {
        return answer(
            400,
            r#"{"error":{"code":400,"status":"INVALID_ARGUMENT"}}"#.into(),
        );
    }
    let body = serde_json::json!({
        "accessToken": format!("ya29.impersonated-{n}"),
        "expireTime": "2099-01-01T00:00:00Z",
    });
    answer(200, body.to_string())
}

/// Checks a JWT assertion as Google's token endpoint does.
fn check_assertion(assertion: &str, token_uri: &str) -> Result<(), String> {
    let claims = verify_jwt(assertion)?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let iat = claims["iat"].as_u64().ok_or("no iat")?;
    let exp = claims["exp"].as_u64().ok_or("no exp")?;
    let checks = [
        (claims["iss"] == SA_EMAIL, "iss is not the service account"),
        (
            claims["scope"] == "https://www.googleapis.com/auth/cloud-platform",
            "scope is not cloud-platform",
        ),
        (claims["aud"] == token_uri, "aud is not the token endpoint"),
        (iat.abs_diff(now) < 60, "iat is not now"),
        (
            exp > iat && exp - iat <= 3600,
            "exp is not within an hour of iat",
        ),
    ];
    match checks.into_iter().find(|(ok, _)| !ok) {
        Some((_, why)) => Err(format!("Invalid JWT: {why}.")),
        None => Ok(()),
    }
}

/// Verifies a JWT's header and RS256 signature with the test public key; its claims.
pub fn verify_jwt(jwt: &str) -> Result<serde_json::Value, String> {
    let [header_part, claims_part, signature_part] = jwt.split('.').collect::<Vec<_>>()[..] else {
        return Err("Invalid JWT: not three parts.".into());
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| "Invalid JWT: bad base64url.".to_owned())
    };
    let header: serde_json::Value =
        serde_json::from_slice(&decode(header_part)?).map_err(|e| e.to_string())?;
    if header != serde_json::json!({"alg": "RS256", "typ": "JWT"}) {
        return Err(format!("Invalid JWT header {header}."));
    }
    let public_key = public_key_der();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public_key)
        .verify(
            format!("{header_part}.{claims_part}").as_bytes(),
            &decode(signature_part)?,
        )
        .map_err(|_| "Invalid JWT Signature.".to_owned())?;
    serde_json::from_slice(&decode(claims_part)?).map_err(|e| e.to_string())
}

fn public_key_der() -> Vec<u8> {
    let body: String = TEST_PUBLIC_KEY
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .collect();
    STANDARD.decode(body).unwrap()
}

fn token(value: &str, expires_in: u64) -> Response<FakeBody> {
    let body = serde_json::json!({
        "access_token": value,
        "expires_in": expires_in,
        "token_type": "Bearer",
    });
    answer(200, body.to_string())
}

fn oauth_error(status: u16, error: &str, description: &str) -> Response<FakeBody> {
    let body = serde_json::json!({"error": error, "error_description": description});
    answer(status, body.to_string())
}

fn answer(status: u16, body: String) -> Response<FakeBody> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("Metadata-Flavor", "Google")
        .body(Full::new(Bytes::from(body)).boxed())
        .unwrap()
}

/// A body that never ends: one space every 50 ms (valid JSON whitespace, never a document).
struct Trickle(Pin<Box<tokio::time::Sleep>>);

impl Trickle {
    fn new() -> Trickle {
        Trickle(Box::pin(tokio::time::sleep(Duration::ZERO)))
    }
}

impl Body for Trickle {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        match self.0.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let next = tokio::time::Instant::now() + Duration::from_millis(50);
                self.0.as_mut().reset(next);
                Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b" ")))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}
