//! One instance of the component with its store, serving one request at a time: instantiated
//! for its first request, then kept for later ones while each of them ends well (see `idle`).
//!
//! What belongs to a request is switched when the instance takes one and cleared when it is
//! put aside: the request whose log entries the guest's output becomes, whose trace its
//! outbound calls carry, and its deadline. An instance whose request
//! failed (a trap, the deadline, a host error) or was cancelled is never used again.

use std::sync::Arc;

use wasmtime::component::Resource;
use wasmtime::{ResourceLimiter, Store};
use wasmtime_wasi_http::p2::bindings::http::types::{IncomingRequest, ResponseOutparam};
use wasmtime_wasi_http::p2::bindings::{Proxy, ProxyPre};

use super::RequestState;
use crate::kv::Unsynced;
use crate::logging::RequestContext;

/// An instance and its store; `Unstarted` until its first request.
pub struct GuestInstance {
    pub(super) store: Store<RequestState>,
    pub(super) guest: Guest,
    /// Requests begun on this instance.
    pub(super) requests: u32,
}

pub(super) enum Guest {
    Unstarted(ProxyPre<RequestState>),
    Ready(Proxy),
}

impl GuestInstance {
    /// Requests this instance has begun, this one included.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The store, for creating the request's resources before [`GuestInstance::handle`].
    pub fn store_mut(&mut self) -> &mut Store<RequestState> {
        &mut self.store
    }

    /// Runs the component's `wasi:http/incoming-handler` on one request, instantiating the
    /// component first if this is the instance's first request. An error (a trap included)
    /// leaves the instance unusable: drop it.
    pub async fn handle(
        &mut self,
        request: Resource<IncomingRequest>,
        outparam: Resource<ResponseOutparam>,
    ) -> wasmtime::Result<()> {
        let proxy = match &self.guest {
            Guest::Ready(proxy) => proxy,
            Guest::Unstarted(pre) => {
                let proxy = pre.instantiate_async(&mut self.store).await?;
                self.guest = Guest::Ready(proxy);
                let Guest::Ready(proxy) = &self.guest else {
                    unreachable!("just set")
                };
                proxy
            }
        };
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut self.store, request, outparam)
            .await
    }

    /// Makes the instance `served`'s: its output, outbound and store calls, and a deadline of
    /// `deadline_ticks` epochs from now.
    pub(super) fn begin(
        &mut self,
        served: Arc<RequestContext>,
        unsynced: Arc<Unsynced>,
        deadline_ticks: u64,
    ) {
        self.requests = self.requests.saturating_add(1);
        self.switch_to(served, Some(unsynced));
        self.store.set_epoch_deadline(deadline_ticks);
    }

    /// Ends the request: its last unended output line is written as its own, and nothing
    /// of the request (its log context, its trace, its store calls) stays referenced.
    pub(super) fn finish(&mut self, idle: Arc<RequestContext>) {
        self.switch_to(idle, None);
    }

    fn switch_to(&mut self, context: Arc<RequestContext>, unsynced: Option<Arc<Unsynced>>) {
        let state = self.store.data_mut();
        state.stdout.serve(context.clone());
        state.stderr.serve(context.clone());
        state.outbound.served = context;
        state.kv.serve(unsynced);
    }

    /// The largest the instance's linear memory has been.
    pub(super) fn memory_bytes(&self) -> usize {
        self.store.data().limits.largest_memory
    }

    /// Writes any output line the guest left unended.
    pub fn flush_output(&self) {
        let state = self.store.data();
        state.stdout.flush_pending();
        state.stderr.flush_pending();
    }
}

/// Limits of one instance's store, and how large its memory has grown.
pub(super) struct InstanceLimits {
    max_memory_bytes: usize,
    pub(super) largest_memory: usize,
}

impl InstanceLimits {
    pub(super) fn new(max_memory_bytes: usize) -> InstanceLimits {
        InstanceLimits {
            max_memory_bytes,
            largest_memory: 0,
        }
    }
}

/// Instances one component instantiation may create (it has a few core modules).
const MAX_CORE_INSTANCES: usize = 64;

impl ResourceLimiter for InstanceLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Refused growth makes the guest's allocator fail, and the guest traps (it aborts).
        let allowed = desired <= self.max_memory_bytes && maximum.is_none_or(|max| desired <= max);
        if allowed {
            self.largest_memory = self.largest_memory.max(desired);
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(maximum.is_none_or(|max| desired <= max))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }
}

/// Whether a finished instance may serve another request: it has served fewer than
/// `max_requests`, its memory never grew past `max_memory`, and the guest let go of every
/// key-value handle (a handle left open would outlive its request).
pub(super) fn reusable(instance: &GuestInstance, max_requests: u32, max_memory: usize) -> bool {
    instance.requests < max_requests
        && instance.memory_bytes() <= max_memory
        && instance.store.data().kv.open_handles() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_past_the_limit_is_refused_and_the_largest_size_kept() {
        let mut limits = InstanceLimits::new(4 << 20);
        assert!(limits.memory_growing(0, 1 << 20, None).unwrap());
        assert!(limits.memory_growing(1 << 20, 3 << 20, None).unwrap());
        assert!(!limits.memory_growing(3 << 20, 5 << 20, None).unwrap());
        assert!(
            !limits
                .memory_growing(3 << 20, 4 << 20, Some(2 << 20))
                .unwrap()
        );
        assert_eq!(limits.largest_memory, 3 << 20);
    }
}
