//! The engine: runs jobs stage by stage — script → footage → voice → captions → render
//! → host → draft → notify — with per-stage concurrency budgets, the shared retry
//! policy, the artifact cache, and every transition recorded in the store.

pub mod cache;
pub mod keys;
pub mod progress;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use crate::expand::Job;
use crate::media::Tools;
use crate::plan::Action;
use crate::providers::{
    Clip, DraftRequest, EffectLog, EffectProgress, FootageRequest, HostRequest, Narration, Notice,
    ProviderError, RetryPolicy, Script, ScriptRequest, VoiceRequest,
};
use crate::stages::{self, Stage};
use crate::store::{NewJob, Status, Store};
use cache::{Cache, Hit, stage_key};
use progress::Progress;

/// How many of each kind of stage may run at once.
#[derive(Debug, Clone, Copy)]
pub struct Budgets {
    pub scripts: usize,
    pub footage: usize,
    pub voices: usize,
    pub renders: usize,
    pub publish: usize,
}

impl Default for Budgets {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            scripts: 4,
            footage: cores,
            voices: cores,
            renders: (cores / 2).max(1),
            publish: 2,
        }
    }
}

struct Limits {
    scripts: Semaphore,
    footage: Semaphore,
    voices: Semaphore,
    renders: Semaphore,
    publish: Semaphore,
}

/// What a run did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Jobs finished in this run.
    pub done: usize,
    /// Of those, jobs whose every stage came from the cache.
    pub reused: usize,
    /// Jobs already done before this run (nothing executed).
    pub already_done: usize,
    pub failed: usize,
    /// Jobs waiting for room in the TikTok account; they go out in a later run.
    pub queued: usize,
    pub interrupted: usize,
    /// Stages that actually executed (not cache hits).
    pub executed_stages: usize,
    pub wall_seconds: f64,
}

pub struct Engine {
    pub store: Store,
    pub providers: stages::Providers,
    pub cache: Cache,
    pub tools: Tools,
    pub state_dir: PathBuf,
    pub progress: Arc<Progress>,
    pub retry: RetryPolicy,
    limits: Limits,
    flights: Flights,
    cancel: watch::Receiver<bool>,
}

/// One recipe's jobs, with where the recipe lives.
pub struct Batch {
    pub recipe: String,
    pub recipe_path: PathBuf,
    pub dir: PathBuf,
    pub jobs: Vec<(Job, Action)>,
}

#[derive(Debug)]
enum JobEnd {
    Done { executed: usize },
    Queued,
    Failed,
    Interrupted,
}

impl Engine {
    pub fn new(
        store: Store,
        tools: Tools,
        providers: stages::Providers,
        state_dir: PathBuf,
        progress: Arc<Progress>,
        budgets: Budgets,
        cancel: watch::Receiver<bool>,
    ) -> Self {
        Self {
            providers,
            cache: Cache::new(state_dir.join("cache")),
            store,
            tools,
            state_dir,
            progress,
            retry: RetryPolicy::default(),
            limits: Limits {
                scripts: Semaphore::new(budgets.scripts),
                footage: Semaphore::new(budgets.footage),
                voices: Semaphore::new(budgets.voices),
                renders: Semaphore::new(budgets.renders),
                publish: Semaphore::new(budgets.publish),
            },
            flights: Flights::default(),
            cancel,
        }
    }

    /// Runs every job that has work; done jobs are skipped without touching a stage.
    pub async fn run(self: &Arc<Self>, batches: Vec<Batch>) -> Summary {
        let started = Instant::now();
        let mut summary = Summary::default();
        // A previous run that crashed left rows marked running; they resume now.
        let _ = self.store.interrupt_running().await;
        let mut tasks = tokio::task::JoinSet::new();
        for batch in batches {
            let info = Arc::new(BatchInfo {
                recipe: batch.recipe,
                recipe_path: batch.recipe_path,
                dir: batch.dir,
            });
            for (job, action) in batch.jobs {
                if !action.runs() {
                    summary.already_done += 1;
                    continue;
                }
                let engine = Arc::clone(self);
                let info = Arc::clone(&info);
                tasks.spawn(async move { engine.run_job(&info, &job).await });
            }
        }
        while let Some(result) = tasks.join_next().await {
            match result {
                Ok(JobEnd::Done { executed }) => {
                    summary.done += 1;
                    summary.executed_stages += executed;
                    if executed == 0 {
                        summary.reused += 1;
                    }
                }
                Ok(JobEnd::Failed) | Err(_) => summary.failed += 1,
                Ok(JobEnd::Interrupted) => summary.interrupted += 1,
                Ok(JobEnd::Queued) => summary.queued += 1,
            }
        }
        self.progress.finish();
        summary.wall_seconds = started.elapsed().as_secs_f64();
        summary
    }

