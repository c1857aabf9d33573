//! What operators say to a live run from any shell, through the journal: approvals of
//! manual steps (R21), or Enter on the run's own terminal, and cancel requests (R35).
//! A person's time is real time: a manual step's timeout is wall-clock time, and the
//! time a person took is the time the step took in the run's timeline.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Approval, ManualGate, Stop};
use crate::model::HumanDuration;
use crate::plan::Manual;
use crate::store::StoreError;
use crate::store::journal::{self, JournalDb};

/// How often a run looks in the journal for approvals and cancel requests.
pub const POLL: Duration = Duration::from_millis(200);

/// R21: waits for `drplan approve` from any shell, or Enter on the run's own terminal.
pub struct JournalGate {
    db: Mutex<JournalDb>,
    /// Enter presses on the run's terminal, when it has one.
    enter: Option<Mutex<std::sync::mpsc::Receiver<()>>>,
}

impl JournalGate {
    pub fn open(state: &std::path::Path) -> Result<JournalGate, StoreError> {
        let db = journal::open(state)?;
        // One reader for the whole run, so steps never compete for stdin.
        let enter = std::io::stdin().is_terminal().then(|| {
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let mut line = String::new();
                while std::io::stdin().read_line(&mut line).is_ok_and(|n| n > 0) {
                    if tx.send(()).is_err() {
                        return;
                    }
                    line.clear();
                }
            });
            Mutex::new(rx)
        });
        Ok(JournalGate { db: Mutex::new(db), enter })
    }

    fn pressed_enter(&self) -> bool {
        self.enter.as_ref().is_some_and(|rx| rx.lock().expect("stdin lock").try_recv().is_ok())
    }
}

#[async_trait]
impl ManualGate for JournalGate {
    async fn wait(&self, run_id: &str, key: &str, manual: &Manual) -> Result<Approval, String> {
        // Enter pressed before the step began does not count for it.
        while self.pressed_enter() {}
        let how = if self.enter.is_some() { "press Enter once it is done, or " } else { "" };
        eprintln!("manual step: {} — {how}approve from any shell with: drplan approve {run_id}", manual.text);
        let started = tokio::time::Instant::now();
        loop {
            if self.pressed_enter() {
                let now = chrono::Utc::now().to_rfc3339();
                self.db.lock().expect("journal lock").approve(run_id, key, &now).map_err(|e| e.to_string())?;
            }
            if self.db.lock().expect("journal lock").approved(run_id, key).map_err(|e| e.to_string())? {
                return Ok(Approval { took: started.elapsed(), how: Some("approved by an operator".into()) });
            }
            if started.elapsed() >= manual.timeout {
                return Err(format!(
                    "manual step {:?} was not approved within {}",
                    manual.text,
                    HumanDuration(manual.timeout)
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Approves every manual step at once, as taking its estimate, and journals that it did:
/// `--approve-manual`, for rehearsals in CI. The run then has the dry run's timeline.
pub struct RehearsalGate {
    db: Mutex<JournalDb>,
}

impl RehearsalGate {
    pub fn open(state: &std::path::Path) -> Result<RehearsalGate, StoreError> {
        Ok(RehearsalGate { db: Mutex::new(journal::open(state)?) })
    }
}

#[async_trait]
impl ManualGate for RehearsalGate {
    async fn wait(&self, run_id: &str, key: &str, manual: &Manual) -> Result<Approval, String> {
        let now = chrono::Utc::now().to_rfc3339();
        self.db.lock().expect("journal lock").approve(run_id, key, &now).map_err(|e| e.to_string())?;
        Ok(Approval { took: manual.estimate, how: Some("approved automatically (--approve-manual)".into()) })
    }
}

/// R35: stops the run when an operator asks for it with `drplan cancel` from any shell.
/// Runs until the run ends (abort the task) or the request comes.
pub async fn watch_for_cancel(state: PathBuf, run_id: String, stop: Arc<Stop>) {
    let Ok(db) = journal::open(&state) else { return };
    loop {
        tokio::time::sleep(POLL).await;
        if db.cancel_requested(&run_id).unwrap_or(false) {
            stop.cancel("cancelled by the operator (drplan cancel)");
            return;
        }
    }
}
