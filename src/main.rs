//! The `torrent-gateway` binary: parses the command line and hands over to `cli::main`.

/// Serves huge zeroed allocations lazily (see `hugealloc`), so a hostile Content-Length
/// cannot abort the process through tiny_http's body drain.
#[global_allocator]
static ALLOCATOR: torrent_gateway::hugealloc::Allocator = torrent_gateway::hugealloc::Allocator;

fn main() -> std::process::ExitCode {
    torrent_gateway::cli::main()
}
