//! The command line: clap definitions, one file per command, and the mapping of
//! outcomes to exit codes (0 ok, 1 some jobs failed, 2 invalid input, 3 environment).
//!
//! The only code that writes to the terminal: everything below reports through values
//! and events, which the commands here render.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod auth;
mod cache;
mod ci;
mod completions;
mod doctor;
pub mod escape;
mod export;
mod gc;
mod init;
mod jobs;
mod plan;
mod preview;
mod progress;
mod purge;
mod report;
mod run;
mod schema;
mod status;
mod validate;
mod watch;
mod why;
mod worker;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::expand::{self, Job};
use crate::recipe::{self, Diagnostic, Resolved};
use crate::store::StoreUrl;

// The doc comments here are `--help` text, which prints backticks as they are.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Parser)]
#[command(
    name = "factory",
    version,
    about = "Turn YAML recipes into vertical videos delivered as TikTok drafts"
)]
pub struct Cli {
    /// Where the job store, cache, renders and drafts live.
    #[arg(
        long,
        global = true,
        env = "FACTORY_STATE_DIR",
        default_value = ".factory"
    )]
    pub state_dir: PathBuf,
    /// The job store: sqlite://FILE, or postgres://USER:PASSWORD@HOST/DATABASE for a store
    /// many machines share [default: sqlite://STATE_DIR/factory.db].
    #[arg(
        long,
        global = true,
        env = "FACTORY_STORE",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub store: Option<String>,
    /// The artifact store: a folder (as `--cache-dir`), or s3://BUCKET/PREFIX on any
    /// S3-compatible service, kept in front of a local cache [default: STATE_DIR/cache].
    #[arg(
        long,
        global = true,
        env = "FACTORY_ARTIFACTS",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub artifacts: Option<String>,
    /// Machine-readable output.
    #[arg(long, global = true)]
    pub json: bool,
    /// CI mode: plain lines, annotations, summary and JUnit files (also when `CI` is set).
    #[arg(long, global = true)]
    pub ci: bool,
    /// Where the artifact cache lives, so CI caches can keep it [default: STATE_DIR/cache].
    #[arg(long, global = true, env = "FACTORY_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// When another command holds the state directory, wait for it instead of stopping.
    #[arg(long, global = true)]
    pub wait: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[allow(clippy::doc_markdown)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a project: a recipes folder with a sample recipe, schemas, `.gitignore`, CI.
    Init {
        /// The project folder (created when missing); existing files are never replaced.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Check recipes and report every mistake with its file, line and column.
    Validate {
        /// Recipe files or folders (searched recursively).
        #[arg(default_value = "recipes")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
    },
    /// Show what a run would do: new, changed, done, failed and removed jobs.
    Plan {
        #[arg(default_value = "recipes")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
        /// List every superseded version of a job, not one line per job.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        pick: Pick,
    },
    /// Run every job that has work: new, changed, failed and interrupted ones.
    Run {
        #[arg(default_value = "recipes")]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        select: Select,
        #[command(flatten)]
        pick: Pick,
        /// Run only shard I of N of the selected jobs (by job id), for a CI matrix: `2/4`.
        #[arg(long, value_name = "I/N")]
        shard: Option<crate::plan::Shard>,
        /// Write a JSON summary of the run here [CI default: STATE_DIR/reports/summary.json].
        #[arg(long, value_name = "FILE")]
        summary: Option<PathBuf>,
        /// Write a JUnit XML report here [CI default: STATE_DIR/reports/junit.xml].
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
        /// Put the selected jobs on the shared queue for `factory worker` and return.
        #[arg(long)]
        enqueue: bool,
        #[command(flatten)]
        queue: worker::QueueArgs,
    },
    /// Run jobs from the shared queue until stopped (SIGTERM hands back the stages running).
    Worker {
        /// Renders at once [default: one per two cores].
        #[arg(long, value_name = "N")]
        renders: Option<usize>,
        /// Network stages (script, footage, voice, uploads) at once.
        #[arg(long, value_name = "N", default_value_t = 8)]
        network: usize,
        /// How `factory status` names this worker [default: HOST-PID].
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        queue: worker::QueueArgs,
    },
    /// Show the shared queue: waiting, running, deferred and failed jobs.
    Status {
        #[command(flatten)]
        queue: worker::QueueArgs,
    },
    /// Watch a recipes folder: re-plan on every save and run the new and changed jobs.
    Watch {
        #[arg(default_value = "recipes")]
        dir: PathBuf,
        /// Only show the plan difference; run nothing.
        #[arg(long)]
        plan_only: bool,
        /// Also run every recipe this often (seconds), to collect expired videos and send
        /// drafts that waited for room in the TikTok inbox.
        #[arg(long, value_name = "SECONDS", default_value_t = 900)]
        every: u64,
    },
    /// Check the keys, quotas and tools the recipes need, without spending anything.
    Doctor {
        #[arg(default_value = "recipes")]
        paths: Vec<PathBuf>,
    },
    /// Look at jobs in the store.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// Connect TikTok accounts and manage the key that encrypts their tokens.
    Auth {
        #[command(subcommand)]
        command: auth::AuthCommand,
    },
    /// Check the artifact store: every entry's files against their recorded digests.
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Delete rendered videos, their footage and narration, and hosted copies past retention.
    Gc {
        /// Report what is due without deleting.
        #[arg(long)]
        dry_run: bool,
        /// Also remove the local drafts of older versions of jobs whose newer version was
        /// delivered (`run` does this after each delivery).
        #[arg(long)]
        superseded: bool,
    },
    /// Write everything stored about the user as one JSON document.
    Export {
        /// A file instead of stdout (created owner-only).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Delete jobs with their artifacts, hosted copies and history, then compact the store.
    #[command(group(clap::ArgGroup::new("scope").required(true)))]
    Purge {
        /// One job, by id or unambiguous prefix.
        #[arg(long, group = "scope")]
        job: Option<String>,
        /// Every job of one recipe.
        #[arg(long, group = "scope")]
        recipe: Option<String>,
        /// Every job.
        #[arg(long, group = "scope")]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
    /// Print the JSON Schema of recipes (or of the project file).
    Schema {
        /// The schema of `factory.yaml` instead.
        #[arg(long)]
        project: bool,
    },
    /// Write one static HTML page about the jobs: thumbnails, status, timings, spend.
    Report {
        /// Recipe files or folders to report on [default: every job in the store].
        paths: Vec<PathBuf>,
        #[arg(long, default_value = "report.html")]
        out: PathBuf,
        #[command(flatten)]
        pick: Pick,
    },
    /// Say which input of a job's stage keys changed since its cell last ran.
    Why {
        /// A job id or an unambiguous prefix: of the recipes, or of the store.
        job: String,
        /// One stage only (script, footage, voice, captions, render, host, draft, notify).
        stage: Option<String>,
        /// Recipe files or folders where the job's current version is looked up.
        #[arg(long = "recipes", value_name = "PATH", default_value = "recipes")]
        paths: Vec<PathBuf>,
    },
    /// Render one job small and fast for a look before a batch: not hosted, not a draft,
    /// not recorded; the file's path is printed.
    Preview {
        /// A job id or an unambiguous prefix, as `factory plan` lists it.
        job: String,
        /// Recipe files or folders where the job is looked up.
        #[arg(long = "recipes", value_name = "PATH", default_value = "recipes")]
        paths: Vec<PathBuf>,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff), or one command's page.
    Man {
        /// A command whose page to print, e.g. `run` or `jobs list`.
        command: Vec<String>,
        /// Write `factory.1` and a page for every command to this folder instead.
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        dir: Option<PathBuf>,
    },
}

/// Which jobs a command looks at.
#[allow(clippy::doc_markdown)]
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Pick {
    /// Only matching jobs: recipe=NAME, topic=TEXT, voice=NAME, template=NAME (a trailing
    /// `*` matches any rest; case ignored), id:PREFIX. Terms joined by `,` must all match;
    /// the flag given again selects either.
    #[arg(long = "select", value_name = "TERMS")]
    pub select: Vec<String>,
    /// At most this many jobs (for `run`, of those with work to do).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl Pick {
    pub fn selector(&self) -> Result<crate::plan::Selector, Failure> {
        crate::plan::Selector::parse(&self.select).map_err(|e| Failure::invalid(e.to_string()))
    }
}

/// Which recipes a command looks at.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Select {
    /// Only recipes whose file (or project file) changed since this git ref.
    #[arg(long, value_name = "GIT_REF")]
    pub changed_since: Option<String>,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum CacheCommand {
    /// Verify every cached artifact; what fails is removed, so the next run builds it again.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// List jobs, newest last.
    List {
        #[arg(long)]
        recipe: Option<String>,
        /// Only jobs in this status.
        #[arg(long, value_enum)]
        status: Option<jobs::StatusArg>,
        #[command(flatten)]
        pick: Pick,
    },
    /// Show one job: its spec, stages, timings and artifacts.
    Show {
        /// A job id or an unambiguous prefix.
        id: String,
    },
    /// Run one failed or interrupted job again from the stage where it stopped.
    Retry {
        /// A job id or an unambiguous prefix.
        id: String,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok = 0,
    JobsFailed = 1,
    Invalid = 2,
    Environment = 3,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        ExitCode::from(o as u8)
    }
}

/// A failure that ends the command: its message and exit code.
#[derive(Debug)]
pub struct Failure {
    pub outcome: Outcome,
    pub message: String,
    pub hint: Option<String>,
}

impl Failure {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Invalid,
            message: message.into(),
            hint: None,
        }
    }
    pub fn environment(message: impl Into<String>) -> Self {
        Self {
            outcome: Outcome::Environment,
            message: message.into(),
            hint: None,
        }
    }
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl From<crate::store::StoreError> for Failure {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match e {
            StoreError::NoSuchJob(_) | StoreError::Ambiguous { .. } | StoreError::BadPrefix(_) => {
                Self::invalid(e.to_string())
            }
            StoreError::Connect { .. } => Self::environment(e.to_string()).with_hint(
                "check the host, port, database and credentials of `--store` (`FACTORY_STORE`)",
            ),
            other => Self::environment(other.to_string()),
        }
    }
}

pub type CmdResult = Result<Outcome, Failure>;

/// Parses arguments and runs; what `main` calls.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                Outcome::Invalid.into()
            } else {
                Outcome::Ok.into()
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return Outcome::Environment.into();
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(outcome) => outcome.into(),
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            if let Some(hint) = failure.hint {
                eprintln!("  help: {hint}");
            }
            failure.outcome.into()
        }
    }
}

