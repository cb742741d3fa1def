//! `factory watch DIR`: on every save, re-validate and re-plan the recipes that changed,
//! print the plan difference, and run the new and changed jobs.
//!
//! One run at a time: the engine marks rows left `running` as interrupted when it starts,
//! so two overlapping runs would interrupt each other. Saves during a run are validated
//! and planned at once and their recipes run when the current run ends.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::ci::JobReport;
use super::run::{Options, execute, summary_line};
use super::{CmdResult, Expanded, Failure, Outcome, load_all, out, report};
use crate::engine::Summary;
use crate::plan;
use crate::recipe;
use crate::store::Store;
use tokio::signal::unix::{SignalKind, signal};

/// Editors save in bursts (write temp, rename, touch); one quiet spell ends a save.
const DEBOUNCE: Duration = Duration::from_millis(300);

type RunHandle = JoinHandle<Result<(Summary, Vec<JobReport>), Failure>>;

pub async fn run(dir: &Path, opts: &Options, plan_only: bool, every: Duration) -> CmdResult {
    if !dir.is_dir() {
        return Err(Failure::invalid(format!(
            "`{}` is not a folder",
            dir.display()
        )));
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<BTreeSet<PathBuf>>();
    // Events name canonical paths; messages name them as the user wrote the folder.
    let given = dir.to_owned();
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    // Renders and the store change all the time during a run; they are nobody's input.
    let outputs: Vec<PathBuf> = [Some(&opts.state_dir), opts.cache_dir.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(|p| std::fs::canonicalize(p).ok())
        .collect();
    let mut debouncer = new_debouncer(DEBOUNCE, None, move |result: DebounceEventResult| {
        if let Ok(events) = result {
            let paths: BTreeSet<PathBuf> = events
                .into_iter()
                // Reading a recipe is an access event; planning it must not plan it again.
                .filter(|e| !matches!(e.event.kind, EventKind::Access(_)))
                .flat_map(|e| e.event.paths)
                .filter(|p| !outputs.iter().any(|o| p.starts_with(o)))
                .filter_map(|p| match p.strip_prefix(&canonical) {
                    Ok(rest) => (!is_hidden(rest)).then(|| given.join(rest)),
                    Err(_) => Some(p),
                })
                .collect();
            if !paths.is_empty() {
                let _ = tx.send(paths);
            }
        }
    })
    .map_err(|e| Failure::environment(format!("cannot watch `{}`: {e}", dir.display())))?;
    debouncer
        .watch(dir, RecursiveMode::Recursive)
        .map_err(|e| Failure::environment(format!("cannot watch `{}`: {e}", dir.display())))?;

    let mut w = Watcher {
        opts: opts.clone(),
        plan_only,
        known: BTreeMap::new(),
        texts: BTreeMap::new(),
        inputs: BTreeMap::new(),
        pending: BTreeSet::new(),
        running: None,
    };
    let (stop, cancel) = watch::channel(false);
    let initial = recipe::discover(&[dir.to_owned()]).unwrap_or_default();
    w.changed(initial.into_iter().collect()).await?;
    out(&format!(
        "watching `{}` for changes (Ctrl-C to stop)\n",
        dir.display()
    ));
    // Now and then every recipe runs again even without a save: retention (gc) runs at
    // the start of each run, and drafts queued for a full TikTok inbox go out once it has room.
    let mut sweep = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| Failure::environment(format!("cannot handle SIGTERM: {e}")))?;
    let mut hangup = signal(SignalKind::hangup())
        .map_err(|e| Failure::environment(format!("cannot handle SIGHUP: {e}")))?;
    loop {
        w.start_pending(&cancel);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => break,
            _ = sweep.tick(), if !plan_only => {
                let known: Vec<PathBuf> = w.known.keys().cloned().collect();
                w.pending.extend(known);
            }
            Some(mut paths) = rx.recv() => {
                // A save that straddles two debounce windows still plans once.
                while let Ok(Some(more)) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    paths.extend(more);
                }
                let files = w.affected(&paths);
                w.changed(files).await?;
            }
            result = wait(&mut w.running) => {
                w.running = None;
                finished(result);
            }
        }
    }
    // Stop cleanly: running stages are cancelled and their jobs resume next time.
    stop.send_replace(true);
    if let Some(handle) = w.running.take() {
        finished(handle.await);
    }
    out("stopped\n");
    Ok(Outcome::Ok)
}

