//! Progress: bars on a terminal, one plain line per transition when stderr is not a
//! terminal or under CI, JSON lines for machines.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Bars,
    Plain,
    Json,
}

impl Mode {
    /// Bars only for a person at a terminal; CI (`CI` set or `--ci`) and pipes get
    /// plain lines.
    pub fn detect(json: bool, ci: bool) -> Self {
        if json {
            Self::Json
        } else if !ci && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none() {
            Self::Bars
        } else {
            Self::Plain
        }
    }
}

pub struct Progress {
    mode: Mode,
    multi: MultiProgress,
    overall: ProgressBar,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

impl Progress {
    pub fn new(mode: Mode, total_jobs: u64) -> Self {
        let multi = MultiProgress::with_draw_target(if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let overall = multi.add(ProgressBar::new(total_jobs));
        overall.set_style(
            ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} jobs  {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        overall.set_prefix("factory");
        Self {
            mode,
            multi,
            overall,
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// A stage of a job changed state: `running`, `done`, `cached`, `failed`, `interrupted`.
    pub fn stage(
        &self,
        recipe: &str,
        job: &str,
        topic: &str,
        stage: &str,
        status: &str,
        detail: Option<&str>,
    ) {
        match self.mode {
            Mode::Json => line_out(&json!({"event": "stage", "recipe": recipe, "job": job, "stage": stage, "status": status, "detail": detail}).to_string()),
            Mode::Plain => line_err(&format!(
                "{recipe} {} {stage}: {status}{}",
                short(job),
                detail.map(|d| format!(" ({d})")).unwrap_or_default()
            )),
            Mode::Bars => {
                let mut bars = self.bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let bar = bars.entry(job.to_owned()).or_insert_with(|| {
                    let b = self.multi.insert_before(&self.overall, ProgressBar::new_spinner());
                    b.set_style(ProgressStyle::with_template("  {spinner} {prefix} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()));
                    b.set_prefix(format!("{} {}", short(job), topic));
                    b.enable_steady_tick(Duration::from_millis(120));
                    b
                });
                bar.set_message(format!("{stage}: {status}"));
            }
        }
    }

    /// A job finished: `done`, `failed`, `queued` or `interrupted`.
    pub fn job(&self, recipe: &str, job: &str, topic: &str, status: &str, detail: Option<&str>) {
        match self.mode {
            Mode::Json => line_out(&json!({"event": "job", "recipe": recipe, "job": job, "topic": topic, "status": status, "detail": detail}).to_string()),
            Mode::Plain => line_err(&format!(
                "{recipe} {} job {status}: {topic}{}",
                short(job),
                detail.map(|d| format!(" — {d}")).unwrap_or_default()
            )),
            Mode::Bars => {
                if let Some(bar) = self.bars.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(job) {
                    bar.finish_and_clear();
                }
                let _ = self.multi.println(format!("{status:>9} {} {topic}{}", short(job), detail.map(|d| format!(" — {d}")).unwrap_or_default()));
            }
        }
        self.overall.inc(1);
    }

    /// A free-form line (warnings, notices).
    pub fn note(&self, text: &str) {
        match self.mode {
            Mode::Json => line_out(&json!({"event": "note", "text": text}).to_string()),
            Mode::Plain => line_err(text),
            Mode::Bars => {
                let _ = self.multi.println(text);
            }
        }
    }

    pub fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn line_err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{text}");
}

fn line_out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}");
}
