//! Progress, rendered from the engine's events: bars on a terminal, one plain line per
//! transition when stderr is not a terminal or under CI, JSON lines for machines. Every
//! line goes through the bars' own printer, so notices never tear them.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::{Event, JobEnd, JobRef, Sink, StageStatus};
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
    eta: Mutex<Eta>,
    /// Colour the lines that end a job (a terminal without `NO_COLOR`).
    colour: bool,
    /// Under GitHub Actions, each job's lines are kept until it ends and printed as one
    /// folded `::group::`, so concurrent jobs never interleave inside a group.
    groups: Option<Mutex<HashMap<String, Vec<String>>>>,
}

/// How much of a run's work is behind it, weighed by how long each stage took in past
/// runs (every stage alike when the store has no history yet).
#[derive(Debug)]
pub struct Eta {
    started: Instant,
    weights: [f64; 8],
    total: f64,
    /// Per job: the weight of its stages that ended.
    done: HashMap<String, f64>,
}

impl Eta {
    /// `durations`: average seconds per stage name, from the store.
    pub fn new(jobs: u64, durations: &HashMap<String, f64>) -> Self {
        let known: Vec<f64> = durations.values().copied().filter(|d| *d > 0.0).collect();
        // A stage without history weighs as much as the average one that has it.
        let fallback = if known.is_empty() {
            1.0
        } else {
            known.iter().sum::<f64>() / known.len() as f64
        };
        let weights = Stage::ALL.map(|s| {
            durations
                .get(s.as_str())
                .copied()
                .filter(|d| *d > 0.0)
                .unwrap_or(fallback)
                // Even an instant stage is a step: a run of them still moves.
                .max(0.05)
        });
        Self {
            started: Instant::now(),
            total: weights.iter().sum::<f64>() * jobs as f64,
            weights,
            done: HashMap::new(),
        }
    }

    pub fn stage_ended(&mut self, job: &str, stage: Stage) {
        *self.done.entry(job.to_owned()).or_default() += self.weights[stage.number() - 1];
    }

    /// A job that ended, however far it got, leaves nothing of its own to do.
    pub fn job_ended(&mut self, job: &str) {
        self.done
            .insert(job.to_owned(), self.weights.iter().sum::<f64>());
    }

    /// The time left at this pace, once there is a pace to go by.
    pub fn left(&self, elapsed: Duration) -> Option<Duration> {
        let done: f64 = self.done.values().sum();
        if done <= 0.0 || self.total <= 0.0 {
            return None;
        }
        let left = (self.total - done).max(0.0) / done * elapsed.as_secs_f64();
        Some(Duration::from_secs_f64(left))
    }
}

/// `1h02m`, `4m05s`, `12s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, _) => format!("{h}h{m:02}m"),
    }
}

