//! `factory report`: one static HTML page about a batch, readable offline: every image is
//! an inline `data:` URI and the CSS is inline, so the file can be mailed or archived.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde_json::Value;

use super::ci::xml_escape as esc;
use super::{CmdResult, Failure, Outcome, load_all, out, report};
use crate::media::Tools;
use crate::store::{JobFilter, Store, StoredJob, StoredStage};

/// Frames in a contact sheet, side by side.
const SHEET_FRAMES: u32 = 4;

pub async fn run(
    paths: &[PathBuf],
    out_file: &Path,
    state_dir: &Path,
    store_url: &crate::store::StoreUrl,
    cache_dir: &Path,
    picked: &(crate::plan::Selector, Option<usize>),
) -> CmdResult {
    // Without paths the report covers every recipe in the store.
    let recipes: Option<Vec<String>> = if paths.is_empty() {
        None
    } else {
        let (ok, diags) = load_all(paths);
        if report(&diags, false) {
            return Ok(Outcome::Invalid);
        }
        Some(ok.into_iter().map(|e| e.recipe.name).collect())
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
    if let Some(names) = &recipes {
        jobs.retain(|j| names.contains(&j.recipe));
    }
    jobs.retain(|j| picked.0.matches_stored(j));
    jobs.truncate(picked.1.unwrap_or(usize::MAX));
    let mut cards = String::new();
    for job in &jobs {
        // In pipeline order, as the job went.
        let stages = store.stages(&job.id).await?;
        let mut meta = Meta::default();
        for s in &stages {
            let Some(key) = &s.artifact else { continue };
            if let Some(a) = store.artifact(key).await? {
                let value: Value = serde_json::from_str(&a.meta).unwrap_or(Value::Null);
                match s.stage.as_str() {
                    "script" => meta.script = Some(value),
                    "footage" => meta.footage = Some(value),
                    "render" => {
                        meta.video = Some(cache_dir.join(&a.location));
                        meta.expires_at = a.expires_at;
                    }
                    _ => {}
                }
            }
        }
        cards.push_str(&card(&tools, job, &stages, &meta).await);
    }
    store.close().await;
    let html = page(jobs.len(), &cards);
    // The report shows the user's scripts and frames: owner-only, like the store.
    crate::privacy::permissions::write_private(out_file, html.as_bytes())
        .map_err(|e| Failure::environment(format!("cannot write `{}`: {e}", out_file.display())))?;
    out(&format!(
        "report of {} job{} written to `{}` (mode 600: readable by you only)\n",
        jobs.len(),
        if jobs.len() == 1 { "" } else { "s" },
        out_file.display()
    ));
    Ok(Outcome::Ok)
}

#[derive(Default)]
struct Meta {
    script: Option<Value>,
    footage: Option<Value>,
    video: Option<PathBuf>,
    expires_at: Option<i64>,
}

async fn card(tools: &Tools, job: &StoredJob, stages: &[StoredStage], meta: &Meta) -> String {
    let mut html = String::new();
    let status = job.status.as_str();
    let _ = write!(
        html,
        "<section class=\"job {status}\"><h2>{} <small>{} · {}</small></h2><p class=\"status\">{status}",
        esc(&job.topic),
        esc(&job.recipe),
        esc(&job.id[..job.id.len().min(12)])
    );
    if status == "failed" {
        let _ = write!(
            html,
            " in <b>{}</b>: {}",
            esc(job.stage.as_deref().unwrap_or("unknown stage")),
            esc(job.error.as_deref().unwrap_or("no error recorded"))
        );
    }
    html.push_str("</p>");
    let expired = meta.expires_at.is_some_and(|at| at <= crate::clock::now())
        || meta.video.as_ref().is_some_and(|v| !v.is_file());
    match &meta.video {
        Some(_) if expired => html.push_str("<p class=\"expired\">video expired</p>"),
        Some(video) => match contact_sheet(tools, video).await {
            Some(jpeg) => {
                let _ = write!(
                    html,
                    "<img alt=\"frames of {}\" src=\"data:image/jpeg;base64,{}\">",
                    esc(&job.topic),
                    base64::engine::general_purpose::STANDARD.encode(jpeg)
                );
            }
            None => html.push_str("<p class=\"expired\">no thumbnail</p>"),
        },
        None => {}
    }
    html.push_str("<table><tr><th>stage</th><th>status</th><th>seconds</th><th>cost</th></tr>");
    let mut spend = 0.0;
    for s in stages {
        let seconds = match (s.started_at, s.finished_at) {
            (Some(a), Some(b)) => (b - a).to_string(),
            _ => String::new(),
        };
        spend += s.cost.unwrap_or(0.0);
        let _ = write!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{seconds}</td><td>{}</td></tr>",
            esc(&s.stage),
            esc(s.status.as_str()),
            s.cost.map(|c| format!("${c:.4}")).unwrap_or_default()
        );
    }
    let _ = write!(html, "</table><p>spend: ${spend:.4}</p>");
    if let Some(script) = &meta.script {
        let text = |k: &str| script[k].as_str().unwrap_or_default().to_owned();
        let sentences: Vec<String> = script["sentences"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str().map(esc)).collect())
            .unwrap_or_default();
        let _ = write!(
            html,
            "<h3>script</h3><p><b>{}</b> {} <i>{}</i></p><h3>caption</h3><p>{}</p>",
            esc(&text("hook")),
            sentences.join(" "),
            esc(&text("cta")),
            esc(&text("caption"))
        );
    }
    if let Some(clips) = meta.footage.as_ref().and_then(Value::as_array) {
        let credits: Vec<String> = clips
            .iter()
            .filter_map(|c| c["credit"]["creator"].as_str())
            .map(esc)
            .collect();
        if !credits.is_empty() {
            let _ = write!(html, "<h3>credits</h3><p>{}</p>", credits.join(", "));
        }
    }
    html.push_str("</section>\n");
    html
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

fn page(count: usize, cards: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>factory report</title>\n<style>\
body{{font:15px/1.4 sans-serif;margin:2em;color:#222}}\
.job{{border:1px solid #ccc;border-radius:6px;padding:1em;margin:1em 0}}\
.job.failed{{border-color:#c33;background:#fff5f5}}\
.status{{font-weight:bold}}.expired{{color:#a60;font-style:italic}}\
img{{display:block;max-width:100%;margin:.5em 0}}\
table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:2px 8px;text-align:left}}\
</style></head><body><h1>factory report</h1><p>{count} job{}</p>\n{cards}</body></html>\n",
        if count == 1 { "" } else { "s" }
    )
}