pub async fn run(mut cli: Cli) -> CmdResult {
    let ci = cli.ci || ci::from_env();
    // A folder is the cache directory; an S3 URL puts the shared store behind the cache.
    let remote = match cli.artifacts.as_deref() {
        Some(text) if text.starts_with("s3://") => Some(
            text.parse::<crate::artifacts::s3::S3Url>()
                .map_err(|e| Failure::invalid(e.to_string()))?,
        ),
        Some(folder) => {
            cli.cache_dir = Some(PathBuf::from(folder));
            None
        }
        None => None,
    };
    // Read here, not by clap: clap's message would repeat the value, password and all.
    let store = match cli.store.as_deref() {
        Some(text) => text
            .parse::<StoreUrl>()
            .map_err(|e| Failure::invalid(e.to_string()))?,
        None => StoreUrl::in_state_dir(&cli.state_dir),
    };
    // What commands that change state lock (see [`run::lock_state`]), and the options
    // of those that run jobs.
    let locking = run::Options {
        state_dir: cli.state_dir.clone(),
        store: store.clone(),
        remote: remote.clone(),
        cache_dir: cli.cache_dir.clone(),
        json: cli.json,
        ci,
        wait: cli.wait,
        picked: run::Picked::default(),
    };
    match cli.command {
        Command::Init { dir } => init::run(&dir),
        Command::Validate { paths, select } => {
            let Some(paths) = ci::select(&paths, &select)? else {
                return Ok(Outcome::Ok);
            };
            validate::run(&paths, cli.json, ci)
        }
        Command::Plan {
            paths,
            select,
            all,
            pick,
        } => {
            let Some(paths) = ci::select(&paths, &select)? else {
                return Ok(Outcome::Ok);
            };
            let cache_dir = cli
                .cache_dir
                .clone()
                .unwrap_or_else(|| cli.state_dir.join("cache"));
            let show = plan::Show {
                json: cli.json,
                ci,
                all,
                selector: pick.selector()?,
                limit: pick.limit,
            };
            plan::run(
                &paths,
                &cli.state_dir,
                &store,
                remote.as_ref(),
                &cache_dir,
                show,
            )
            .await
        }
        Command::Run {
            paths,
            select,
            pick,
            shard,
            summary,
            junit,
            enqueue,
            queue,
        } => {
            let Some(paths) = ci::select(&paths, &select)? else {
                return Ok(Outcome::Ok);
            };
            let reports = ci::Reports::new(summary, junit, ci, &cli.state_dir);
            let opts = run::Options {
                picked: run::Picked {
                    selector: pick.selector()?,
                    shard,
                    limit: pick.limit,
                },
                ..locking
            };
            if enqueue {
                return worker::enqueue(&paths, &opts, &queue).await;
            }
            run::run(&paths, &opts, &reports).await
        }
        Command::Worker {
            renders,
            network,
            name,
            queue,
        } => {
            let args = worker::WorkerArgs {
                renders,
                network,
                name,
            };
            worker::run(&args, &locking, &queue).await
        }
        Command::Status { queue } => status::run(&queue, cli.json).await,
        Command::Watch {
            dir,
            plan_only,
            every,
        } => {
            let opts = run::Options {
                // Runs of `watch` queue behind a manual `run` rather than stop.
                wait: true,
                ..locking
            };
            watch::run(
                &dir,
                &opts,
                plan_only,
                std::time::Duration::from_secs(every.max(1)),
            )
            .await
        }
        Command::Report { paths, out, pick } => {
            let cache_dir = cli.cache_dir.unwrap_or_else(|| cli.state_dir.join("cache"));
            let picked = (pick.selector()?, pick.limit);
            report::run(&paths, &out, &cli.state_dir, &store, &cache_dir, &picked).await
        }
        Command::Doctor { paths } => {
            let cache_dir = cli.cache_dir.unwrap_or_else(|| cli.state_dir.join("cache"));
            doctor::run(&paths, &cli.state_dir, &store, &cache_dir, cli.json, ci).await
        }
        Command::Jobs {
            command: JobsCommand::Retry { id },
        } => {
            crate::store::job_prefix(&id)?;
            if let Some(done) = jobs::nothing_to_retry(&store, &id).await? {
                if cli.json {
                    out_json(
                        &serde_json::json!({ "event": "retry", "retried": false, "reason": done.trim_end() }),
                    );
                } else {
                    out(&done);
                }
                return Ok(Outcome::Ok);
            }
            run::retry(&id, &locking).await
        }
        Command::Why { job, stage, paths } => {
            let cache_dir = cli.cache_dir.unwrap_or_else(|| cli.state_dir.join("cache"));
            why::run(&job, stage.as_deref(), &paths, &store, &cache_dir, cli.json).await
        }
        Command::Preview { job, paths } => preview::run(&job, &paths, &locking).await,
        Command::Completions { shell } => completions::run(shell),
        Command::Man { command, dir } => completions::man(&command, dir.as_deref()),
        Command::Jobs { command } => jobs::run(command, &cli.state_dir, &store, cli.json).await,
        Command::Schema { project } => schema::run(project),
        Command::Cache {
            command: CacheCommand::Verify,
        } => {
            let _locks = run::lock_state(&locking, "cache verify").await?;
            let cache = cli
                .cache_dir
                .clone()
                .unwrap_or_else(|| cli.state_dir.join("cache"));
            cache::verify(&cache, cli.json).await
        }
        Command::Gc {
            dry_run,
            superseded,
        } => {
            let _locks = if dry_run {
                Vec::new()
            } else {
                run::lock_state(&locking, "gc").await?
            };
            gc::run(
                dry_run,
                superseded,
                &cli.state_dir,
                &store,
                remote.as_ref(),
                cli.cache_dir.as_deref(),
                cli.json,
            )
            .await
        }
        Command::Export { out } => export::run(out, &store).await,
        Command::Purge {
            job,
            recipe,
            all: _,
            yes,
        } => {
            let _locks = run::lock_state(&locking, "purge").await?;
            let scope = match (job, recipe) {
                (Some(prefix), _) => {
                    crate::store::job_prefix(&prefix)?;
                    let store = crate::store::Store::open_read_only(&store)
                        .await?
                        .ok_or_else(|| {
                            Failure::invalid(format!("job `{prefix}` is not in the store"))
                        })?;
                    let id = store.find_job(&prefix).await.map(|j| j.id);
                    store.close().await;
                    crate::privacy::purge::Scope::Job(id?)
                }
                (None, Some(name)) => crate::privacy::purge::Scope::Recipe(name),
                (None, None) => crate::privacy::purge::Scope::All,
            };
            purge::run(
                scope,
                yes,
                &cli.state_dir,
                &store,
                remote.as_ref(),
                cli.cache_dir.as_deref(),
                cli.json,
            )
            .await
        }
        Command::Auth { command } => {
            // Logging in, disconnecting and rotating the key write tokens: never while a
            // run could save refreshed ones under the old key.
            let _locks = if matches!(
                command,
                auth::AuthCommand::Tiktok {
                    command: auth::TikTokCommand::Status
                }
            ) {
                Vec::new()
            } else {
                run::lock_state(&locking, "auth").await?
            };
            auth::run(command, &cli.state_dir, &store, cli.json).await
        }
    }
}

