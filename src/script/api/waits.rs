//! Logging and waiting: `log` to the run's log, `wait` and `wait_port` on the run's
//! clock (modelled time in simulations and dry runs). `sleep` is refused: it would block
//! on the machine's clock, out of reach of cancellation and dry runs.

use rhai::{Dynamic, FLOAT, INT, Module, NativeCallContext};

use crate::script::host::{RhaiResult, doc_fn, duration_arg, host, ipv4_arg, running};

fn no_sleep<T>(_: T) -> RhaiResult<()> {
    Err("sleep() is not available in plans: use wait(\"5s\"), which follows the run's clock and can be cancelled"
        .into())
}

pub(super) fn register(module: &mut Module) {
    doc_fn(
        "log",
        &["message: ?", "()"],
        "Writes a line to the run's log and event stream (while the plan is built: to the tool's log).",
    )
    .set_into_module(module, |ctx: NativeCallContext, message: Dynamic| -> RhaiResult<()> {
        let message = message.to_string();
        match &host(&ctx)?.run {
            Some(run) => run.services().log(&message),
            None => tracing::info!(target: "drplan::script", "{message}"),
        }
        Ok(())
    });
    doc_fn("wait", &["duration: String", "()"], "Lets `duration` (\"30s\", \"5m\") pass on the run's clock.")
        .set_into_module(module, |ctx: NativeCallContext, duration: &str| -> RhaiResult<()> {
            let run = running(&ctx)?;
            let duration = duration_arg("wait", duration)?;
            run.block_on("wait", run.services().wait(duration))
        });
    doc_fn(
        "wait_port",
        &["ip: String", "port: int", "timeout: String", "()"],
        "Waits until `ip` answers on TCP `port`, trying until `timeout` (\"5m\"); an error if it never does.",
    )
    .set_into_module(module, |ctx: NativeCallContext, ip: Dynamic, port: INT, timeout: &str| -> RhaiResult<()> {
        let run = running(&ctx)?;
        let ip = ipv4_arg("wait_port", &ip)?;
        let port = u16::try_from(port).map_err(|_| format!("wait_port: {port} is not a TCP port (0 to 65535)"))?;
        let timeout = duration_arg("wait_port", timeout)?;
        run.block_on("wait_port", run.services().wait_port(ip, port, timeout))
    });
    let sleep_doc = "Not available in plans: use `wait(\"5s\")`.";
    doc_fn("sleep", &["seconds: int", "()"], sleep_doc).set_into_module(module, no_sleep::<INT>);
    doc_fn("sleep", &["seconds: float", "()"], sleep_doc).set_into_module(module, no_sleep::<FLOAT>);
}
