//! `factory report`: one static HTML page about a batch, readable offline: contact
//! sheets are inline `data:` URIs, the CSS is inline, and each video plays from its local
//! file. Rendered from `report.html` (minijinja, HTML autoescape): every value a recipe or
//! a service wrote is escaped.
//!
//! A summary first, then the failed jobs, then the rest; older versions of a job are
//! behind a toggle. Contact sheets are kept by render key, so a second report is quick.

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;

use super::{CmdResult, Failure, Outcome, load_all, out, report};
use crate::media::Tools;
use crate::store::{EffectStatus, JobFilter, Status, Store, StoredJob, StoredStage};

/// Frames in a contact sheet, side by side.
const SHEET_FRAMES: u32 = 4;

const TEMPLATE: &str = include_str!("report.html");

pub async fn run(
    paths: &[PathBuf],
    out_file: &Path,
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    cache_dir: &Path,
    picked: &(crate::plan::Selector, Option<usize>),
) -> CmdResult {
    // Without paths the report covers every recipe in the store.
    let recipes: Option<(BTreeSet<String>, BTreeSet<String>)> = if paths.is_empty() {
        None
    } else {
        let (ok, diags) = load_all(paths);
        if report(&diags, false) {
            return Ok(Outcome::Invalid);
        }
        let names = ok.iter().map(|e| e.recipe.name.clone()).collect();
        let ids = ok
            .iter()
            .flat_map(|e| e.jobs.iter().map(|j| j.id.to_string()))
            .collect();
        Some((names, ids))
    };
    let tools = Tools::detect().map_err(|missing| Failure::environment(missing.to_string()))?;
    let Some(store) = Store::open_read_only(store_url).await? else {
        return Err(Failure::invalid(format!(
            "no job store in `{}`",
            super::store_place(state_dir, store_url)
        ))
        .with_hint("run `factory run` first"));
    };
    let mut jobs = store.list_jobs(&JobFilter::default()).await?;
    if let Some((names, _)) = &recipes {
        jobs.retain(|j| names.contains(&j.recipe));
    }
    jobs.retain(|j| picked.0.matches_stored(j));
    jobs.truncate(picked.1.unwrap_or(usize::MAX));
    let current = current_ids(&jobs, recipes.as_ref().map(|(_, ids)| ids));
    let sheets = Sheets::new(state_dir, &tools);
    let progress = Progress::new(jobs.len());
    let mut cards = Vec::with_capacity(jobs.len());
    let mut totals = Totals::default();
    for (n, job) in jobs.iter().enumerate() {
        progress.show(n + 1, &job.topic);
        let stages = store.stages(&job.id).await?;
        let card = card(&store, cache_dir, &sheets, job, &stages).await?;
        if current.contains(&job.id) {
            totals.add(job, &stages);
        }
        cards.push(card);
    }
    progress.done();
    store.close().await;
    let (mut current_cards, superseded): (Vec<Card>, Vec<Card>) =
        cards.into_iter().partition(|c| current.contains(&c.id));
    // Failures first; otherwise the store's order (oldest first).
    current_cards.sort_by_key(|c| c.status != Status::Failed.as_str());
    let html = render(&totals.summary(), &current_cards, &superseded)
        .map_err(|e| Failure::environment(format!("cannot render the report: {e}")))?;
    // The report shows the user's scripts and frames: owner-only, like the store.
    crate::privacy::permissions::write_private(out_file, html.as_bytes())
        .map_err(|e| Failure::environment(format!("cannot write `{}`: {e}", out_file.display())))?;
    out(&format!(
        "report of {} job{}{} written to `{}` (mode 600: readable by you only)\n",
        current_cards.len(),
        if current_cards.len() == 1 { "" } else { "s" },
        if superseded.is_empty() {
            String::new()
        } else {
            format!(" ({} superseded)", superseded.len())
        },
        out_file.display()
    ));
    Ok(Outcome::Ok)
}

fn render(summary: &SummaryView, current: &[Card], superseded: &[Card]) -> Result<String, String> {
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_filter("url", url_filter);
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| e.to_string())?;
    env.get_template("report.html")
        .and_then(|t| {
            t.render(minijinja::context! {
                summary => summary,
                current => current,
                superseded => superseded,
            })
        })
        .map_err(|e| e.to_string())
}