/// What an empty or missing recipes folder suggests.
const INIT_HINT: &str = "`factory init` makes a recipes folder with a sample recipe to start from";

/// A recipe that loaded and expanded.
pub struct Expanded {
    pub recipe: Resolved,
    pub jobs: Vec<Job>,
}

/// Loads and expands every recipe under `paths`; diagnostics from all of them.
pub fn load_all(paths: &[PathBuf]) -> (Vec<Expanded>, Vec<Diagnostic>) {
    let files = match recipe::discover(paths) {
        Ok(f) => f,
        Err(d) if d.code == "not-found" => {
            return (Vec::new(), vec![d.with_hint(INIT_HINT)]);
        }
        Err(d) => return (Vec::new(), vec![d]),
    };
    if files.is_empty() {
        let shown: Vec<String> = paths
            .iter()
            .map(|p| format!("`{}`", escape::plain(&p.display().to_string())))
            .collect();
        eprintln!("note: no recipes in {}; {INIT_HINT}", shown.join(", "));
    }
    let mut ok = Vec::new();
    let mut diags: Vec<Diagnostic> = Vec::new();
    for file in files {
        match recipe::load_partial(&file) {
            (Some(recipe), d) if d.is_empty() => match expand::expand(&recipe) {
                Ok(jobs) => ok.push(Expanded { recipe, jobs }),
                Err(d) => diags.extend(d),
            },
            (Some(recipe), d) => {
                diags.extend(d);
                // The recipe has other mistakes; still report its template mistakes.
                if let Err(more) = expand::expand(&recipe) {
                    diags.extend(
                        more.into_iter()
                            .filter(|d| expand::TEMPLATE_CODES.contains(&d.code)),
                    );
                }
            }
            (None, d) => diags.extend(d),
        }
    }
    // Two recipes of one project report the project file's mistakes once.
    let mut seen = std::collections::BTreeSet::new();
    diags.retain(|d| seen.insert((d.path.clone(), d.line, d.column, d.message.clone())));
    diags.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    let mut diags = cap_per_file(diags);
    let mut names: std::collections::BTreeMap<String, PathBuf> = std::collections::BTreeMap::new();
    for e in &ok {
        if let Some(first) = names.insert(e.recipe.name.clone(), e.recipe.path.clone()) {
            diags.push(
                e.recipe
                    .diag(
                        recipe::Origin::Recipe,
                        "/name",
                        "duplicate-recipe",
                        format!(
                            "recipe name `{}` is also used by `{}`",
                            e.recipe.name,
                            first.display()
                        ),
                    )
                    .with_hint("recipe names identify jobs in the store; make them unique"),
            );
        }
    }
    (ok, diags)
}

