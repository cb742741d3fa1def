//! Progress, rendered from the engine's events: bars on a terminal, one plain line per
//! transition when stderr is not a terminal or under CI, JSON lines for machines. Every
//! line goes through the bars' own printer, so notices never tear them.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, JobRef, Sink, StageStatus};
use crate::stages::Stage;

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
        if mode == Mode::Bars {
            overall.enable_steady_tick(Duration::from_millis(500));
        }
        Self {
            mode,
            multi,
            overall,
            bars: Mutex::new(HashMap::new()),
        }
    }

    /// A free-form line (warnings, notices), above the bars.
    pub fn note(&self, text: &str) {
        match self.mode {
            Mode::Json => line_out(&serde_json::json!({"event": "note", "text": text}).to_string()),
            Mode::Plain => line_err(text),
            Mode::Bars => {
                let _ = self.multi.println(text);
            }
        }
    }

    fn bar(&self, job: &JobRef) -> ProgressBar {
        let mut bars = self
            .bars
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bars.entry(job.id.clone())
            .or_insert_with(|| {
                let b = self
                    .multi
                    .insert_before(&self.overall, ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("  {spinner} {prefix} {msg}  {elapsed}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                b.set_prefix(who(job));
                b.enable_steady_tick(Duration::from_millis(120));
                b
            })
            .clone()
    }

    fn plain(event: &Event) -> String {
        match event {
            Event::Stage {
                job,
                stage,
                status,
                detail,
            } => format!(
                "{} {} stage {}/8 {stage}: {}{}",
                job.recipe,
                who(job),
                stage.number(),
                status.as_str(),
                detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            ),
            Event::Queued { job, stage } => format!(
                "{} {} stage {}/8 {stage}: waiting for a {} slot",
                job.recipe,
                who(job),
                stage.number(),
                slot(*stage)
            ),
            Event::Retry {
                job,
                stage,
                attempt,
                wait_ms,
                error,
            } => format!(
                "{} {} `{stage}`: attempt {attempt} in {:.1} s after: {error}",
                job.recipe,
                who(job),
                *wait_ms as f64 / 1000.0
            ),
            Event::Waiting {
                job,
                stage,
                until,
                reason,
            } => format!(
                "{} {} `{stage}`: waiting until {}: {reason}",
                job.recipe,
                who(job),
                crate::clock::format(*until)
            ),
            Event::Rebuild { job, stage, reason } => format!(
                "{} {} stage {}/8 {stage}: the kept copy failed verification and is made again: {reason}",
                job.recipe,
                who(job),
                stage.number()
            ),
            Event::Job {
                job,
                status,
                stage,
                detail,
            } => format!(
                "{} {} job {}: \"{}\" ({}){}{}",
                job.recipe,
                short(&job.id),
                status.as_str(),
                job.topic,
                job.voice,
                stage.map(|s| format!(" at `{s}`")).unwrap_or_default(),
                detail
                    .as_deref()
                    .map(|d| format!(" — {d}"))
                    .unwrap_or_default()
            ),
            Event::Note { text } => text.clone(),
        }
    }
}

impl Sink for Progress {
    fn emit(&self, event: &Event) {
        match self.mode {
            Mode::Json => {
                line_out(&serde_json::to_string(event).unwrap_or_default());
                if matches!(event, Event::Job { .. }) {
                    self.overall.inc(1);
                }
            }
            Mode::Plain => {
                line_err(&Self::plain(event));
                if matches!(event, Event::Job { .. }) {
                    self.overall.inc(1);
                }
            }
            Mode::Bars => match event {
                Event::Stage {
                    job, stage, status, ..
                } if *status == StageStatus::Running => {
                    self.bar(job)
                        .set_message(format!("stage {}/8 {stage}", stage.number()));
                }
                Event::Queued { job, stage } => {
                    self.bar(job).set_message(format!(
                        "stage {}/8 {stage}: waiting for a {} slot",
                        stage.number(),
                        slot(*stage)
                    ));
                }
                Event::Stage { .. } => {}
                Event::Job { job, .. } => {
                    if let Some(bar) = self
                        .bars
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .remove(&job.id)
                    {
                        bar.finish_and_clear();
                    }
                    let _ = self.multi.println(Self::plain(event));
                    self.overall.inc(1);
                }
                _ => {
                    let _ = self.multi.println(Self::plain(event));
                }
            },
        }
    }

    fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

/// A job as a person tells it apart: short id, topic and voice.
fn who(job: &JobRef) -> String {
    format!("{} \"{}\" ({})", short(&job.id), job.topic, job.voice)
}

fn short(id: &str) -> &str {
    &id[..id.len().min(8)]
}

fn slot(stage: Stage) -> &'static str {
    match stage.lane() {
        crate::engine::Lane::Cpu => "render",
        crate::engine::Lane::Llm => "script",
        crate::engine::Lane::Tts => "voice",
        crate::engine::Lane::Fetch => "download",
        crate::engine::Lane::Publish => "publishing",
        crate::engine::Lane::Inline => "free",
    }
}

fn line_err(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = writeln!(e, "{text}");
}

fn line_out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}");
}
