//! drplan: disaster-recovery plans as code.
//!
//! Layers, each a module, each using only those listed before it (see DESIGN.md):
//! `model` (data and pure rules), `store` (durable state), `fabric` (the primitives a
//! plan calls, and the simulated datacenter), `cli` (the command line).

pub mod cli;
pub mod engine;
pub mod fabric;
pub mod model;
pub mod plan;
pub mod report;
pub mod script;
pub mod store;
