//! Who gets served: checks on a request's head, the memory budget for request bodies, and the
//! instance slots. A slot is only taken once the body has been read, so slow uploaders hold
//! memory from the budget, never a slot: they cannot starve `/health` or other requests.

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use super::errors::HostError;
use crate::ratelimit::ClientLimits;

/// Admission state shared by all connections.
pub struct Admission {
    /// One permit per request running in a component instance.
    slots: Semaphore,
    /// One permit per byte of request body being read or held by a request.
    body_bytes: Arc<Semaphore>,
    /// Who the client is (behind Cloud Run's proxy) and its rate limit.
    pub clients: ClientLimits,
}

/// Body memory reserved for one request; returned when dropped.
pub struct BodyReservation {
    permits: Option<OwnedSemaphorePermit>,
    budget: Arc<Semaphore>,
}

impl Admission {
    pub fn new(max_concurrent: usize, body_budget: usize, clients: ClientLimits) -> Admission {
        Admission {
            slots: Semaphore::new(max_concurrent),
            body_bytes: Arc::new(Semaphore::new(body_budget)),
            clients,
        }
    }

    /// Checks that need only the head and the client, before any body is read and before a
    /// slot is taken: the per-client rate limit.
    pub fn check_head(&self, head: &http::request::Parts, client: IpAddr) -> Result<(), HostError> {
        self.clients
            .check(head.uri.path(), client)
            .map_err(HostError::RateLimited)
    }

    /// An empty reservation, grown with [`BodyReservation::grow`] as the body arrives.
    pub fn body_reservation(&self) -> BodyReservation {
        BodyReservation {
            permits: None,
            budget: self.body_bytes.clone(),
        }
    }

    /// Instance slots not taken.
    pub fn free_instance_slots(&self) -> usize {
        self.slots.available_permits()
    }

    /// A component instance for one request; beyond `max_concurrent`, 503.
    pub fn instance_slot(&self) -> Result<SemaphorePermit<'_>, HostError> {
        self.slots.try_acquire().map_err(|_| HostError::Overloaded)
    }
}

impl BodyReservation {
    /// Reserves `bytes` more; when the budget is spent, 503 (the request is shed, not queued).
    pub fn grow(&mut self, bytes: usize) -> Result<(), HostError> {
        if bytes == 0 {
            return Ok(());
        }
        let n = u32::try_from(bytes).map_err(|_| HostError::Overloaded)?;
        let more = self
            .budget
            .clone()
            .try_acquire_many_owned(n)
            .map_err(|_| HostError::Overloaded)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn no_limits() -> ClientLimits {
        ClientLimits::new(&crate::ratelimit::ClientOptions {
            rate_limit_per_minute: None,
            trusted_proxy_hops: 0,
        })
    }

    #[test]
    fn the_body_budget_is_shared_and_given_back() {
        let admission = Admission::new(1, 100, no_limits());
        let mut first = admission.body_reservation();
        first.grow(60).unwrap();
        first.grow(30).unwrap();
        assert_eq!(first.bytes(), 90);
        let mut second = admission.body_reservation();
        assert_eq!(second.grow(20), Err(HostError::Overloaded));
        drop(first);
        second.grow(20).unwrap();
    }

    #[test]
    fn slots_are_limited() {
        let admission = Admission::new(1, 0, no_limits());
        let slot = admission.instance_slot().unwrap();
        assert!(admission.instance_slot().is_err());
        drop(slot);
        assert!(admission.instance_slot().is_ok());
    }
}
