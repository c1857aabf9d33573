//! The drplan binary: see `drplan --help` and README.md.

// Plans of tens of thousands of VMs make millions of small allocations (site parsing,
// events, script values); mimalloc serves them markedly faster than the system
// allocator, across threads (a 10k-VM dry run: 1.5 s down to 1.0 s, at the cost of a
// higher peak, 177 to 250 MB). Built without transparent huge pages (`no_thp` in
// Cargo.toml): a huge page is zeroed whole at its first touch and split again when
// mimalloc gives part of it back, and at 100,000 VMs that kernel work was a fifth of
// check + dry run (5.1-5.6 s down to 4.7-5.0 s, peak 822 to 779-816 MiB).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    drplan::cli::main()
}
