//! The `exum-router` command: the router (`serve`, the default) and its
//! tools; the command line itself is the library's `cli` module.

use std::process::ExitCode;

/// mimalloc instead of the system allocator: the SIP plane allocates and frees
/// message buffers on every datagram, across worker threads (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    exum_router::cli::main()
}