struct Watcher {
    opts: Options,
    plan_only: bool,
    /// The job ids of each recipe's last plan, to print what a save changed.
    known: BTreeMap<PathBuf, BTreeSet<String>>,
    /// What each recipe (and its project file) said when last planned: events that change
    /// nothing, such as a touch or a save of the same text, plan nothing.
    texts: BTreeMap<PathBuf, String>,
    /// The files and folders each recipe reads besides itself (project file, topics,
    /// music, local footage): a save of any of them plans the recipe again.
    inputs: BTreeMap<PathBuf, Vec<PathBuf>>,
    /// Valid recipes waiting for the current run to end.
    pending: BTreeSet<PathBuf>,
    running: Option<RunHandle>,
}

impl Watcher {
    /// Validates and plans the recipes whose files changed; queues the valid ones to run.
    async fn changed(&mut self, files: BTreeSet<PathBuf>) -> Result<(), Failure> {
        let (present, gone): (Vec<PathBuf>, Vec<PathBuf>) =
            files.into_iter().partition(|f| f.is_file());
        for f in gone {
            self.texts.remove(&f);
            self.inputs.remove(&f);
            if self.known.remove(&f).is_some() {
                out(&format!(
                    "recipe `{}` was removed; its jobs stay in the store\n",
                    f.display()
                ));
            }
        }
        let present: Vec<PathBuf> = present
            .into_iter()
            .filter(|f| {
                let read = inputs(f);
                let text = fingerprint(f, &read);
                self.inputs.insert(f.clone(), read);
                self.texts.insert(f.clone(), text.clone()) != Some(text)
            })
            .collect();
        if present.is_empty() {
            return Ok(());
        }
        let (ok, diags) = load_all(&present);
        report(&diags, self.opts.ci);
        // A broken file is read again on its next save, even one restoring old text.
        for d in &diags {
            self.texts.remove(&d.path);
        }
        if !diags.is_empty() {
            out(&format!(
                "{} problem{} found; other recipes and running work continue\n",
                diags.len(),
                if diags.len() == 1 { "" } else { "s" }
            ));
        }
        let store = Store::open_read_only(&self.opts.store).await?;
        for e in &ok {
            let stored = super::plan::stored(store.as_ref(), &e.recipe.name).await?;
            let p = plan::plan(
                &e.recipe.name,
                &e.recipe.path.display().to_string(),
                &e.jobs,
                &stored,
            );
            let ids: BTreeSet<String> = p.jobs.iter().map(|j| j.id.clone()).collect();
            let before = self
                .known
                .insert(e.recipe.path.clone(), ids.clone())
                .unwrap_or_default();
            // Topics and names are the user's: escaped, so no line can start a CI command.
            out(&super::escape::lines(&format!(
                "== plan {}: {} added, {} gone since the last plan\n{}",
                e.recipe.name,
                ids.difference(&before).count(),
                before.difference(&ids).count(),
                p.render(false)
            )));
            if !self.plan_only && p.jobs.iter().any(|j| j.action.runs()) {
                self.pending.insert(e.recipe.path.clone());
            }
        }
        if let Some(s) = store {
            s.close().await;
        }
        Ok(())
    }

    /// Starts a run of the queued recipes when none is running.
    fn start_pending(&mut self, cancel: &watch::Receiver<bool>) {
        if self.running.is_some() || self.pending.is_empty() {
            return;
        }
        let files: Vec<PathBuf> = std::mem::take(&mut self.pending).into_iter().collect();
        // Loaded again: the file may have changed since it was planned.
        let (ok, _) = load_all(&files);
        let ok: Vec<Expanded> = ok;
        if ok.is_empty() {
            return;
        }
        let opts = self.opts.clone();
        let cancel = cancel.clone();
        self.running = Some(tokio::spawn(
            async move { execute(ok, &opts, cancel).await },
        ));
    }
}

async fn wait(
    running: &mut Option<RunHandle>,
) -> Result<Result<(Summary, Vec<JobReport>), Failure>, tokio::task::JoinError> {
    match running {
        Some(handle) => handle.await,
        None => std::future::pending().await,
    }
}

fn finished(result: Result<Result<(Summary, Vec<JobReport>), Failure>, tokio::task::JoinError>) {
    match result {
        Ok(Ok((summary, _))) => out(&format!("run: {}", summary_line(&summary))),
        Ok(Err(f)) => eprintln!("error: {}", f.message),
        Err(e) => eprintln!("error: the run stopped: {e}"),
    }
}

