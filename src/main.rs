use std::process::ExitCode;

fn main() -> ExitCode {
    tiktok_factory::cli::main()
}
