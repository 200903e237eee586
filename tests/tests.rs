//! The end-to-end tests, one binary: each module is one area of the service, and `common` is the
//! harness they share (the emulator, the service under ion-host or `spin up`, HTTP and streams).

mod common;

mod access;
mod api_contract;
mod browser;
mod chat;
mod container;
mod deploy_workflows;
mod docs;
mod endpoints;
mod host;
mod host_ops;
mod hostile;
mod monitoring;
mod rate_limit;
mod reuse;
mod state;
mod telemetry;
mod upstream;
mod validation;
