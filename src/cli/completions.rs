//! `factory completions SHELL` and `factory man`: generated from the clap definitions,
//! so they never drift from the real flags.

use clap::CommandFactory;

use super::{Cli, CmdResult, Failure, Outcome, out};

pub fn run(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "factory", &mut buf);
    out(&String::from_utf8_lossy(&buf));
    Ok(Outcome::Ok)
}

pub fn man() -> CmdResult {
    let mut buf = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut buf)
        .map_err(|e| Failure::environment(format!("cannot render the man page: {e}")))?;
    out(&String::from_utf8_lossy(&buf));
    Ok(Outcome::Ok)
}
