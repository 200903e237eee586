//! Instances whose last request ended well, waiting for the next one. Reusing one skips
//! instantiation and, above all, the page faults of a fresh instance's memory, stack and
//! tables (a pool slot is faulted in for each new instance and handed back to the kernel when
//! the instance is dropped).
//!
//! The most recently used instance is taken first (its pages are the warmest). Instances left
//! unused for a while are dropped, and once a burst is over all of them but the `keep_idle`
//! newest (none by default), so that memory comes back after a burst.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::instance::{self, GuestInstance};
use crate::logging::{self, RequestContext, Severity};

/// When a finished instance is kept, and for how long.
#[derive(Debug, Clone, Copy)]
pub struct ReusePolicy {
    /// Requests one instance serves before it is dropped; 1 turns reuse off.
    pub max_requests: u32,
    /// Idle instances kept at most; more are dropped as their requests end.
    pub max_idle: usize,
    /// Idle instances kept however long they wait (the most recently used ones), so that a
    /// request after a quiet spell finds one ready.
    pub keep_idle: usize,
    /// How long any other idle instance may wait before it is dropped.
    pub idle_timeout: Duration,
    /// An instance whose linear memory grew past this is dropped after its request: one
    /// large request must not keep its memory resident for the ones after it.
    pub max_memory_bytes: usize,
}

impl Default for ReusePolicy {
    fn default() -> ReusePolicy {
        ReusePolicy {
            max_requests: 128,
            max_idle: 32,
            // None: each kept instance holds ~0.8 MiB (its memory, stack and tables) for as long
            // as the server is quiet (about 2 MiB of RSS in A/B runs 10 s after a burst), while
            // the one request after a quiet spell that finds none pays 0.1–0.2 ms of CPU to instantiate one.
            keep_idle: 0,
            idle_timeout: Duration::from_secs(1),
            max_memory_bytes: 8 * 1024 * 1024,
        }
    }
}

struct Idle {
    instance: GuestInstance,
    since: Instant,
}

pub struct IdleInstances {
    /// Oldest first.
    stack: Mutex<Vec<Idle>>,
    policy: ReusePolicy,
    /// What an idle instance's output and outbound hooks point at: no request.
    no_request: Arc<RequestContext>,
}

impl IdleInstances {
    pub fn new(policy: ReusePolicy) -> IdleInstances {
        IdleInstances {
            // Grows as instances come back: `max_idle` may be any number a flag says, and the
            // instances alive never outnumber the request slots anyway.
            stack: Mutex::new(Vec::new()),
            policy,
            no_request: Arc::new(RequestContext {
                request_id: "idle".into(),
                trace: None,
                telemetry: None,
            }),
        }
    }

    /// The most recently used idle instance, if any.
    pub fn take(&self) -> Option<GuestInstance> {
        self.lock().pop().map(|idle| idle.instance)
    }

    /// Takes back an instance whose request ended well (its handler returned); it waits for
    /// the next request if it may be reused and there is room, and is dropped otherwise.
    pub fn put(&self, mut instance: GuestInstance) {
        instance.finish(self.no_request.clone());
        let policy = &self.policy;
        if !instance::reusable(&instance, policy.max_requests, policy.max_memory_bytes) {
            if logging::enabled(Severity::Debug) {
                logging::write(
                    Severity::Debug,
                    &format!(
                        "instance retired after {} requests (memory {} KiB)",
                        instance.requests(),
                        instance.memory_bytes() / 1024
                    ),
                    Default::default(),
                );
            }
            return;
        }
        let mut stack = self.lock();
        if stack.len() < policy.max_idle {
            stack.push(Idle {
                instance,
                since: Instant::now(),
            });
            return;
        }
        drop(stack);
        // Dropped here, outside the lock: freeing a slot can take a while.
        drop(instance);
    }

    /// Drops the instances that have waited longer than `idle_timeout` (all of them when
    /// `burst_over`: the load they were kept for is gone), except the `keep_idle` most
    /// recently used; returns how many. Cheap: called at every epoch tick.
    pub fn trim(&self, now: Instant, burst_over: bool) -> usize {
        let max_wait = if burst_over {
            Duration::ZERO
        } else {
            self.policy.idle_timeout
        };
        let expired: Vec<Idle> = {
            let mut stack = self.lock();
            let since = stack.iter().map(|idle| idle.since);
            let n = expired_count(since, self.policy.keep_idle, max_wait, now);
            stack.drain(..n).collect()
        };
        // Dropped here, outside the lock.
        expired.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.stack.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How many of the idle instances, oldest first (`since`: when each began to wait, in the
/// stack's order), have waited `max_wait` or longer and are not among the `keep` newest.
fn expired_count(
    since: impl ExactSizeIterator<Item = Instant>,
    keep: usize,
    max_wait: Duration,
    now: Instant,
) -> usize {
    let may_expire = since.len().saturating_sub(keep);
    since
        .take(may_expire)
        .take_while(|since| now.duration_since(*since) >= max_wait)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_are_kept_and_the_rest_expire_by_age() {
        let now = Instant::now() + Duration::from_secs(10);
        let waited = |ms: u64| now - Duration::from_millis(ms);
        let second = Duration::from_secs(1);
        // Oldest first: 3 s, 2 s, 0.5 s, 0.2 s.
        let stack = [waited(3000), waited(2000), waited(500), waited(200)];
        assert_eq!(expired_count(stack.into_iter(), 0, second, now), 2);
        assert_eq!(expired_count(stack.into_iter(), 2, second, now), 2);
        assert_eq!(expired_count(stack.into_iter(), 3, second, now), 1);
        assert_eq!(expired_count(stack.into_iter(), 4, second, now), 0);
        assert_eq!(expired_count(stack.into_iter(), 9, second, now), 0);
        // A burst is over: everything but the kept ones goes.
        assert_eq!(expired_count(stack.into_iter(), 2, Duration::ZERO, now), 2);
        assert_eq!(expired_count(stack.into_iter(), 0, Duration::ZERO, now), 4);
        assert_eq!(expired_count([].into_iter(), 2, Duration::ZERO, now), 0);
    }
}