/// The most diagnostics shown for one file; a broken file (a paste gone wrong) could
/// otherwise print thousands, each with its snippet.
pub const MAX_DIAGNOSTICS_PER_FILE: usize = 50;

/// The first [`MAX_DIAGNOSTICS_PER_FILE`] diagnostics of each file (sorted by file),
/// and one more saying how many were left out.
fn cap_per_file(diags: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut out: Vec<Diagnostic> = Vec::with_capacity(diags.len().min(1_000));
    let mut count = 0;
    let mut left_out = 0;
    let mut current: Option<PathBuf> = None;
    let flush = |out: &mut Vec<Diagnostic>, path: &Option<PathBuf>, left_out: usize| {
        if let (Some(path), true) = (path, left_out > 0) {
            out.push(
                Diagnostic::file(
                    path,
                    "too-many-problems",
                    format!("{left_out} more problems in this file are not shown"),
                )
                .with_hint("fix the ones above and run `factory validate` again"),
            );
        }
    };
    for d in diags {
        if current.as_ref() != Some(&d.path) {
            flush(&mut out, &current, left_out);
            current = Some(d.path.clone());
            count = 0;
            left_out = 0;
        }
        count += 1;
        if count <= MAX_DIAGNOSTICS_PER_FILE {
            out.push(d);
        } else {
            left_out += 1;
        }
    }
    flush(&mut out, &current, left_out);
    out
}

