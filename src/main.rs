//! The drplan binary: see `drplan --help` and README.md.

fn main() -> std::process::ExitCode {
    drplan::cli::main()
}
