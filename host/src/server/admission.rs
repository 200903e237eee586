//! Who gets served: checks on a request's head, the memory budget for request bodies, and the
//! instance slots.
//!
//! - A slot is only taken once the body has been read, so slow uploaders hold memory from the
//!   budget, never a slot; and a body holds budget only for the bytes that have arrived, so a
//!   client that announces a body and sends none holds nothing.
//! - A slot is held until the instance is gone: for a stream, until its last byte. The
//!   instance pools have room for every slot, so they are never what runs out.
//! - `/health` has a few slots of its own for when the others are taken: load cannot fail it.
//! - A refused request is told honestly when to come back (`Retry-After`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::errors::HostError;
use crate::ratelimit::ClientLimits;

/// Slots only `/health` may use once the others are taken.
pub const HEALTH_RESERVE: usize = 4;

/// How long a request waits for a slot when every one is taken, before its 503.
pub const SLOT_GRACE: Duration = Duration::from_millis(100);

/// The path that gets the reserve: Cloud Run's probes call it.
pub const HEALTH_PATH: &str = "/health";

/// Admission state shared by all connections.
pub struct Admission {
    /// One permit per request running in a component instance.
    slots: Arc<Semaphore>,
    /// Slots only `/health` takes, when `slots` has none left.
    health_slots: Arc<Semaphore>,
    /// Who holds the slots, to tell a refused request when one frees.
    holders: Arc<Holders>,
    /// One permit per byte of request body being read or held by a request.
    body_bytes: Arc<Semaphore>,
    /// How long a body being read may hold its share of the budget.
    body_read_timeout: Duration,
    /// Who the client is (behind Cloud Run's proxy), its rate limit and its requests in
    /// progress.
    pub clients: ClientLimits,
}

/// Body memory reserved for one request; returned when dropped.
pub struct BodyReservation {
    permits: Option<OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
    retry_after: u64,
}

/// A component instance's place, held until dropped (after the instance's store).
pub struct InstanceSlot {
    _permit: OwnedSemaphorePermit,
    holders: Arc<Holders>,
    id: u64,
}

impl Drop for InstanceSlot {
    fn drop(&mut self) {
        self.holders.release(self.id);
    }
}

impl Admission {
    pub fn new(
        max_concurrent: usize,
        body_budget: usize,
        body_read_timeout: Duration,
        clients: ClientLimits,
    ) -> Admission {
        Admission {
            slots: Arc::new(Semaphore::new(max_concurrent)),
            health_slots: Arc::new(Semaphore::new(HEALTH_RESERVE)),
            holders: Arc::default(),
            body_bytes: Arc::new(Semaphore::new(body_budget)),
            body_read_timeout,
            clients,
        }
    }

    /// Checks that need only the head and the client, before any body is read and before a
    /// slot is taken: the per-client rate limit.
    pub fn check_head(&self, head: &http::request::Parts, client: IpAddr) -> Result<(), HostError> {
        self.clients
            .check_request(head.uri.path(), client, &head.headers)
            .map_err(HostError::RateLimited)
    }

    /// An empty reservation, grown with [`BodyReservation::grow`] as the body arrives.
    pub fn body_reservation(&self) -> BodyReservation {
        BodyReservation {
            permits: None,
            budget: self.body_bytes.clone(),
            // A body being read gives its share back within the body timeout.
            retry_after: self.body_read_timeout.as_secs_f64().ceil().max(1.0) as u64,
        }
    }

    /// Slots taken, the `/health` reserve included.
    pub fn instances_in_use(&self, max_concurrent: usize) -> usize {
        (max_concurrent - self.slots.available_permits())
            + (HEALTH_RESERVE - self.health_slots.available_permits())
    }

