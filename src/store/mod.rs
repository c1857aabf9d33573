//! Durable state: the state directory (one drplan command at a time), the SQLite
//! databases that hold the simulated datacenter's state between commands and the run
//! journal, and the bounded reading of the text files commands start from.

pub mod journal;
mod shared_store;
mod sim_store;
mod sqlite;
mod state_dir;
pub mod text_file;

pub use shared_store::SharedStore;
pub use sim_store::{CLI_KEY_PREFIX, CallRecord, SimBatch, SimStore};
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
    #[error(
        "{path}: {detail}; drplan leaves it as it is: restore it from a backup, or move the state directory aside to start afresh"
    )]
    Damaged { path: PathBuf, detail: String },
    #[error("state database {path} holds a record this drplan cannot read ({what}): {message}")]
    BadRecord { path: PathBuf, what: String, message: String },
}
