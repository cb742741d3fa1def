//! `factory completions SHELL` and `factory man`: generated from the clap definitions,
//! so they never drift from the real flags.
//!
//! The man page is `factory(1)` with EXIT STATUS, ENVIRONMENT and EXAMPLES sections,
//! and one page per command it lists (`factory-run(1)`, `factory-jobs-list(1)`, …):
//! `factory man run` prints one, `factory man --dir DIR` writes them all.

use std::path::Path;

use clap::CommandFactory;

use super::{Cli, CmdResult, Failure, Outcome, out};

pub fn run(shell: clap_complete::Shell) -> CmdResult {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "factory", &mut buf);
    out(&String::from_utf8_lossy(&buf));
    Ok(Outcome::Ok)
}

/// The command tree as the man pages name it: every subcommand's display name is
/// `factory-<path>`.
fn tree() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

pub fn man(command: &[String], dir: Option<&Path>) -> CmdResult {
    let root = tree();
    if let Some(dir) = dir {
        let written = write_all(&root, dir).map_err(|e| {
            Failure::environment(format!(
                "cannot write man pages to `{}`: {e}",
                dir.display()
            ))
        })?;
        out(&format!(
            "wrote {written} man pages to `{}`\n",
            dir.display()
        ));
        return Ok(Outcome::Ok);
    }
    let mut page = &root;
    for name in command {
        page = page
            .get_subcommands()
            .find(|s| s.get_name() == name)
            .ok_or_else(|| {
                Failure::invalid(format!("`{name}` is not a command of `{}`", display(page)))
                    .with_hint(format!(
                        "one of {}",
                        page.get_subcommands()
                            .map(|s| format!("`{}`", s.get_name()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
            })?;
    }
    out(&String::from_utf8_lossy(&render(page, command.is_empty())?));
    Ok(Outcome::Ok)
}

fn display(cmd: &clap::Command) -> String {
    cmd.get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .replace('-', " ")
}

fn render(cmd: &clap::Command, main: bool) -> Result<Vec<u8>, Failure> {
    let fail = |e: std::io::Error| Failure::environment(format!("cannot render the man page: {e}"));
    let mut buf = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    if !main {
        man.render(&mut buf).map_err(fail)?;
        return Ok(buf);
    }
    man.render_title(&mut buf).map_err(fail)?;
    man.render_name_section(&mut buf).map_err(fail)?;
    man.render_synopsis_section(&mut buf).map_err(fail)?;
    man.render_description_section(&mut buf).map_err(fail)?;
    man.render_options_section(&mut buf).map_err(fail)?;
    man.render_subcommands_section(&mut buf).map_err(fail)?;
    buf.extend_from_slice(MAIN_SECTIONS.as_bytes());
    man.render_version_section(&mut buf).map_err(fail)?;
    Ok(buf)
}

/// Writes `factory.1` and a page for every command below it; how many.
fn write_all(root: &clap::Command, dir: &Path) -> std::io::Result<usize> {
    fn walk(cmd: &clap::Command, dir: &Path, main: bool) -> std::io::Result<usize> {
        let mut written = 0;
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            written += walk(sub, dir, false)?;
        }
        let name = format!(
            "{}.1",
            cmd.get_display_name().unwrap_or_else(|| cmd.get_name())
        );
        let page = render(cmd, main).map_err(|f| std::io::Error::other(f.message))?;
        std::fs::write(dir.join(name), page)?;
        Ok(written + 1)
    }
    std::fs::create_dir_all(dir)?;
    walk(root, dir, true)
}

/// What `factory(1)` says beyond the flags: exit codes, the environment, examples.
const MAIN_SECTIONS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Everything asked for was done (or there was nothing to do).
.TP
\fB1\fR
Some jobs failed; the others finished. \fBfactory run\fR resumes the failed ones at the stage that failed.
.TP
\fB2\fR
Invalid input: a recipe mistake (reported as \fIfile:line:col\fR with a snippet) or a wrong argument.
.TP
\fB3\fR
The environment: a missing tool (ffmpeg, ffprobe, espeak\-ng), key, account or quota, a service that refused, a full disk, or another command holding the state directory.
.SH ENVIRONMENT
.TP
\fBFACTORY_STATE_DIR\fR
The state directory (job store, renders, drafts); default \fI.factory\fR. Same as \fB\-\-state\-dir\fR.
.TP
\fBFACTORY_CACHE_DIR\fR
The artifact store; default \fISTATE_DIR/cache\fR. Same as \fB\-\-cache\-dir\fR.
.TP
\fBFACTORY_STORE\fR
The job store: \fIsqlite://FILE\fR (default \fISTATE_DIR/factory.db\fR) or \fIpostgres://USER:PASSWORD@HOST/DATABASE\fR. Same as \fB\-\-store\fR.
.TP
\fBFACTORY_ARTIFACTS\fR
The artifact store: a folder, or \fIs3://BUCKET/PREFIX\fR in front of the local cache (endpoint and keys from \fBR2_ENDPOINT\fR or \fBR2_ACCOUNT_ID\fR or \fBAWS_ENDPOINT_URL\fR, \fBR2_ACCESS_KEY_ID\fR or \fBAWS_ACCESS_KEY_ID\fR, \fBR2_SECRET_ACCESS_KEY\fR or \fBAWS_SECRET_ACCESS_KEY\fR). Same as \fB\-\-artifacts\fR.
.TP
\fBFACTORY_QUEUE\fR
The shared queue of \fBrun \-\-enqueue\fR, \fBworker\fR and \fBstatus\fR: a Postgres URL. Same as \fB\-\-queue\fR.
.TP
\fBFACTORY_LEASE_MS\fR, \fBFACTORY_HEARTBEAT_MS\fR, \fBFACTORY_QUEUE_POLL_MS\fR
A worker's lease on a job (default 30000; another worker takes the job over once it ends), how often the lease is renewed (default 5000, at most half the lease), and how often an idle slot looks for work (default 500).
.TP
\fBCI\fR
When set (not \fIfalse\fR or \fI0\fR), CI mode: plain lines, annotations, summary and JUnit files.
.TP
\fBOPENROUTER_API_KEY\fR, \fBOPENROUTER_BASE_URL\fR, \fBOPENROUTER_PRICE_PER_1K\fR, \fBOPENROUTER_IMAGE_PRICE\fR
Scripts written by OpenRouter (\fBprovider: openrouter\fR), and stills drawn by its image models (\fBfootage.model\fR); the image price is US dollars per picture.
.TP
\fBPEXELS_API_KEY\fR, \fBPEXELS_BASE_URL\fR
Stock footage from Pexels (\fBprovider: pexels\fR).
.TP
\fBELEVENLABS_API_KEY\fR, \fBELEVENLABS_BASE_URL\fR, \fBELEVENLABS_TIER\fR
Voices from ElevenLabs (\fBprovider: elevenlabs\fR).
.TP
\fBR2_ACCOUNT_ID\fR, \fBR2_ACCESS_KEY_ID\fR, \fBR2_SECRET_ACCESS_KEY\fR, \fBR2_BUCKET\fR, \fBR2_ENDPOINT\fR
Hosted copies in Cloudflare R2 (\fBpublish: { host: r2 }\fR).
.TP
\fBTIKTOK_CLIENT_KEY\fR, \fBTIKTOK_CLIENT_SECRET\fR, \fBTIKTOK_API_BASE_URL\fR, \fBTIKTOK_AUTH_BASE_URL\fR
The TikTok developer app that uploads inbox drafts (\fBpublish: { tiktok: { account: NAME } }\fR).
.TP
\fBTIKTOK_ACCOUNT_JSON\fR
An account for a machine without a browser: \fI{"open_id": "...", "refresh_token": "..."}\fR.
.TP
\fBFACTORY_SECRET_KEY\fR, \fBFACTORY_SECRET_KEY_FILE\fR
The key (32 bytes, base64 or hex) that encrypts stored tokens, or the file that holds it.
.TP
\fBTELEGRAM_BOT_TOKEN\fR, \fBTELEGRAM_API_BASE_URL\fR
Notices through a Telegram bot (\fBnotify: { telegram: { chat: ... } }\fR).
.TP
\fBFACTORY_NOW\fR
The clock, as unix seconds, for tests and reproducible output.
.SH EXAMPLES
.TP
\fBfactory init && factory validate && factory run\fR
Start a project in this folder and make its sample videos.
.TP
\fBfactory plan recipes/space\-facts.yaml\fR
What a run would do, without doing it.
.TP
\fBfactory watch recipes\fR
Re\-plan and run on every save of a recipe, topics file, music or footage.
.TP
\fBfactory jobs list \-\-status failed\fR
The failed jobs, with the stage each stopped at; \fBfactory jobs retry ID\fR runs one again.
.TP
\fBfactory \-\-ci run \-\-changed\-since origin/main recipes\fR
In CI: only the recipes a branch changed, with annotations and a JUnit report.
.TP
\fBfactory report \-\-out report.html recipes\fR
One offline page with a player, contact sheet and timings per job.
.TP
\fBfactory gc \-\-superseded\fR
Delete what is past retention, and the drafts of older versions of jobs.
.TP
\fBfactory man \-\-dir man/\fR
Write this page and one per command (\fBfactory\-run\fR(1), ...) to \fIman/\fR.
"#;
