//! The threads scripts run on. Rhai's evaluator is recursive and needs a deeper stack
//! than tokio's blocking threads have, and starting a thread for every action call would
//! cost more than most calls: so script threads are kept and reused. An idle thread
//! waits a while for the next script, then ends. There is no cap on their number: the
//! engine's own parallelism bounds how many actions run at once, and an action blocked
//! in a fabric call must not hold up another.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

/// Native stack of a script thread: 64 call levels overflow the 2 MiB of a default (or
/// tokio blocking) thread in debug builds.
const SCRIPT_STACK_SIZE: usize = 32 * 1024 * 1024;
/// How long an idle thread waits for another script before it ends.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

type Job = Box<dyn FnOnce() + Send>;

/// Idle threads, each with the sender of its job channel.
struct Pool {
    idle: Mutex<Vec<(u64, Sender<Job>)>>,
    next_id: AtomicU64,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| Pool { idle: Mutex::new(Vec::new()), next_id: AtomicU64::new(0) });

impl Pool {
    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<(u64, Sender<Job>)>> {
        self.idle.lock().expect("script thread pool lock")
    }

    fn submit(&'static self, mut job: Job) -> Result<(), String> {
        loop {
            let Some((_, thread)) = self.idle().pop() else { return self.start(job) };
            match thread.send(job) {
                Ok(()) => return Ok(()),
                // That thread has ended: try the next.
                Err(returned) => job = returned.0,
            }
        }
    }

    fn start(&'static self, first: Job) -> Result<(), String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, jobs) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("drplan-script".into())
            .stack_size(SCRIPT_STACK_SIZE)
            .spawn(move || self.serve(id, first, sender, jobs))
            .map(drop)
            .map_err(|e| format!("could not start a thread for the script: {e}"))
    }

    /// A thread's life: run a job, offer itself for the next, end when none comes.
    fn serve(&self, id: u64, first: Job, sender: Sender<Job>, jobs: Receiver<Job>) {
        let mut next = Some(first);
        while let Some(job) = next.take() {
            job();
            self.idle().push((id, sender.clone()));
            next = jobs.recv_timeout(IDLE_TIMEOUT).ok();
            if next.is_none() {
                let mut idle = self.idle();
                match idle.iter().position(|(i, _)| *i == id) {
                    Some(at) => {
                        idle.swap_remove(at);
                    }
                    // Taken from the idle list just now: its job is on the way.
                    None => {
                        drop(idle);
                        next = jobs.recv().ok();
                    }
                }
            }
        }
    }
}

/// Runs `f` on a script thread and waits for it without blocking the runtime.
pub(crate) async fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let (done, result) = tokio::sync::oneshot::channel();
    POOL.submit(Box::new(move || {
        // The receiver is gone if the caller stopped waiting: nobody to tell.
        let _ = done.send(std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|panic| panic_text(&*panic)));
    }))?;
    result.await.map_err(|_| "the script's thread ended before the script did".to_string())?
}

/// Runs `f` on a fresh thread with a script's stack, waiting for it: for work that
/// borrows from the caller (loading a plan), done once per command.
pub(crate) fn run_scoped<R: Send>(f: impl FnOnce() -> R + Send) -> Result<R, String> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("drplan-script".into())
            .stack_size(SCRIPT_STACK_SIZE)
            .spawn_scoped(scope, f)
            .map_err(|e| format!("could not start a thread for the script: {e}"))?;
        thread.join().map_err(|panic| panic_text(&*panic))
    })
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    format!("the script's thread panicked: {text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_thread_is_reused_for_the_next_script() {
        let first = run(|| std::thread::current().id()).await.unwrap();
        let second = run(|| std::thread::current().id()).await.unwrap();
        // Other tests may take the idle thread in between; a third try settles it.
        let third = run(|| std::thread::current().id()).await.unwrap();
        assert!(first == second || second == third, "each script ran on a new thread");
    }

    #[tokio::test]
    async fn a_panicking_script_is_an_error_and_the_pool_goes_on() {
        let error = run(|| panic!("boom")).await.unwrap_err();
        assert!(error.contains("panicked: boom"), "{error}");
        assert_eq!(run(|| 2 + 2).await.unwrap(), 4);
    }

    #[tokio::test]
    async fn scripts_run_at_once_on_as_many_threads_as_they_need() {
        // Four scripts that each wait for all four: they deadlock unless each has a thread.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(4));
        let all = (0..4).map(|_| {
            let barrier = barrier.clone();
            run(move || barrier.wait().is_leader())
        });
        let leaders = futures_util::future::join_all(all).await.into_iter().filter(|r| *r.as_ref().unwrap()).count();
        assert_eq!(leaders, 1);
    }

    #[test]
    fn the_stack_is_deep_enough_for_recursive_scripts() {
        fn depth(n: u32) -> u32 {
            let pad = std::hint::black_box([0u8; 1024]);
            if n == 0 { u32::from(pad[0]) } else { 1 + depth(n - 1) }
        }
        assert_eq!(run_scoped(|| depth(8_000)).unwrap(), 8_000);
    }
}
