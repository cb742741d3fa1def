//! `factory status`: the shared queue — waiting, running (which worker, which stage,
//! since when), deferred (until when, why), failed — and how many are done.

use super::worker::QueueArgs;
use super::{CmdResult, Outcome, out, out_json};
use crate::store::queue::{QueueState, QueuedJob};

pub async fn run(queue: &QueueArgs, json: bool) -> CmdResult {
    let queue = queue.connect(2).await?;
    let jobs = queue
        .jobs()
        .await
        .map_err(|e| super::Failure::environment(e.to_string()));
    queue.close().await;
    let jobs = jobs?;
    if json {
        out_json(&serde_json::json!({
            "counts": counts(&jobs),
            "jobs": jobs,
        }));
    } else {
        out(&render(&jobs, crate::clock::now()));
    }
    Ok(Outcome::Ok)
}

fn counts(jobs: &[QueuedJob]) -> serde_json::Value {
    let count = |s: QueueState| jobs.iter().filter(|j| j.state == s).count();
    serde_json::json!({
        "waiting": count(QueueState::Waiting),
        "running": count(QueueState::Running),
        "deferred": count(QueueState::Deferred),
        "failed": count(QueueState::Failed),
        "done": count(QueueState::Done),
    })
}

/// The human form: one section per state that has jobs, done as a count.
fn render(jobs: &[QueuedJob], now: i64) -> String {
    let mut text = String::new();
    let of = |s: QueueState| jobs.iter().filter(move |j| j.state == s);
    let ago = |since: i64| {
        let secs = (now - since).max(0);
        if secs < 120 {
            format!("{secs} s")
        } else {
            format!("{} min", secs / 60)
        }
    };
    let waiting: Vec<_> = of(QueueState::Waiting).collect();
    if !waiting.is_empty() {
        text.push_str(&format!("waiting ({})\n", waiting.len()));
        for j in waiting {
            text.push_str(&format!(
                "  {}  {}  {}  for a {} slot, {}\n",
                j.job,
                j.recipe,
                j.topic,
                j.phase.as_str(),
                ago(j.since)
            ));
        }
    }
    let running: Vec<_> = of(QueueState::Running).collect();
    if !running.is_empty() {
        text.push_str(&format!("running ({})\n", running.len()));
        for j in running {
            text.push_str(&format!(
                "  {}  {}  {}  on `{}` at `{}` since {} ({} ago), attempt {}\n",
                j.job,
                j.recipe,
                j.topic,
                j.worker.as_deref().unwrap_or("?"),
                j.stage.as_deref().unwrap_or("start"),
                crate::clock::format(j.since),
                ago(j.since),
                j.attempt
            ));
        }
    }
    let deferred: Vec<_> = of(QueueState::Deferred).collect();
    if !deferred.is_empty() {
        text.push_str(&format!("deferred ({})\n", deferred.len()));
        for j in deferred {
            text.push_str(&format!(
                "  {}  {}  {}  until {}: {}\n",
                j.job,
                j.recipe,
                j.topic,
                j.until.map_or_else(|| "?".to_owned(), crate::clock::format),
                j.why.as_deref().unwrap_or("waiting for a budget")
            ));
        }
    }
    let failed: Vec<_> = of(QueueState::Failed).collect();
    if !failed.is_empty() {
        text.push_str(&format!("failed ({})\n", failed.len()));
        for j in failed {
            text.push_str(&format!(
                "  {}  {}  {}  at `{}`: {}\n",
                j.job,
                j.recipe,
                j.topic,
                j.stage.as_deref().unwrap_or("?"),
                j.why.as_deref().unwrap_or("")
            ));
        }
    }
    let done = of(QueueState::Done).count();
    text.push_str(&format!(
        "{done} done; {} on the queue\n",
        jobs.len() - done
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::queue::Phase;

    fn job(id: &str, state: QueueState) -> QueuedJob {
        QueuedJob {
            job: id.to_owned(),
            recipe: "space".to_owned(),
            topic: "Mars".to_owned(),
            state,
            phase: Phase::Render,
            worker: Some("box-1".to_owned()),
            stage: Some("render".to_owned()),
            attempt: 2,
            since: 1_000,
            until: Some(4_600),
            why: Some("tiktok inits for `main`: 6 per minute".to_owned()),
        }
    }

    #[test]
    fn status_names_the_worker_and_stage_of_running_jobs_and_why_deferred_ones_wait() {
        let text = render(
            &[
                job("aaaa000000000001", QueueState::Running),
                job("aaaa000000000002", QueueState::Deferred),
                job("aaaa000000000003", QueueState::Done),
            ],
            1_030,
        );
        assert!(
            text.contains("running (1)\n  aaaa000000000001  space  Mars  on `box-1` at `render`"),
            "{text}"
        );
        assert!(text.contains("(30 s ago), attempt 2"), "{text}");
        assert!(
            text.contains("deferred (1)\n  aaaa000000000002  space  Mars  until "),
            "{text}"
        );
        assert!(
            text.contains(": tiktok inits for `main`: 6 per minute"),
            "{text}"
        );
        assert!(text.ends_with("1 done; 2 on the queue\n"), "{text}");
        assert!(!text.contains("waiting ("), "{text}");
    }
}
