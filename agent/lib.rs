//! kafka-autopilot: a policy-driven autoscaling and self-healing agent for Strimzi Kafka.
//!
//! One pass over a cluster is a pipeline, one module per stage:
//! [`collect`] (I/O) -> [`snapshot`] (pure) -> [`policy`] (pure, Rego) -> [`plan`] (pure) ->
//! [`act`] (I/O, the single executor). [`agent`] runs it per cluster on an interval;
//! [`scenario`] runs it on the simulated backend on virtual time.

pub mod act;
pub mod agent;
pub mod alertmanager;
pub mod auth;
pub mod backend;
pub mod backup;
pub mod client;
pub mod collect;
pub mod config;
pub mod daemon;
pub mod events;
#[cfg(test)]
pub(crate) mod fixtures;
pub mod health;
pub mod http;
pub mod leader;
pub mod notify;
pub mod openapi;
pub mod operations;
pub mod plan;
pub mod planner;
pub mod policy;
pub mod rebalance;
pub mod recent;
pub mod scenario;
pub mod snapshot;
pub mod telemetry;
pub mod time;
pub mod tls;
pub mod units;