    /// A component instance for one request that must end by `deadline`; beyond
    /// `max_concurrent`, 503 with the time until a slot is expected to free. `/health` falls
    /// back on its reserve.
    ///
    /// A full instance waits [`SLOT_GRACE`] for a slot before it refuses: a client that sends
    /// its next request as soon as it has read the last byte of an answer may arrive while the
    /// instance that wrote it is still finishing (its log line, its store), and should not be
    /// refused for a slot that frees a moment later.
    pub async fn instance_slot(
        &self,
        path: &str,
        deadline: Instant,
    ) -> Result<InstanceSlot, HostError> {
        let mut permit = self.slots.clone().try_acquire_owned().ok();
        if permit.is_none() && path == HEALTH_PATH {
            permit = self.health_slots.clone().try_acquire_owned().ok();
        }
        if permit.is_none() {
            permit = tokio::time::timeout(SLOT_GRACE, self.slots.clone().acquire_owned())
                .await
                .ok()
                .and_then(Result::ok);
        }
        match permit {
            Some(permit) => Ok(InstanceSlot {
                _permit: permit,
                // /health's quick answers say nothing of when the other slots free.
                id: self.holders.hold(deadline, path != HEALTH_PATH),
                holders: self.holders.clone(),
            }),
            None => Err(HostError::Overloaded {
                retry_after: self.holders.retry_after(Instant::now()),
            }),
        }
    }

    /// The wait to tell a client refused for having too many requests of its own in progress.
    pub fn retry_after(&self) -> u64 {
        self.holders.retry_after(Instant::now())
    }
}

impl BodyReservation {
    /// Reserves `bytes` more; when the budget is spent, 503 (the request is shed, not queued).
    pub fn grow(&mut self, bytes: usize) -> Result<(), HostError> {
        if bytes == 0 {
            return Ok(());
        }
        let overloaded = HostError::Overloaded {
            retry_after: self.retry_after,
        };
        let n = u32::try_from(bytes).map_err(|_| overloaded.clone())?;
        let more = self
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| overloaded)?;
        match &mut self.permits {
            Some(permits) => permits.merge(more),
            None => self.permits = Some(more),
        }
        Ok(())
    }

    pub fn bytes(&self) -> usize {
        self.permits.as_ref().map_or(0, |p| p.num_permits())
    }
}

/// The requests holding slots (when each started and must end) and when a slot was last freed.
#[derive(Default)]
struct Holders {
    state: Mutex<HolderState>,
}

#[derive(Default)]
struct HolderState {
    next_id: u64,
    /// Start, deadline, and whether its release counts as a slot freed for requests.
    held: HashMap<u64, (Instant, Instant, bool)>,
    /// When a request (not a health check, which has a reserve of its own) last gave its slot
    /// back.
    last_release: Option<Instant>,
}