/// A `data:` or percent-encoded `file://` URL as it is, once it is known to hold none of
/// the characters HTML would escape (`/` included, which would bloat every sheet six
/// times over); anything else is escaped like any value.
fn url_filter(url: String) -> minijinja::Value {
    if url
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "+/=:;,.-_~%".contains(c))
    {
        minijinja::Value::from_safe_string(url)
    } else {
        minijinja::Value::from(url)
    }
}

/// The jobs that are the current version of their matrix cell: with recipes given, the
/// jobs they expand to; otherwise the newest job of each cell.
fn current_ids(jobs: &[StoredJob], expanded: Option<&BTreeSet<String>>) -> BTreeSet<String> {
    if let Some(ids) = expanded {
        return jobs
            .iter()
            .filter(|j| ids.contains(&j.id))
            .map(|j| j.id.clone())
            .collect();
    }
    let mut newest: BTreeMap<(&str, &str), &StoredJob> = BTreeMap::new();
    for job in jobs {
        let entry = newest.entry((&job.recipe, &job.cell)).or_insert(job);
        if (job.created_at, &job.id) > (entry.created_at, &entry.id) {
            *entry = job;
        }
    }
    newest.values().map(|j| j.id.clone()).collect()
}

/// One job as the template shows it.
#[derive(Debug, Serialize)]
struct Card {
    id: String,
    short_id: String,
    recipe: String,
    topic: String,
    voice: String,
    status: &'static str,
    failed_stage: Option<String>,
    error: Option<String>,
    deferred_until: Option<String>,
    expired: bool,
    /// A `file://` URL of the video on this machine.
    video: Option<String>,
    /// The contact sheet as a `data:` URI.
    sheet: Option<String>,
    title: Option<String>,
    caption: Option<String>,
    hashtags: Vec<String>,
    credits: Vec<String>,
    draft: Option<String>,
    spend: String,
    stages: Vec<StageRow>,
}

#[derive(Debug, Serialize)]
struct StageRow {
    stage: String,
    status: &'static str,
    seconds: String,
    cost: String,
}

async fn card(
    store: &Store,
    cache_dir: &Path,
    sheets: &Sheets<'_>,
    job: &StoredJob,
    stages: &[StoredStage],
) -> Result<Card, Failure> {
    let spec: Value = serde_json::from_str(&store.job_spec(&job.id).await?).unwrap_or_default();
    let mut script = Value::Null;
    let mut credits_of_footage = Vec::new();
    let mut render: Option<(String, PathBuf, Option<i64>)> = None;
    let mut render_recorded = false;
    for s in stages {
        let Some(key) = &s.artifact else { continue };
        if s.stage == "render" {
            render_recorded = true;
        }
        let Some(a) = store.artifact(key).await? else {
            continue;
        };
        let meta: Value = serde_json::from_str(&a.meta).unwrap_or(Value::Null);
        match s.stage.as_str() {
            "script" => script = meta,
            "footage" => {
                credits_of_footage = meta
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| credit(&c["credit"]))
                    .collect();
            }
            "render" => render = Some((a.key.clone(), cache_dir.join(&a.location), a.expires_at)),
            _ => {}
        }
    }
    let draft = delivered_draft(store, &job.id).await?;
    // The words the creator pastes: the draft's sidecar has them as they were sent.
    let sidecar: Value = draft
        .as_ref()
        .and_then(|d| std::fs::read(Path::new(d).with_extension("json")).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let now = crate::clock::now();
    let render_file = render
        .as_ref()
        .filter(|(_, path, expires)| expires.is_none_or(|at| at > now) && path.is_file());
    let expired = render_recorded && render_file.is_none();
    let local_draft = draft
        .as_ref()
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.is_file());
    let video = match (&local_draft, render_file) {
        _ if expired => None,
        (Some(d), _) => Some(file_url(d)),
        (None, Some((_, path, _))) => Some(file_url(path)),
        (None, None) => None,
    };
    let sheet = match render_file {
        Some((key, path, _)) => sheets.get(key, path).await,
        None => None,
    };
    let text = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned);
    let caption = text(&sidecar["caption"])
        .or_else(|| text(&spec["caption"]))
        .or_else(|| text(&script["caption"]));
    let hashtags: Vec<String> = match sidecar["hashtags"].as_array() {
        Some(tags) => tags.iter().filter_map(text).collect(),
        None => spec["hashtags"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(text)
            .map(|h| format!("#{}", h.trim_start_matches('#')))
            .collect(),
    };
    let credits = match sidecar["credits"].as_array() {
        Some(c) => c.iter().filter_map(credit).collect(),
        None => credits_of_footage,
    };
    // From 0.0, not `sum()`'s -0.0, which would print as `$-0.0000`.
    let spend = stages.iter().filter_map(|s| s.cost).fold(0.0, |a, c| a + c);
    Ok(Card {
        id: job.id.clone(),
        short_id: job.id.chars().take(8).collect(),
        recipe: job.recipe.clone(),
        topic: job.topic.clone(),
        voice: job.voice.clone(),
        status: job.status.as_str(),
        failed_stage: (job.status == Status::Failed)
            .then(|| job.stage.clone().unwrap_or_else(|| "unknown stage".into())),
        error: (job.status == Status::Failed).then(|| {
            job.error
                .clone()
                .unwrap_or_else(|| "no error recorded".into())
        }),
        deferred_until: job.deferred_until.map(crate::clock::format),
        expired,
        video,
        sheet,
        title: text(&sidecar["title"]).or_else(|| text(&spec["title"])),
        caption,
        hashtags,
        credits,
        draft,
        spend: format!("{spend:.4}"),
        stages: stages
            .iter()
            .map(|s| StageRow {
                stage: s.stage.clone(),
                status: s.status.as_str(),
                seconds: match (s.started_at, s.finished_at) {
                    (Some(a), Some(b)) => (b - a).to_string(),
                    _ => String::new(),
                },
                cost: s.cost.map(|c| format!("${c:.4}")).unwrap_or_default(),
            })
            .collect(),
    })
}

