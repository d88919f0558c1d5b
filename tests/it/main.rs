//! The integration tests: one binary, real PostgreSQL and ClickHouse servers started by
//! `scripts/services`. Each test has its own schema and database.

mod adopt;
mod blackbox;
mod cli;
mod cluster;
mod delivery;
mod deploy;
mod fanout;
mod faults;
mod harness;
mod observe;
mod poison;
mod scale;
mod security;
mod sentry;
mod wakeup;