impl Holders {
    fn lock(&self) -> std::sync::MutexGuard<'_, HolderState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hold(&self, deadline: Instant, counted: bool) -> u64 {
        let mut state = self.lock();
        let id = state.next_id;
        state.next_id += 1;
        state.held.insert(id, (Instant::now(), deadline, counted));
        id
    }

    fn release(&self, id: u64) {
        let mut state = self.lock();
        if let Some((_, _, true)) = state.held.remove(&id) {
            state.last_release = Some(Instant::now());
        }
    }

    /// Whole seconds until a slot is expected to free (at least 1). The instance is full and
    /// has been for as long as no slot was freed: since the last release, or since the oldest
    /// holder started when that is later. Expect about as long again (short requests free
    /// slots often, so this stays near 1 s; long streams that fill every slot raise it), but
    /// never past the earliest deadline, by which a slot is certain to be free.
    fn retry_after(&self, now: Instant) -> u64 {
        let state = self.lock();
        let Some(oldest) = state.held.values().map(|(start, _, _)| *start).min() else {
            return 1;
        };
        let full_since = state.last_release.map_or(oldest, |r| r.max(oldest));
        let expected = now.saturating_duration_since(full_since);
        let certain = state
            .held
            .values()
            .map(|(_, deadline, _)| deadline.saturating_duration_since(now))
            .min()
            .unwrap_or(expected);
        expected.min(certain).as_secs_f64().ceil().max(1.0) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_limits() -> ClientLimits {
        ClientLimits::new(&crate::ratelimit::ClientOptions {
            rate_limit_per_minute: None,
            trusted_proxy_hops: 0,
            max_requests_per_client: 0,
            ipv6_client_prefix: 64,
        })
    }

    fn admission(slots: usize, budget: usize) -> Admission {
        Admission::new(slots, budget, Duration::from_secs(30), no_limits())
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let admission = admission(1, 100);
        let mut first = admission.body_reservation();
        first.grow(60).unwrap();
        first.grow(30).unwrap();
        assert_eq!(first.bytes(), 90);
        let mut second = admission.body_reservation();
        assert_eq!(
            second.grow(20),
            Err(HostError::Overloaded { retry_after: 30 }),
            "a body being read gives its share back within the body timeout"
        );
        drop(first);
        second.grow(20).unwrap();
    }

    #[tokio::test]
    async fn slots_are_limited_and_health_has_a_reserve() {
        let admission = admission(1, 0);
        let slot = admission.instance_slot("/chat", later()).await.unwrap();
        assert!(matches!(
            admission.instance_slot("/chat", later()).await,
            Err(HostError::Overloaded { .. })
        ));
        let mut health = Vec::new();
        for _ in 0..HEALTH_RESERVE {
            health.push(admission.instance_slot(HEALTH_PATH, later()).await.unwrap());
        }
        assert!(admission.instance_slot(HEALTH_PATH, later()).await.is_err());
        assert_eq!(admission.instances_in_use(1), 1 + HEALTH_RESERVE);
        drop(health);
        drop(slot);
        assert!(admission.instance_slot("/chat", later()).await.is_ok());
    }

    #[tokio::test]
    async fn a_slot_freed_within_the_grace_is_taken_not_refused() {
        let admission = Arc::new(admission(1, 0));
        let slot = admission.instance_slot("/chat", later()).await.unwrap();
        let waiting = {
            let admission = admission.clone();
            tokio::spawn(async move { admission.instance_slot("/chat", later()).await.is_ok() })
        };
        tokio::time::sleep(SLOT_GRACE / 2).await;
        drop(slot);
        assert!(
            waiting.await.unwrap(),
            "the slot freed within the grace was refused"
        );
        // Past the grace, the answer is a 503.
        let _held = admission.instance_slot("/chat", later()).await.unwrap();
        let started = tokio::time::Instant::now();
        assert!(admission.instance_slot("/chat", later()).await.is_err());
        assert!(
            started.elapsed() >= SLOT_GRACE,
            "refused before the grace ran out"
        );
    }

    fn holding_since(holders: &Holders, now: Instant, age_secs: u64, deadline_secs: u64) {
        let id = holders.hold(now + Duration::from_secs(deadline_secs), true);
        holders.lock().held.get_mut(&id).unwrap().0 = now - Duration::from_secs(age_secs);
    }

    #[test]
    fn retry_after_follows_how_long_the_instance_has_been_full() {
        let holders = Holders::default();
        let now = Instant::now();
        assert_eq!(holders.retry_after(now), 1, "nothing held");
        // Nothing has been freed since the oldest holder started 8 s ago: about 8 s more.
        holding_since(&holders, now, 8, 100);
        holding_since(&holders, now, 6, 100);
        assert_eq!(holders.retry_after(now), 8);
        // A slot freed an hour ago says nothing of holders that started since.
        holders.lock().last_release = Some(now - Duration::from_secs(3600));
        assert_eq!(holders.retry_after(now), 8);
        // A slot freed 2 s ago: slots come free about that often.
        holders.lock().last_release = Some(now - Duration::from_secs(2));
        assert_eq!(holders.retry_after(now), 2);
        // Never past the earliest deadline.
        holders.lock().last_release = None;
        holding_since(&holders, now, 1, 3);
        assert_eq!(holders.retry_after(now), 3);
        // Slots freed just now: at once (1 s, the least Retry-After says).
        holders.lock().last_release = Some(now);
        assert_eq!(holders.retry_after(now), 1);
    }

    #[tokio::test]
    async fn health_checks_do_not_count_as_freed_slots() {
        let admission = admission(1, 0);
        drop(admission.instance_slot(HEALTH_PATH, later()).await.unwrap());
        assert_eq!(admission.holders.lock().last_release, None);
        drop(admission.instance_slot("/chat", later()).await.unwrap());
        assert!(admission.holders.lock().last_release.is_some());
    }
}
