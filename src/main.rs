//! The `torrent-gateway` binary: parses the command line and hands over to `cli::main`.

fn main() -> std::process::ExitCode {
    torrent_gateway::cli::main()
}