    async fn run_job(&self, b: &BatchInfo, job: &Job) -> JobEnd {
        let id = job.id.to_string();
        let spec_json = serde_json::to_string(&job.spec).unwrap_or_default();
        let new = NewJob {
            id: &id,
            recipe: &b.recipe,
            recipe_path: &b.recipe_path.to_string_lossy(),
            cell: &job.cell,
            spec: &spec_json,
            topic: &job.spec.topic,
            voice: &job.spec.voice_name,
            status: Status::Pending,
        };
        if let Err(e) = self.store.upsert_job(&new).await {
            self.progress.job(
                &b.recipe,
                &id,
                &job.spec.topic,
                "failed",
                Some(&e.to_string()),
            );
            return JobEnd::Failed;
        }
        let mut run = JobRun {
            engine: self,
            b,
            job,
            id: id.clone(),
            executed: 0,
        };
        match run.stages().await {
            Ok(()) => {
                let _ = self.store.set_status(&id, Status::Done, None, None).await;
                self.progress
                    .job(&b.recipe, &id, &job.spec.topic, "done", None);
                JobEnd::Done {
                    executed: run.executed,
                }
            }
            Err((stage, StageError::Queued(message))) => {
                let _ = self
                    .store
                    .set_status(&id, Status::Queued, Some(stage.name()), Some(&message))
                    .await;
                self.progress
                    .job(&b.recipe, &id, &job.spec.topic, "queued", Some(&message));
                JobEnd::Queued
            }
            Err((stage, StageError::Cancelled)) => {
                let _ = self
                    .store
                    .set_status(&id, Status::Interrupted, Some(stage.name()), None)
                    .await;
                self.progress.job(
                    &b.recipe,
                    &id,
                    &job.spec.topic,
                    "interrupted",
                    Some(stage.name()),
                );
                JobEnd::Interrupted
            }
            Err((stage, StageError::Failed(message))) => {
                let _ = self
                    .store
                    .set_status(&id, Status::Failed, Some(stage.name()), Some(&message))
                    .await;
                self.progress.job(
                    &b.recipe,
                    &id,
                    &job.spec.topic,
                    "failed",
                    Some(&format!("at `{}`: {message}", stage.name())),
                );
                JobEnd::Failed
            }
        }
    }
}

struct BatchInfo {
    recipe: String,
    recipe_path: PathBuf,
    dir: PathBuf,
}

#[derive(Debug)]
enum StageError {
    Failed(String),
    /// Waiting for room (the TikTok account's pending-draft cap); goes out in a later run.
    Queued(String),
    Cancelled,
}

impl From<ProviderError> for StageError {
    fn from(e: ProviderError) -> Self {
        match e {
            ProviderError::Cancelled => Self::Cancelled,
            other if crate::providers::tiktok::is_pending_draft_cap(&other) => {
                Self::Queued(other.to_string())
            }
            other => Self::Failed(other.to_string()),
        }
    }
}

struct JobRun<'a> {
    engine: &'a Engine,
    b: &'a BatchInfo,
    job: &'a Job,
    id: String,
    executed: usize,
}

type StageResult<T> = Result<T, (Stage, StageError)>;

