//! `vfc`: the vfc-monitor command line. Everything lives in the library; see `cli`.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    vfc_monitor::cli::main()
}
