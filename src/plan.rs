//! The plan: what a run would do, per job, against what the store remembers. Pure: it
//! takes the expanded jobs and the stored rows and decides; it never touches the store.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::expand::Job;
use crate::store::{Status, StoredJob};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Not in the store: the whole pipeline runs.
    New,
    /// The same matrix cell was run with a different spec: runs again, reusing cached
    /// stages whose inputs did not change.
    Changed,
    /// Known and not finished (pending, queued or interrupted): resumes.
    Resume,
    /// Failed before: resumes at the failed stage.
    Failed,
    /// Finished; nothing to do.
    Done,
    /// In the store but no longer in the recipe. Its record is kept.
    Removed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New => "new",
            Self::Changed => "changed",
            Self::Resume => "resume",
            Self::Failed => "failed",
            Self::Done => "done",
            Self::Removed => "removed",
        }
    }

    /// Whether `run` has work to do for this job.
    pub fn runs(self) -> bool {
        matches!(
            self,
            Self::New | Self::Changed | Self::Resume | Self::Failed
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedJob {
    pub id: String,
    pub action: Action,
    pub topic: String,
    pub voice: String,
    pub template: String,
    /// Why, in words: "resumes at `render`", "replaces 3f2a…".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub new: usize,
    pub changed: usize,
    pub resume: usize,
    pub failed: usize,
    pub done: usize,
    pub removed: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecipePlan {
    pub recipe: String,
    pub path: String,
    pub counts: Counts,
    pub jobs: Vec<PlannedJob>,
}

pub fn plan(recipe: &str, path: &str, jobs: &[Job], stored: &[StoredJob]) -> RecipePlan {
    let by_id: HashMap<&str, &StoredJob> = stored.iter().map(|s| (s.id.as_str(), s)).collect();
    let mut by_cell: HashMap<&str, Vec<&StoredJob>> = HashMap::new();
    for s in stored {
        by_cell.entry(s.cell.as_str()).or_default().push(s);
    }
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(jobs.len());
    let mut counts = Counts::default();
    for job in jobs {
        let id = job.id.to_string();
        let (action, reason, stage) = if let Some(s) = by_id.get(id.as_str()) {
            claimed.insert(s.id.as_str());
            match s.status {
                Status::Done => (Action::Done, None, None),
                Status::Failed => (
                    Action::Failed,
                    Some(format!(
                        "resumes at `{}`{}",
                        s.stage.as_deref().unwrap_or("script"),
                        s.error
                            .as_deref()
                            .map(|e| format!(": {}", first_line(e)))
                            .unwrap_or_default()
                    )),
                    s.stage.clone(),
                ),
                Status::Queued => (
                    Action::Resume,
                    Some("queued: waiting for room in the TikTok account".into()),
                    s.stage.clone(),
                ),
                Status::Pending | Status::Running | Status::Interrupted => (
                    Action::Resume,
                    Some(format!(
                        "{}; resumes at `{}`",
                        s.status.as_str(),
                        s.stage.as_deref().unwrap_or("script")
                    )),
                    s.stage.clone(),
                ),
            }
        } else if let Some(olds) = by_cell.get(job.cell.as_str()) {
            let old = olds
                .iter()
                .max_by_key(|o| o.updated_at)
                .map(|o| o.id.as_str())
                .unwrap_or_default();
            for o in olds {
                claimed.insert(o.id.as_str());
            }
            (Action::Changed, Some(format!("replaces {old}")), None)
        } else {
            (Action::New, None, None)
        };
        bump(&mut counts, action);
        out.push(PlannedJob {
            id,
            action,
            topic: job.spec.topic.clone(),
            voice: job.spec.voice_name.clone(),
            template: job.spec.template.clone(),
            reason,
            stage,
        });
    }
    for s in stored {
        if claimed.contains(s.id.as_str()) {
            continue;
        }
        let template = serde_json::from_str::<[String; 3]>(&s.cell)
            .map(|[_, _, t]| t)
            .unwrap_or_default();
        bump(&mut counts, Action::Removed);
        out.push(PlannedJob {
            id: s.id.clone(),
            action: Action::Removed,
            topic: s.topic.clone(),
            voice: s.voice.clone(),
            template,
            reason: Some(format!(
                "no longer in the recipe; last {}",
                s.status.as_str()
            )),
            stage: None,
        });
    }
    RecipePlan {
        recipe: recipe.to_owned(),
        path: path.to_owned(),
        counts,
        jobs: out,
    }
}

fn bump(c: &mut Counts, a: Action) {
    match a {
        Action::New => c.new += 1,
        Action::Changed => c.changed += 1,
        Action::Resume => c.resume += 1,
        Action::Failed => c.failed += 1,
        Action::Done => c.done += 1,
        Action::Removed => c.removed += 1,
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

impl RecipePlan {
    /// The human table.
    pub fn render(&self) -> String {
        let c = &self.counts;
        let mut out = format!(
            "{} ({}): {} new, {} changed, {} to resume, {} failed, {} done, {} removed\n",
            self.recipe, self.path, c.new, c.changed, c.resume, c.failed, c.done, c.removed
        );
        for j in &self.jobs {
            out.push_str(&format!(
                "  {:<8} {}  {} · {} · {}{}\n",
                j.action.as_str(),
                j.id,
                j.topic,
                j.voice,
                j.template,
                j.reason
                    .as_deref()
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default()
            ));
        }
        out
    }
}