/// `Creator (link)` from a stored credit.
fn credit(c: &Value) -> Option<String> {
    let creator = c["creator"].as_str()?;
    Some(match c["url"].as_str() {
        Some(url) if !url.is_empty() => format!("{creator} ({url})"),
        _ => creator.to_owned(),
    })
}

/// Where the job's draft went: a local path, or TikTok's id for it.
async fn delivered_draft(store: &Store, job: &str) -> Result<Option<String>, Failure> {
    Ok(store
        .effects_of_job(job)
        .await?
        .into_iter()
        .filter(|e| e.kind == "draft" && e.status == EffectStatus::Done.as_str())
        .filter_map(|e| e.external_id)
        .next_back())
}

/// A `file://` URL for an absolute path, with the characters a URL cannot hold encoded.
fn file_url(path: &Path) -> String {
    let abs = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mut url = String::from("file://");
    for b in abs.to_string_lossy().bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            url.push(char::from(b));
        } else {
            url.push_str(&format!("%{b:02X}"));
        }
    }
    url
}

/// Counts and totals over the current jobs.
#[derive(Default)]
struct Totals {
    done: usize,
    failed: usize,
    queued: usize,
    spend: f64,
    first_start: Option<i64>,
    last_finish: Option<i64>,
}

#[derive(Serialize)]
struct SummaryView {
    done: usize,
    failed: usize,
    queued: usize,
    spend: String,
    wall: String,
}

impl Totals {
    fn add(&mut self, job: &StoredJob, stages: &[StoredStage]) {
        match job.status {
            Status::Done => self.done += 1,
            Status::Failed => self.failed += 1,
            _ => self.queued += 1,
        }
        for s in stages {
            self.spend += s.cost.unwrap_or(0.0);
            if let Some(a) = s.started_at {
                self.first_start = Some(self.first_start.map_or(a, |f| f.min(a)));
            }
            if let Some(b) = s.finished_at {
                self.last_finish = Some(self.last_finish.map_or(b, |l| l.max(b)));
            }
        }
    }

    fn summary(&self) -> SummaryView {
        let wall = match (self.first_start, self.last_finish) {
            (Some(a), Some(b)) if b >= a => duration(b - a),
            _ => "-".to_owned(),
        };
        SummaryView {
            done: self.done,
            failed: self.failed,
            queued: self.queued,
            spend: format!("{:.4}", self.spend),
            wall,
        }
    }
}

/// `45 s`, `3 min 5 s`, `2 h 4 min`.
fn duration(seconds: i64) -> String {
    match seconds {
        s if s < 60 => format!("{s} s"),
        s if s < 3_600 => format!("{} min {} s", s / 60, s % 60),
        s => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
    }
}

