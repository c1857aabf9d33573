//! Where scripts run: on tokio's blocking threads, never on the async workers (an
//! action blocks while its fabric calls run), and always with a deep stack. The one
//! exception is a dry run, whose calls never block: its actions run on the engine's
//! thread, given a script's stack ([`on_script_stack`]).
//!
//! Rhai's evaluator is recursive: 64 call levels overflow the 2 MiB stack of a default
//! thread in debug builds. Runtimes that run plans give their threads
//! [`SCRIPT_STACK_SIZE`]; on any other thread (a caller's own runtime, a test) the
//! script gets a stack of that size allocated for the call. Starting a thread per call
//! would cost more than most actions, and blocking-pool tasks also hold a paused clock
//! still while they run, which keeps dry runs deterministic.

/// The stack a script may use: give it to the runtime that runs plans
/// (`tokio::runtime::Builder::thread_stack_size`).
pub const SCRIPT_STACK_SIZE: usize = 32 * 1024 * 1024;
/// A thread with less stack left than this runs the script on a stack of its own.
const STACK_NEEDED: usize = 24 * 1024 * 1024;

/// Runs `f` where at least [`STACK_NEEDED`] of stack is left.
pub(crate) fn with_deep_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(STACK_NEEDED, SCRIPT_STACK_SIZE, f)
}

/// Runs `f` on a blocking thread with a deep stack, without blocking the runtime.
pub(crate) async fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    tokio::task::spawn_blocking(move || with_deep_stack(f)).await.map_err(|join| match join.try_into_panic() {
        Ok(panic) => panic_text(&*panic),
        Err(join) => format!("the script's task failed: {join}"),
    })
}

/// Whether this thread has the stack a script needs left: a script may then run right
/// here, with no stack of its own.
pub(crate) fn has_deep_stack() -> bool {
    stacker::remaining_stack().is_some_and(|left| left >= STACK_NEEDED)
}

/// Runs `f` on this thread, which [`has_deep_stack`]; a panic is an error, as on a
/// blocking thread ([`run`]).
pub(crate) fn run_here<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|panic| panic_text(&*panic))
}

/// Runs `f` on a thread of its own with a script's stack, and waits for it. What a dry
/// run's engine runs on: its script actions then run on the engine's thread
/// (`plan::Services::completes_at_once`) rather than each on a blocking thread, which
/// cost a hand-over each way per action (100,000 VMs: a third of the dry run's CPU).
pub fn on_script_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().name("drplan-engine".into()).stack_size(SCRIPT_STACK_SIZE);
        let handle = thread.spawn_scoped(scope, f).expect("a thread for the engine");
        handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
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

    /// Recursion that needs about `n` KiB of stack.
    fn depth(n: u32) -> u32 {
        let pad = std::hint::black_box([0u8; 1024]);
        if n == 0 { u32::from(pad[0]) } else { 1 + depth(n - 1) }
    }

    #[tokio::test]
    async fn a_script_gets_a_deep_stack_on_a_default_runtime() {
        // 8 MiB: four times what tokio's blocking threads have by default.
        assert_eq!(run(|| depth(8 * 1024)).await.unwrap(), 8 * 1024);
    }

    #[test]
    fn a_runtime_with_script_stacks_needs_no_stack_of_its_own_per_script() {
        let runtime =
            tokio::runtime::Builder::new_current_thread().thread_stack_size(SCRIPT_STACK_SIZE).build().unwrap();
        let left = runtime.block_on(runtime.spawn_blocking(|| stacker::remaining_stack().unwrap())).unwrap();
        assert!(left > STACK_NEEDED, "only {left} bytes of stack left");
    }

    #[tokio::test]
    async fn a_panicking_script_is_an_error_with_its_message() {
        let error = run(|| panic!("boom")).await.unwrap_err();
        assert!(error.contains("panicked: boom"), "{error}");
        assert_eq!(run(|| 2 + 2).await.unwrap(), 4);
    }
}
