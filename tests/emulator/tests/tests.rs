//! The emulator's tests, one binary: each module is one area, `common` the HTTP client and
//! request helpers they share.

mod common;

mod api;
mod cli;
mod faults;
mod retries;
mod server;
mod streaming;
mod structured;
mod thinking;
mod tools;
