//! The run journal as the engine's event log: each event goes to the store's group-commit
//! writer, and the engine waits for its ticket before acting on it.

use std::sync::Arc;

use super::{Durable, Event, EventLog};
use crate::store::journal::JournalWriter;

pub struct JournalLog {
    pub writer: Arc<JournalWriter>,
    pub run: String,
}

impl EventLog for JournalLog {
    fn record(&self, event: &Event) -> Durable {
        let ticket = match serde_json::to_string(event) {
            Ok(json) => Ok(self.writer.append(&self.run, event.seq, json)),
            Err(e) => Err(e.to_string()),
        };
        Box::pin(async move { ticket?.await.map_err(|_| "the journal writer stopped".to_string())? })
    }
}
