//! The drplan binary: see `drplan --help` and README.md.

// Plans of tens of thousands of VMs make millions of small allocations (site parsing,
// events, script values); mimalloc serves them markedly faster than the system
// allocator, across threads, and returns memory more readily.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    drplan::cli::main()
}
