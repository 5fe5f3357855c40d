//! Test infrastructure shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod agent;
pub mod cli;
pub mod kafka;
pub mod responder;
pub mod stack;