impl JobRun<'_> {
    async fn stages(&mut self) -> StageResult<()> {
        let spec = &self.job.spec;
        let e = self.engine;

        // script
        let script_key = keys::script_key(spec);
        let script_hit = self
            .cached_or_run(
                Stage::Script,
                &script_key,
                &e.limits.scripts,
                None,
                |work| async move {
                    let writer = e.providers.script_writer(&spec.script)?;
                    let request = ScriptRequest {
                        topic: spec.topic.clone(),
                        prompt: spec.script.prompt.clone().unwrap_or_default(),
                        seconds: spec.script.seconds,
                        cta: spec.script.cta.clone(),
                        models: spec.script.models.clone(),
                        temperature: spec.script.temperature,
                        seed: spec.script.seed,
                    };
                    let script = e.retry.run(|_| writer.write(&request)).await?;
                    let value = json!(script);
                    write_json(&work.join("script.json"), &value).await?;
                    Ok((
                        "script.json".to_owned(),
                        value,
                        script.usage.as_ref().and_then(|u| u.cost),
                    ))
                },
            )
            .await?;
        let script: Script = from_meta(&script_hit, Stage::Script)?;
        let script = &script;
        let job_id = self.id.clone();
        let job_id = &job_id;

        // footage
        let variant = keys::footage_variant(spec);
        let footage_key = keys::footage_key(spec);
        let dir = self.b.dir.clone();
        let footage_hit = self
            .cached_or_run(
                Stage::Footage,
                &footage_key,
                &e.limits.footage,
                None,
                |work| {
                    let dir = dir.clone();
                    async move {
                        let source = e.providers.footage_source(&spec.footage, &dir)?;
                        let clips = spec.footage.clips.max(1);
                        let request = FootageRequest {
                            query: spec
                                .footage
                                .query
                                .clone()
                                .unwrap_or_else(|| spec.topic.clone()),
                            clips,
                            min_clip_seconds: (f64::from(spec.script.seconds) / f64::from(clips))
                                .max(2.0),
                            avoid: Vec::new(),
                            variant,
                        };
                        let clips = e.retry.run(|_| source.fetch(&request, &work)).await?;
                        let manifest = json!(clips);
                        write_json(&work.join("clips.json"), &manifest).await?;
                        Ok(("clips.json".to_owned(), manifest, None))
                    }
                },
            )
            .await?;
        let clips: Vec<Clip> = from_meta(&footage_hit, Stage::Footage)?;
        let clips = &clips;

        // voice
        let voice_key = keys::voice_key(spec, &script.spoken());
        let voice_hit = self
            .cached_or_run(
                Stage::Voice,
                &voice_key,
                &e.limits.voices,
                None,
                |work| async move {
                    let voice = e.providers.voice(&spec.voice)?;
                    let request = VoiceRequest {
                        lines: script.spoken().into_iter().map(str::to_owned).collect(),
                    };
                    let narration = e.retry.run(|_| voice.speak(&request, &work)).await?;
                    let main = narration
                        .audio
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Ok((main, json!(narration), None))
                },
            )
            .await?;
        let narration: Narration = from_meta(&voice_hit, Stage::Voice)?;
        let narration = &narration;

        // captions
        let captions_key = stage_key("captions", 1, &[&json!(spec.captions), &json!(voice_key)]);
        let captions_hit = self
            .cached_or_run(Stage::Captions, &captions_key, &e.limits.voices, None, |work| async move {
                let ass = stages::captions(&spec.captions, &narration.words);
                tokio::fs::write(work.join("captions.ass"), ass).await.map_err(|e| StageError::Failed(e.to_string()))?;
                Ok(("captions.ass".to_owned(), json!({ "file": "captions.ass", "enabled": spec.captions.style != crate::recipe::CaptionStyleName::None }), None))
            })
            .await?;

        // render
        let music = match &spec.video.music {
            Some(m) => Some(
                file_digest(&self.b.dir.join(m))
                    .await
                    .map_err(|err| (Stage::Render, StageError::Failed(err)))?,
            ),
            None => None,
        };
        let render_key = stage_key(
            "render",
            1,
            &[
                &json!(spec.video),
                &json!(footage_key),
                &json!(voice_key),
                &json!(captions_key),
                &json!(music),
            ],
        );
        let expires = crate::clock::now() + i64::from(spec.publish.retention_days) * 86_400;
        let dir = self.b.dir.clone();
        let render_hit = self
            .cached_or_run(
                Stage::Render,
                &render_key,
                &e.limits.renders,
                Some(expires),
                |work| {
                    let dir = dir.clone();
                    let captions = (captions_hit.meta["enabled"] == Value::Bool(true))
                        .then(|| captions_hit.dir.join("captions.ass"));
                    async move {
                        let out = work.join("video.mp4");
                        stages::render(&e.tools, spec, clips, narration, captions, &dir, &out)
                            .await?;
                        Ok((
                            "video.mp4".to_owned(),
                            json!({ "file": "video.mp4", "seconds": narration.duration }),
                            None,
                        ))
                    }
                },
            )
            .await?;
        let video = render_hit.dir.join("video.mp4");

        // host, draft, notify: side effects, recorded in the ledger.
        let host_key = stage_key("host", 1, &[&json!(render_key), &json!(spec.publish.host)]);
        let hosted = self
            .effect(Stage::Host, &host_key, |_log| {
                let video = video.clone();
                let key = format!("{}/{job_id}.mp4", spec.recipe);
                async move {
                    let host = e.providers.host(&spec.publish)?;
                    let request = HostRequest {
                        path: video,
                        key,
                        content_type: "video/mp4".into(),
                        expires_at: expires,
                    };
                    let hosted = e.retry.run(|_| host.put(&request)).await?;
                    Ok(json!(hosted))
                }
            })
            .await?;

        let title = spec.title.clone();
        let caption = spec
            .caption
            .clone()
            .unwrap_or_else(|| script.caption.clone());
        let hashtags: Vec<String> = if spec.hashtags.is_empty() {
            script
                .hashtags
                .iter()
                .map(|h| h.trim_start_matches('#').to_owned())
                .collect()
        } else {
            spec.hashtags.clone()
        };
        let credits: Vec<_> = clips.iter().filter_map(|c| c.credit.clone()).collect();
        let draft_key = stage_key(
            "draft",
            1,
            &[
                &json!(render_key),
                &json!([&title, &caption, &hashtags]),
                &json!(spec.publish.tiktok),
            ],
        );
        let draft = self
            .effect(Stage::Draft, &draft_key, |log| {
                let request = DraftRequest {
                    video: video.clone(),
                    job_id: job_id.clone(),
                    recipe: spec.recipe.clone(),
                    account: spec
                        .publish
                        .tiktok
                        .as_ref()
                        .map(|t| t.account.clone())
                        .unwrap_or_default(),
                    title: title.clone(),
                    caption: caption.clone(),
                    hashtags: hashtags.clone(),
                    credits: credits.clone(),
                };
                async move {
                    let drafts = e.providers.drafts(&spec.publish)?;
                    let receipt = e.retry.run(|_| drafts.send(&request, &*log)).await?;
                    Ok(json!(receipt))
                }
            })
            .await?;

        let notify_key = stage_key("notify", 1, &[&json!(draft_key), &json!(spec.notify)]);
        self.effect(Stage::Notify, &notify_key, |_log| {
            let text = stages::notice_text(
                &title,
                &caption,
                &hashtags,
                &credits,
                hosted["url"].as_str().unwrap_or_default(),
                draft["external_id"].as_str().unwrap_or_default(),
            );
            async move {
                let notifier = e.providers.notifier(spec.notify.as_ref())?;
                let notice = Notice {
                    chat: spec
                        .notify
                        .as_ref()
                        .and_then(|n| n.telegram.as_ref())
                        .map(|t| t.chat.clone())
                        .unwrap_or_default(),
                    text,
                };
                let id = e.retry.run(|_| notifier.send(&notice)).await?;
                Ok(json!({ "message_id": id }))
            }
        })
        .await?;
        Ok(())
    }

    /// Returns the cached artifact for `key`, or runs `body` in a fresh work directory,
    /// commits its output to the cache and records the stage.
    async fn cached_or_run<F, Fut>(
        &mut self,
        stage: Stage,
        key: &str,
        limit: &Semaphore,
        expires: Option<i64>,
        body: F,
    ) -> StageResult<Hit>
    where
        F: FnOnce(PathBuf) -> Fut,
        Fut: Future<Output = Result<(String, Value, Option<f64>), StageError>>,
    {
        let e = self.engine;
        let fail = |err: String| (stage, StageError::Failed(err));
        // One builder per key: a second job wanting the same artifact waits and reuses it.
        let _flight = e.flights.lock(key).await;
        if let Some(hit) = e
            .cache
            .get(&e.store, stage.name(), key)
            .await
            .map_err(|x| fail(x.to_string()))?
        {
            self.record_cached(stage, key, Some(key)).await?;
            return Ok(hit);
        }
        let _permit = limit.acquire().await.map_err(|x| fail(x.to_string()))?;
        self.begin(stage, key).await?;
        let work = e
            .cache
            .workdir(stage.name(), key)
            .await
            .map_err(|x| fail(x.to_string()))?;
        let result = match self.guarded(stage, body(work.clone())).await {
            Ok((main, meta, cost)) => e
                .cache
                .commit(&e.store, stage.name(), key, &work, &main, &meta, expires)
                .await
                .map(|hit| (hit, cost))
                .map_err(|x| StageError::Failed(x.to_string())),
            Err(err) => Err(err),
        };
        if result.is_err() {
            let _ = tokio::fs::remove_dir_all(&work).await;
        }
        let (hit, _cost) = self.end(stage, key, Some(key), result).await?;
        Ok(hit)
    }

    /// Runs a side effect at most once per content key: the ledger is written before the
    /// call and after it; a `done` row means it already happened and is not repeated.
    async fn effect<F, Fut>(&mut self, stage: Stage, key: &str, body: F) -> StageResult<Value>
    where
        F: FnOnce(Arc<Ledger>) -> Fut,
        Fut: Future<Output = Result<Value, StageError>>,
    {
        let e = self.engine;
        let fail = |err: String| (stage, StageError::Failed(err));
        let _flight = e.flights.lock(key).await;
        let existing = e.store.effect(key).await.map_err(|x| fail(x.to_string()))?;
        if let Some(done) = existing.as_ref().filter(|x| x.status == "done") {
            self.record_cached(stage, key, None).await?;
            return Ok(done
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default());
        }
        let _permit = e
            .limits
            .publish
            .acquire()
            .await
            .map_err(|x| fail(x.to_string()))?;
        self.begin(stage, key).await?;
        let previous = existing.and_then(|x| {
            let phase = x
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .and_then(|v| v["phase"].as_str().map(str::to_owned))?;
            Some(EffectProgress {
                external_id: x.external_id,
                phase,
                data: Value::Null,
            })
        });
        e.store
            .record_effect(key, &self.id, stage.name(), "started", None, None)
            .await
            .map_err(|x| fail(x.to_string()))?;
        let ledger = Arc::new(Ledger {
            store: e.store.clone(),
            key: key.to_owned(),
            job: self.id.clone(),
            kind: stage.name(),
            previous,
        });
        let result = self.guarded(stage, body(ledger)).await;
        if let Ok(value) = &result {
            let detail = value.to_string();
            let external = value
                .get("external_id")
                .or_else(|| value.get("location"))
                .and_then(Value::as_str);
            e.store
                .record_effect(key, &self.id, stage.name(), "done", external, Some(&detail))
                .await
                .map_err(|x| fail(x.to_string()))?;
        }
        let (value, ()) = self.end(stage, key, None, result.map(|v| (v, ()))).await?;
        Ok(value)
    }

    /// A stage is about to execute: cancellation checked, transition recorded.
    async fn begin(&self, stage: Stage, key: &str) -> StageResult<()> {
        let e = self.engine;
        let fail = |err: String| (stage, StageError::Failed(err));
        if *e.cancel.borrow() {
            return Err((stage, StageError::Cancelled));
        }
        e.store
            .set_status(&self.id, Status::Running, Some(stage.name()), None)
            .await
            .map_err(|x| fail(x.to_string()))?;
        e.store
            .stage_started(&self.id, stage.name(), key)
            .await
            .map_err(|x| fail(x.to_string()))?;
        self.report(stage, "running", None);
        Ok(())
    }

    /// Runs a stage body until it ends, the run is stopped, or the stage's time is up.
    async fn guarded<T>(
        &self,
        stage: Stage,
        body: impl Future<Output = Result<T, StageError>>,
    ) -> Result<T, StageError> {
        let mut cancel = self.engine.cancel.clone();
        let limit = stage_timeout(stage);
        tokio::select! {
            r = tokio::time::timeout(limit, body) => r.unwrap_or_else(|_| Err(StageError::Failed(format!("timed out after {} s", limit.as_secs())))),
            _ = cancel.wait_for(|c| *c) => Err(StageError::Cancelled),
        }
    }

    /// Records how an executed stage ended.
    async fn end<T, C>(
        &mut self,
        stage: Stage,
        key: &str,
        artifact: Option<&str>,
        result: Result<(T, C), StageError>,
    ) -> StageResult<(T, C)>
    where
        C: Cost,
    {
        let e = self.engine;
        match result {
            Ok((value, cost)) => {
                self.executed += 1;
                e.store
                    .stage_finished(
                        &self.id,
                        stage.name(),
                        key,
                        "done",
                        artifact,
                        None,
                        cost.cost(),
                    )
                    .await
                    .map_err(|x| (stage, StageError::Failed(x.to_string())))?;
                self.report(stage, "done", None);
                Ok((value, cost))
            }
            Err(err) => {
                let (status, message) = match &err {
                    StageError::Cancelled => ("interrupted", None),
                    StageError::Queued(m) => ("queued", Some(m.as_str())),
                    StageError::Failed(m) => ("failed", Some(m.as_str())),
                };
                let _ = e
                    .store
                    .stage_finished(&self.id, stage.name(), key, status, None, message, None)
                    .await;
                self.report(stage, status, message);
                Err((stage, err))
            }
        }
    }

    async fn record_cached(
        &self,
        stage: Stage,
        key: &str,
        artifact: Option<&str>,
    ) -> StageResult<()> {
        self.engine
            .store
            .stage_finished(&self.id, stage.name(), key, "cached", artifact, None, None)
            .await
            .map_err(|x| (stage, StageError::Failed(x.to_string())))?;
        self.report(stage, "cached", None);
        Ok(())
    }

    fn report(&self, stage: Stage, status: &str, detail: Option<&str>) {
        self.engine.progress.stage(
            &self.b.recipe,
            &self.id,
            &self.job.spec.topic,
            stage.name(),
            status,
            detail,
        );
    }
}

