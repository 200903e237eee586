//! The token cache: hands out the cached token while it is fresh, and runs at most one refresh
//! at a time (single flight), shared by every caller that needs its result.
//!
//! A refresh runs as its own task and publishes its outcome on a `watch` channel, so a caller
//! that gives up (a client disconnect drops its future) neither cancels the refresh nor leaves
//! the other waiters hanging. With between `min_remaining` and `refresh_margin` of life left,
//! the cached token is still handed out while a refresh runs in the background; below
//! `min_remaining` (or with no token) callers wait for the refresh.

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Result, anyhow};
use tokio::sync::watch;
use tokio::time::Instant;

use super::Tuning;
use super::adc::Source;
use super::oauth::AccessToken;
use crate::http_client::HttpClient;
use crate::logging::{self, RequestContext, Severity};

/// What a refresh ends with; the error is shared by all its waiters, so it is kept as text.
type Outcome = Result<AccessToken, String>;

/// A cached token and the refresh, if any, under way.
pub(super) struct TokenCache {
    shared: Arc<Shared>,
}

struct Shared {
    source: Source,
    client: HttpClient,
    tuning: Tuning,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    current: Option<AccessToken>,
    /// The refresh under way: its outcome appears here once.
    refresh: Option<watch::Receiver<Option<Outcome>>>,
    /// No background refresh before this, after one failed.
    background_after: Option<Instant>,
}

impl TokenCache {
    pub(super) fn new(source: Source, client: HttpClient, tuning: Tuning) -> TokenCache {
        TokenCache {
            shared: Arc::new(Shared {
                source,
                client,
                tuning,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// A usable token: the cached one, or the outcome of the refresh under way or started now.
    /// A refresh started for `request` logs its failure as part of it.
    pub(super) async fn token(&self, request: Option<&Arc<RequestContext>>) -> Result<String> {
        let mut refresh = {
            let mut state = self.shared.lock();
            let now = Instant::now();
            let tuning = &self.shared.tuning;
            if let Some(current) = &state.current {
                let remaining = current.expires_at.saturating_duration_since(now);
                if remaining > tuning.refresh_margin {
                    return Ok(current.value.clone());
                }
                if remaining > tuning.min_remaining {
                    let value = current.value.clone();
                    let backing_off = state.background_after.is_some_and(|t| now < t);
                    if !backing_off {
                        self.refresh(&mut state, request);
                    }
                    return Ok(value);
                }
            }
            self.refresh(&mut state, request)
        };
        let outcome = refresh
            .wait_for(Option::is_some)
            .await
            .map_err(|_| anyhow!("the token refresh was abandoned"))?;
        match outcome.as_ref().expect("waited for an outcome") {
            Ok(token) => Ok(token.value.clone()),
            Err(message) => Err(anyhow!("{message}")),
        }
    }

    /// Forgets `token` if it is the cached one.
    pub(super) fn invalidate(&self, token: &str) {
        let mut state = self.shared.lock();
        if state.current.as_ref().is_some_and(|c| c.value == token) {
            state.current = None;
        }
    }

    /// The refresh under way, or a new one started for `request`.
    fn refresh(
        &self,
        state: &mut State,
        request: Option<&Arc<RequestContext>>,
    ) -> watch::Receiver<Option<Outcome>> {
        if let Some(refresh) = &state.refresh {
            // A closed channel with no outcome means the refresh task died: start another.
            if refresh.has_changed().is_ok() {
                return refresh.clone();
            }
        }
        let (sender, receiver) = watch::channel(None);
        state.refresh = Some(receiver.clone());
        let shared = self.shared.clone();
        let request = request.cloned();
        tokio::spawn(async move {
            let outcome = shared
                .source
                .fetch(&shared.client, shared.tuning.request_timeout)
                .await
                .map_err(|e| format!("{e:#}"));
            shared.finish(&outcome, request.as_deref());
            let _ = sender.send(Some(outcome));
        });
        receiver
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement, so a panic elsewhere cannot corrupt it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a refresh's outcome before its waiters see it.
    fn finish(&self, outcome: &Outcome, request: Option<&RequestContext>) {
        let mut state = self.lock();
        state.refresh = None;
        match outcome {
            Ok(token) => {
                state.current = Some(token.clone());
                state.background_after = None;
            }
            Err(message) => {
                let now = Instant::now();
                state.background_after = Some(now + self.tuning.background_retry);
                // Nobody waits on a background refresh: its failure is only logged here.
                let still_usable = state.current.as_ref().is_some_and(|c| {
                    c.expires_at.saturating_duration_since(now) > self.tuning.min_remaining
                });
                if still_usable {
                    logging::write_for(
                        request,
                        Severity::Warning,
                        &format!(
                            "background token refresh failed, the current token stays in use: \
                             {message}"
                        ),
                    );
                }
            }
        }
    }
}
