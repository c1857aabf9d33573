//! Durable state: the state directory (one drplan command at a time), the SQLite
//! database that holds the simulated datacenter's state between commands, and the
//! bounded reading of the text files commands start from.

pub mod journal;
mod sim_store;
mod state_dir;
pub mod text_file;

pub use sim_store::{CallRecord, SimBatch, SimStore};
pub use state_dir::StateDir;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "state directory {dir} is in use by another drplan command{holder}; wait for it to finish, or pass another --state"
    )]
    InUse { dir: PathBuf, holder: String },
    #[error("cannot use state directory {dir}: {source}")]
    Io { dir: PathBuf, source: std::io::Error },
    #[error("state database {path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error(
        "state database {path} was written by a newer drplan (schema {found}, this one knows {known}); upgrade drplan"
    )]
    NewerSchema { path: PathBuf, found: i64, known: i64 },
    #[error("state database {path} holds a record this drplan cannot read ({what}): {message}")]
    BadRecord { path: PathBuf, what: String, message: String },
}