/// What a stage spent, when it reports a cost.
trait Cost {
    fn cost(&self) -> Option<f64>;
}

impl Cost for Option<f64> {
    fn cost(&self) -> Option<f64> {
        *self
    }
}

impl Cost for () {
    fn cost(&self) -> Option<f64> {
        None
    }
}

/// How long one stage may take before it counts as hung: renders are long, the rest short.
fn stage_timeout(stage: Stage) -> std::time::Duration {
    std::time::Duration::from_secs(match stage {
        Stage::Render => 3_600,
        Stage::Draft | Stage::Host => 1_800,
        _ => 900,
    })
}

/// Per-key locks, so one artifact or effect is built once even when several jobs need
/// it at the same moment (two voices sharing one script).
#[derive(Default)]
struct Flights {
    keys: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Flights {
    async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut keys = self
                .keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            Arc::clone(keys.entry(key.to_owned()).or_default())
        };
        lock.lock_owned().await
    }
}

/// The ledger handle a side effect records its progress through.
pub struct Ledger {
    store: Store,
    key: String,
    job: String,
    kind: &'static str,
    pub previous: Option<EffectProgress>,
}

#[async_trait::async_trait]
impl EffectLog for Ledger {
    async fn progress(&self) -> Result<Option<EffectProgress>, ProviderError> {
        Ok(self.previous.clone())
    }

    async fn record(&self, progress: &EffectProgress) -> Result<(), ProviderError> {
        let detail = json!({ "phase": progress.phase }).to_string();
        self.store
            .record_effect(
                &self.key,
                &self.job,
                self.kind,
                "started",
                progress.external_id.as_deref(),
                Some(&detail),
            )
            .await
            .map_err(|e| ProviderError::permanent("store", e.to_string()))
    }
}

fn from_meta<T: serde::de::DeserializeOwned>(hit: &Hit, stage: Stage) -> StageResult<T> {
    serde_json::from_value(hit.meta.clone()).map_err(|e| {
        (
            stage,
            StageError::Failed(format!("cached {} output is unreadable: {e}", stage.name())),
        )
    })
}

async fn write_json(path: &Path, value: &Value) -> Result<(), StageError> {
    tokio::fs::write(path, serde_json::to_vec_pretty(value).unwrap_or_default())
        .await
        .map_err(|e| StageError::Failed(format!("cannot write `{}`: {e}", path.display())))
}

async fn file_digest(path: &Path) -> Result<String, String> {
    use sha2::{Digest, Sha256};
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}