/// Prints diagnostics to stderr (human) and returns whether there were any. In CI
/// each one is also a GitHub Actions annotation on stdout.
pub fn report(diags: &[Diagnostic], ci: bool) -> bool {
    let mut err = std::io::stderr().lock();
    for d in diags {
        let _ = writeln!(err, "{}", d.render());
    }
    if ci {
        let text: String = diags.iter().map(ci::annotation).collect();
        out(&text);
    }
    !diags.is_empty()
}

/// Where the store is, for a message: the state directory for its own SQLite file (as
/// messages always said), the URL without credentials otherwise.
pub fn store_place(state_dir: &std::path::Path, store: &StoreUrl) -> String {
    if *store == StoreUrl::in_state_dir(state_dir) {
        state_dir.display().to_string()
    } else {
        store.to_string()
    }
}

/// Warns about state files that others can read, with the `chmod` that fixes each.
pub fn warn_loose_permissions(state_dir: &std::path::Path) {
    let key_file = crate::privacy::key_file(state_dir);
    let mut err = std::io::stderr().lock();
    for loose in crate::privacy::permissions::check(state_dir, &key_file) {
        let _ = writeln!(err, "warning: {loose}\n  help: {}", loose.hint());
    }
}

/// Warns, before any job starts, when the S3 bucket behind the artifacts cannot keep a
/// create-only claim. A bucket that cannot be written at all ends the command.
pub async fn warn_lax_bucket(artifacts: &crate::artifacts::ArtifactStore) -> Result<(), Failure> {
    let warning = artifacts
        .remote_warning()
        .await
        .map_err(|e| Failure::environment(e.to_string()))?;
    if let Some(warning) = warning {
        let _ = writeln!(std::io::stderr().lock(), "warning: {warning}");
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`factory plan | head`) is not an error.
pub fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}

pub fn out_json(value: &impl serde::Serialize) {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    out(&text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_with_thousands_of_mistakes_reports_fifty_and_a_count_quickly() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.yaml");
        std::fs::write(
            &path,
            format!("version: 1\n{}", "name:ion: 1\n".repeat(45_000)),
        )
        .unwrap();
        let started = std::time::Instant::now();
        let (_, diags) = load_all(&[path]);
        let rendered: usize = diags.iter().map(|d| d.render().len()).sum();
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(rendered > 0);
        assert_eq!(diags.len(), MAX_DIAGNOSTICS_PER_FILE + 1);
        let last = diags.last().unwrap();
        assert_eq!(last.code, "too-many-problems");
        assert!(last.message.starts_with("44"), "{}", last.message);
    }
}
