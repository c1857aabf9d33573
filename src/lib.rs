//! drplan: disaster-recovery plans as code. A recovery plan is a Rhai script; drplan
//! checks it against a site, dry-runs it on a virtual clock, and runs it, journaled, so a
//! run killed at any point resumes where it stopped.
//!
//! # Layout
//!
//! Each layer may use those listed before it, never those after (DESIGN.md, "Layers"):
//!
//! - `model`: plain data and pure rules: sites, networks, VMs, policies, recovery points,
//!   the site file, diagnostics with their source line. No I/O, no async, no Rhai.
//! - `store`: durable state: the simulated datacenter's state and the run journal (SQLite).
//! - `fabric`: the `Fabric` trait, the primitives a plan calls, and its adapters: the
//!   simulated datacenter, libvirt, DNS (RFC 2136).
//! - `plan`: the plan as data (groups, members, steps, hooks) and its static validation
//!   against an inventory.
//! - `engine`: the event-driven executor: events, scheduling, journal, resume, cancel.
//! - `script`: Rhai: the sandbox, the host API, the stdlib, closures as plan actions.
//! - `report`: run reports as text, JSON and an SVG timeline.
//! - `cli`: the command line: commands, the live progress view, prompts, diagnostics.

pub mod cli;
pub mod engine;
pub mod fabric;
pub mod model;
pub mod plan;
pub mod report;
pub mod script;
pub mod store;
