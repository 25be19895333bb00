//! The `deskpilot` binary; everything lives in the library (`deskpilot::cli`).

fn main() -> std::process::ExitCode {
    deskpilot::cli::main()
}