/// The files and folders a recipe reads besides itself: its folder's project file (read
/// when it exists, so creating one counts), its topics file, the music and local footage
/// folders of the templates it can use. A recipe that does not load has only the first.
pub(super) fn inputs(recipe: &Path) -> Vec<PathBuf> {
    let dir = recipe
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned);
    let mut found = vec![dir.join(recipe::PROJECT_FILE)];
    if let (Some(r), _) = recipe::load_partial(recipe) {
        let inside = |rel: &str| recipe::topics::inside(&r.dir, rel).ok();
        found.extend(
            r.recipe
                .batch
                .matrix
                .topics_file
                .as_deref()
                .and_then(inside),
        );
        for t in r.templates.values() {
            found.extend(t.value.video.music.as_deref().and_then(inside));
            if let Some(m) = &t.value.music {
                found.extend(m.file.as_deref().and_then(inside));
                found.extend(m.dir.as_deref().and_then(inside));
            }
            found.extend(t.value.footage.dir.as_deref().and_then(inside));
        }
    }
    found.sort();
    found.dedup();
    found
}

/// What a recipe's plan depends on, as text: its own text, the project file's and topics
/// file's text, and the size and modification time of music and footage files.
fn fingerprint(recipe: &Path, inputs: &[PathBuf]) -> String {
    let mut text = std::fs::read_to_string(recipe).unwrap_or_default();
    for input in inputs {
        text.push_str(&format!("\n--- {}\n", input.display()));
        if input.is_dir() {
            let mut entries = Vec::new();
            walk(input, &mut entries);
            entries.sort();
            text.push_str(&entries.join("\n"));
        } else if is_text(input) {
            text.push_str(&std::fs::read_to_string(input).unwrap_or_default());
        } else {
            text.push_str(&stamp(input));
        }
    }
    text
}

fn is_text(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["yaml", "yml", "csv", "txt"].contains(&e.to_ascii_lowercase().as_str()))
}

/// A file's size and modification time: enough to see a replaced music or footage file.
fn stamp(p: &Path) -> String {
    std::fs::metadata(p).map_or_else(
        |_| "absent".into(),
        |m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            format!("{} bytes, modified {modified}", m.len())
        },
    )
}

/// Every file below `dir` with its [`stamp`]; hidden entries are skipped.
fn walk(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if is_hidden(Path::new(&entry.file_name())) {
            continue;
        }
        if path.is_dir() {
            walk(&path, out);
        } else {
            out.push(format!("{}: {}", path.display(), stamp(&path)));
        }
    }
}

/// Hidden files and folders (editor temporaries, `.factory/`, `.git/`) are nobody's input.
fn is_hidden(relative: &Path) -> bool {
    relative.components().any(|c| {
        c.as_os_str()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n != "." && n != "..")
    })
}

fn is_yaml(p: &Path) -> bool {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.ends_with(".yaml") || name.ends_with(".yml")
}

/// `a/./b` and `a/b` name the same file: paths are compared without `.` parts.
fn normal(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

impl Watcher {
    /// The recipe files a set of changed paths touches: a project file touches every
    /// recipe beside it, any other input every recipe that reads it; files of deleted
    /// recipes stay in the set so the watcher can say so.
    fn affected(&self, paths: &BTreeSet<PathBuf>) -> BTreeSet<PathBuf> {
        let mut files = BTreeSet::new();
        for p in paths {
            let changed = normal(p);
            for (recipe, inputs) in &self.inputs {
                if inputs.iter().any(|i| changed.starts_with(normal(i))) {
                    files.insert(recipe.clone());
                }
            }
            if p.file_name().is_some_and(|n| n == recipe::PROJECT_FILE) {
                if let Some(dir) = p.parent() {
                    files.extend(
                        recipe::discover(&[dir.to_owned()])
                            .unwrap_or_default()
                            .into_iter()
                            .filter(|f| f.parent() == Some(dir)),
                    );
                }
            } else if is_yaml(p) && !self.is_input(&changed) {
                files.insert(p.clone());
            }
        }
        files
    }

    /// Whether some recipe reads `path` (a YAML file inside a footage folder, say).
    fn is_input(&self, path: &Path) -> bool {
        self.inputs
            .values()
            .flatten()
            .any(|i| path.starts_with(normal(i)))
    }
}
