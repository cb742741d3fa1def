//! `factory preview JOB`: a quick low-resolution render of one job, to look at before a
//! batch. Script, footage and narration come from (and go to) the artifact store, so a
//! preview never pays twice for what the batch will use; the render is small and its own;
//! nothing is hosted, delivered or announced, and the job's record is left alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::progress::{Mode, Progress};
use super::run::{Options, lock_state, stop_on_signals};
use super::{CmdResult, Failure, Outcome, load_all, out, report};
use crate::artifacts::ArtifactStore;
use crate::engine::{Budgets, Engine, Halt, JobInput, JobRun, Settings, Sink};
use crate::media::Tools;
use crate::registry::Registry;
use crate::store::Store;

/// The preview's frame: a quarter of the pixels, at TikTok's lowest frame rate.
pub const SIZE: &str = "540x960";
pub const FPS: u32 = 24;

/// The stages up to the render; the video it made.
#[derive(Default)]
struct Preview {
    video: Mutex<Option<PathBuf>>,
}

#[async_trait::async_trait]
impl crate::engine::Pipeline for Preview {
    async fn run(&self, job: &mut JobRun<'_>) -> Result<(), Halt> {
        let video = crate::stages::render_job(job).await?.video;
        *self
            .video
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(video);
        Ok(())
    }
}

pub async fn run(job: &str, paths: &[PathBuf], opts: &Options) -> CmdResult {
    let prefix = crate::store::job_prefix(job)?;
    let (mut ok, diags) = load_all(paths);
    if super::why::find_current(&ok, &prefix)?.is_none() {
        // A job of the store whose recipe lives elsewhere.
        if let Some(store) = Store::open_read_only(&opts.store).await? {
            let found = store.find_job(&prefix).await;
            let path = match &found {
                Ok(j) => store.recipe_path(&j.recipe).await?,
                Err(_) => None,
            };
            store.close().await;
            if let Some(path) = path {
                let (more, d) = load_all(&[PathBuf::from(path)]);
                if report(&d, opts.ci) {
                    return Ok(Outcome::Invalid);
                }
                ok.extend(more);
            }
        }
    }
    let Some((expanded, found)) = super::why::find_current(&ok, &prefix)? else {
        report(&diags, opts.ci);
        return Err(
            Failure::invalid(format!("no job `{prefix}` in the recipes")).with_hint(
                "`factory plan` lists the current jobs; a preview is of a job as the recipe holds it now",
            ),
        );
    };
    let mut job = found.clone();
    SIZE.clone_into(&mut job.spec.video.size);
    job.spec.video.fps = FPS;
    let input = JobInput {
        recipe: expanded.recipe.name.clone(),
        recipe_path: expanded.recipe.path.clone(),
        dir: expanded.recipe.dir.clone(),
        job,
    };
    let id = found.id.to_string();
    let tools = Tools::detect().map_err(|missing| Failure::environment(missing.to_string()))?;
    let _locks = lock_state(opts, "preview").await?;
    let artifacts =
        ArtifactStore::open(&opts.cache_dir()).map_err(|e| Failure::environment(e.to_string()))?;
    // The preview's own store, thrown away: the job's history and status stay as they were.
    let scratch = tempfile::Builder::new()
        .prefix("preview-")
        .tempdir_in(&opts.state_dir)
        .map_err(|e| Failure::environment(format!("cannot make a scratch folder: {e}")))?;
    let store = Store::open(scratch.path()).await?;
    let versions = tools.versions().await;
    let services = Arc::new(Registry::new(
        tools,
        versions,
        scratch.path().to_owned(),
        store.clone(),
    ));
    let progress = Arc::new(Progress::with_history(
        Mode::detect(opts.json, opts.ci),
        1,
        &HashMap::new(),
    ));
    let pipeline = Arc::new(Preview::default());
    let (cancel, watcher) = stop_on_signals();
    let engine = Arc::new(Engine::new(
        store.clone(),
        artifacts,
        services,
        Arc::clone(&pipeline) as Arc<dyn crate::engine::Pipeline>,
        Arc::clone(&progress) as Arc<dyn Sink>,
        Budgets::default(),
        Settings {
            record_jobs: false,
            ..Settings::default()
        },
        cancel,
    ));
    let summary = engine.run(vec![input], 0).await;
    watcher.abort();
    store.close().await;
    let video = pipeline
        .video
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    let Some(video) = video.filter(|_| summary.done == 1) else {
        return Ok(Outcome::JobsFailed);
    };
    let to = keep(&opts.state_dir, &expanded.recipe.name, &id, &video)?;
    out(&format!(
        "preview of {id} ({SIZE}, {FPS} fps, not a draft): {}\n",
        super::escape::plain(&to.display().to_string())
    ));
    Ok(Outcome::Ok)
}

/// Copies the render out of the artifact store (whose entries are not to be touched)
/// to `STATE_DIR/previews/<recipe>-<short id>.mp4`, user-only.
fn keep(state_dir: &Path, recipe: &str, id: &str, video: &Path) -> Result<PathBuf, Failure> {
    let dir = state_dir.join("previews");
    let fail = |e: std::io::Error| {
        Failure::environment(format!(
            "cannot keep the preview in `{}`: {e}",
            dir.display()
        ))
    };
    crate::privacy::permissions::private_dir(&dir).map_err(fail)?;
    let to = dir.join(format!("{recipe}-{}.mp4", &id[..id.len().min(8)]));
    std::fs::copy(video, &to).map_err(fail)?;
    crate::privacy::permissions::private_file(&to).map_err(fail)?;
    Ok(to)
}