impl Progress {
    /// Progress for `total_jobs`, with past stage durations (by stage name) for the ETA.
    pub fn with_history(mode: Mode, total_jobs: u64, durations: &HashMap<String, f64>) -> Self {
        let multi = MultiProgress::with_draw_target(if mode == Mode::Bars {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        let overall = multi.add(ProgressBar::new(total_jobs));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:.bold} [{bar:30}] {pos}/{len} jobs  {elapsed} elapsed{msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        overall.set_prefix("factory");
        if mode == Mode::Bars {
            overall.enable_steady_tick(Duration::from_millis(500));
        }
        let colour =
            mode == Mode::Bars && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let groups = (mode == Mode::Plain
            && std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true"))
        .then(|| Mutex::new(HashMap::new()));
        Self {
            mode,
            multi,
            overall,
            bars: Mutex::new(HashMap::new()),
            eta: Mutex::new(Eta::new(total_jobs, durations)),
            colour,
            groups,
        }
    }

    /// A plain line; inside a job's group when there are groups.
    fn plain_line(&self, event: &Event) {
        let text = Self::plain(event);
        let Some(groups) = &self.groups else {
            return line_err(&text);
        };
        let mut groups = groups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Job { job, .. } => {
                let lines = groups.remove(&job.id).unwrap_or_default();
                // The group's title is made of user strings: one line, and `::` cannot
                // end the command early.
                let title = super::escape::ci_data(&format!("{} {}", job.recipe, who(job)));
                let mut block = format!("::group::{title}\n");
                for l in lines {
                    block.push_str(&l);
                    block.push('\n');
                }
                block.push_str("::endgroup::\n");
                block.push_str(&text);
                line_err(&block);
            }
            Event::Note { .. } => line_err(&text),
            Event::Stage { job, .. }
            | Event::Queued { job, .. }
            | Event::Retry { job, .. }
            | Event::Waiting { job, .. }
            | Event::Rebuild { job, .. } => {
                groups.entry(job.id.clone()).or_default().push(text);
            }
        }
    }

    /// Counts an event towards the ETA and shows the time left on the overall bar.
    fn track(&self, event: &Event) {
        let mut eta = self
            .eta
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Stage {
                job,
                stage,
                status: StageStatus::Done | StageStatus::Cached,
                ..
            } => {
                eta.stage_ended(&job.id, *stage);
            }
            Event::Job { job, .. } => eta.job_ended(&job.id),
            _ => return,
        }
        if self.mode == Mode::Bars
            && let Some(left) = eta.left(eta.started.elapsed())
        {
            self.overall
                .set_message(format!(", about {} left", clock(left)));
        }
    }

    /// A job's last line, green when done and red when failed at a terminal.
    fn ended(&self, event: &Event) -> String {
        let text = Self::plain(event);
        let colour = match event {
            Event::Job { status, .. } if self.colour => match status {
                JobEnd::Done => Some("\u{1b}[32m"),
                JobEnd::Failed => Some("\u{1b}[31m"),
                JobEnd::Deferred | JobEnd::Interrupted => Some("\u{1b}[33m"),
            },
            _ => None,
        };
        match colour {
            Some(c) => format!("{c}{text}\u{1b}[0m"),
            None => text,
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

    /// One line per event, whatever the topic, voice or a service's error holds: every
    /// control character shows as a symbol, so no error can start a new line (or a CI
    /// workflow command).
    fn plain(event: &Event) -> String {
        super::escape::plain(&Self::line(event)).into_owned()
    }

    fn line(event: &Event) -> String {
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
                "{} {} job {}: \"{}\" (voice {}){}{}",
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
        self.track(event);
        match self.mode {
            Mode::Json => {
                line_out(&serde_json::to_string(event).unwrap_or_default());
                if matches!(event, Event::Job { .. }) {
                    self.overall.inc(1);
                }
            }
            Mode::Plain => {
                self.plain_line(event);
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
                    let _ = self.multi.println(self.ended(event));
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

/// A job as a person tells it apart: short id, topic and voice. The voice is labelled,
/// so a voice named like a stage (`render`) never reads as one.
fn who(job: &JobRef) -> String {
    format!("{} \"{}\" (voice {})", short(&job.id), job.topic, job.voice)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_goes_by_past_stage_durations() {
        let mut durations = HashMap::new();
        durations.insert("render".to_owned(), 30.0);
        durations.insert("script".to_owned(), 1.0);
        let mut eta = Eta::new(2, &durations);
        assert_eq!(eta.left(Duration::from_secs(5)), None);
        // Stages without history weigh as the average of those with it (15.5 s).
        eta.stage_ended("a", Stage::Script);
        let total = 2.0 * (30.0 + 1.0 + 15.5 * 6.0);
        let left = eta.left(Duration::from_secs(1)).unwrap().as_secs_f64();
        assert!((left - (total - 1.0)).abs() < 1e-6, "{left}");
        eta.job_ended("a");
        eta.job_ended("b");
        assert_eq!(eta.left(Duration::from_secs(60)), Some(Duration::ZERO));
    }

    #[test]
    fn a_voice_named_like_a_stage_is_labelled_as_a_voice() {
        let job = JobRef {
            recipe: "r".into(),
            id: "0123456789abcdef".into(),
            topic: "Owls".into(),
            voice: "render".into(),
        };
        let line = Progress::plain(&Event::Stage {
            job,
            stage: Stage::Render,
            status: StageStatus::Running,
            detail: None,
        });
        assert_eq!(
            line,
            "r 01234567 \"Owls\" (voice render) stage 5/8 render: running"
        );
    }

    /// A service's error with a newline printed as two lines, the second one free to be a
    /// workflow command in a CI log.
    #[test]
    fn an_error_with_newlines_stays_on_one_plain_line() {
        let job = JobRef {
            recipe: "r".into(),
            id: "0123456789abcdef".into(),
            topic: "Owls\n::warning::x".into(),
            voice: "a".into(),
        };
        let line = Progress::plain(&Event::Job {
            job,
            status: JobEnd::Failed,
            stage: Some(Stage::Footage),
            detail: Some("moov atom not found\n::error::injected".into()),
        });
        assert!(!line.contains('\n'), "{line:?}");
        assert!(line.contains("moov atom not found"), "{line:?}");
    }

    #[test]
    fn clock_reads_like_a_person_says_it() {
        assert_eq!(clock(Duration::from_secs(12)), "12s");
        assert_eq!(clock(Duration::from_secs(245)), "4m05s");
        assert_eq!(clock(Duration::from_secs(3720)), "1h02m");
    }
}
