//! The host API plans are written against, one file per domain, all registered into
//! one module that every sandboxed engine shares.

pub(crate) mod actions;
mod failover;
mod hooks;
mod inventory;
mod network;
pub(crate) mod plan;
mod replication;
mod waits;

use rhai::{Module, Shared};

/// The whole host API, built once (see `sandbox::PACKAGES`).
pub(crate) fn host_module() -> Shared<Module> {
    let mut module = Module::new();
    plan::register(&mut module);
    inventory::register(&mut module);
    actions::register(&mut module);
    hooks::register(&mut module);
    failover::register(&mut module);
    network::register(&mut module);
    replication::register(&mut module);
    waits::register(&mut module);
    module.build_index();
    module.into()
}