/// Contact sheets, kept by render key in `STATE_DIR/sheets/` (owner-only): a render never
/// changes under its key, so neither does its sheet.
struct Sheets<'a> {
    dir: PathBuf,
    tools: &'a Tools,
}

impl<'a> Sheets<'a> {
    fn new(state_dir: &Path, tools: &'a Tools) -> Self {
        Self {
            dir: state_dir.join("sheets"),
            tools,
        }
    }

    /// The sheet as a `data:` URI; made (and kept) when missing.
    async fn get(&self, render_key: &str, video: &Path) -> Option<String> {
        let kept = self.dir.join(format!("{render_key}.jpg"));
        let jpeg = match std::fs::read(&kept) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            _ => {
                let bytes = contact_sheet(self.tools, video).await?;
                // A sheet that cannot be kept is made again next time; the report goes on.
                if crate::privacy::permissions::private_dir(&self.dir).is_ok() {
                    let part = self.dir.join(format!(".{render_key}.jpg.part"));
                    if crate::privacy::permissions::write_private(&part, &bytes).is_ok() {
                        let _ = std::fs::rename(&part, &kept);
                    }
                }
                bytes
            }
        };
        Some(format!(
            "data:image/jpeg;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(jpeg)
        ))
    }
}

/// A strip of frames sampled evenly from the video, as one JPEG.
async fn contact_sheet(tools: &Tools, video: &Path) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().ok()?;
    let sheet = dir.path().join("sheet.jpg");
    let seconds = crate::media::probe(tools, video).await.ok()?.duration;
    let rate = f64::from(SHEET_FRAMES) / seconds.max(0.1);
    let status = tokio::process::Command::new(&tools.ffmpeg)
        .args(["-v", "error", "-y", "-i"])
        .arg(video)
        .args([
            "-vf",
            &format!("fps={rate:.4},scale=180:-2,tile={SHEET_FRAMES}x1"),
            "-frames:v",
            "1",
            "-q:v",
            "5",
        ])
        .arg(&sheet)
        .status()
        .await
        .ok()?;
    if !status.success() {
        return None;
    }
    std::fs::read(&sheet).ok()
}

/// `report: 3/21 Black holes` on a terminal, rewritten in place; nothing otherwise.
struct Progress {
    total: usize,
    terminal: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            terminal: std::io::stderr().is_terminal(),
        }
    }

    fn show(&self, n: usize, topic: &str) {
        if self.terminal {
            let topic: String = super::escape::plain(topic).chars().take(40).collect();
            eprint!("\r\x1b[Kreport: job {n}/{} {topic}", self.total);
        }
    }

    fn done(&self) {
        if self.terminal && self.total > 0 {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_urls_encode_what_a_url_cannot_hold() {
        assert_eq!(
            file_url(Path::new("/tmp/no such dir/a&b <c>.mp4")),
            "file:///tmp/no%20such%20dir/a%26b%20%3Cc%3E.mp4"
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(duration(45), "45 s");
        assert_eq!(duration(185), "3 min 5 s");
        assert_eq!(duration(7_440), "2 h 4 min");
    }

    #[test]
    fn values_a_recipe_wrote_are_escaped() {
        let card = Card {
            id: "0123456789abcdef".into(),
            short_id: "01234567".into(),
            recipe: "r".into(),
            topic: "<script>alert(1)</script>".into(),
            voice: "a".into(),
            status: "done",
            failed_stage: None,
            error: None,
            deferred_until: None,
            expired: false,
            video: Some("file:///v.mp4\" onerror=\"x".into()),
            sheet: Some("data:image/jpeg;base64,ab/c+d==".into()),
            title: Some("Salt & pepper".into()),
            caption: None,
            hashtags: vec![],
            credits: vec![],
            draft: None,
            spend: "0.0000".into(),
            stages: vec![],
        };
        let summary = Totals::default().summary();
        let html = render(&summary, &[card], &[]).unwrap();
        assert!(!html.contains("$-0"), "{html}");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
            "{html}"
        );
        assert!(html.contains("Salt &amp; pepper"));
        assert!(!html.contains("\" onerror=\""), "{html}");
        assert!(
            html.contains("src=\"data:image/jpeg;base64,ab/c+d==\""),
            "{html}"
        );
        assert!(
            !html.contains("<details"),
            "no superseded toggle without superseded jobs"
        );
    }
}
