//! The integration tests, as one test binary (cargo finds `tests/integration/main.rs` and
//! names the binary `integration`): one link instead of one per file, and helpers that
//! are compiled once, so an unused helper is a warning rather than something each file's
//! copy must allow. `cargo test --test integration cli_runs::` runs one module's tests.
//!
//! - `util`: the `Workdir` and `Drplan` builders that run the real `drplan` binary.
//! - `bind`: a real BIND 9 on loopback for the DNS tests (the DNS benchmark uses it too).
//! - `realvm`: libvirt sites with real QEMU guests in a network namespace of their own,
//!   for the libvirt fabric's tests (root only; `scripts/install-realvm.sh`).
//! - one module per subject; insta names their snapshots `integration__MODULE__NAME`, in
//!   `snapshots/` beside them.
//!
//! A new test file goes in this folder, with a `mod` line below and `use crate::util::…`
//! (and `use crate::bind::…`) for its helpers.

mod bind;
mod util;

mod cli_check;
mod cli_cycle;
mod cli_diagnostics;
mod cli_dry_run;
mod cli_fabric;
mod cli_plans;
mod cli_preflight;
mod cli_resume;
mod cli_robustness;
mod cli_runs;
mod cli_scale;
mod cli_seeds;
mod cli_site_file;
mod crash;
mod dns_bind;
mod dns_readiness;
mod dns_runs;
mod readme;
mod realvm;
