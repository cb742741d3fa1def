//! The pipeline through the engine, in-process: scripted services (succeed, fail once,
//! fail for good, hang, panic, lose an answer), a temporary store and artifact store, no
//! ffmpeg, no network.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::Stage;
use crate::artifacts::{ArtifactStore, EffectRecord, EffectStatus};
use crate::engine::{
    Budgets, Collect, Engine, Event, JobEnd, JobInput, RetryPolicy, Settings, Sink, StageStatus,
    Summary,
};
use crate::expand::{FootageSpec, ScriptSpec};
use crate::keys::ToolVersions;
use crate::media::RenderSpec;
use crate::providers::{
    Clip, DraftReceipt, DraftRequest, Drafts, EffectLog, EffectProgress, FootageRequest,
    FootageSource, Host, HostRequest, Hosted, Narration, Notice, Notifier, ProviderError, Script,
    ScriptRequest, ScriptWriter, Voice, VoiceRequest, WordTiming,
};
use crate::recipe::{Notify, Publish, VoiceDef};
use crate::registry::Services;
use crate::registry::{Digests, Renderer};
use crate::store::{Status, Store};

/// What a scripted call does next; once the script runs out, it succeeds.
#[derive(Debug, Clone)]
enum Step {
    Fail(ProviderError),
    /// Performs the effect, then answers with this error (a lost answer).
    DoThenFail(ProviderError),
    /// Takes this long, then succeeds.
    Slow(Duration),
    Hang,
    Panic,
}

#[derive(Default)]
struct Script_ {
    steps: Mutex<VecDeque<Step>>,
    calls: AtomicUsize,
}

impl Script_ {
    fn push(&self, step: Step) {
        self.steps.lock().unwrap().push_back(step);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts the call and takes the next step.
    async fn next(&self) -> Option<Step> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let step = self.steps.lock().unwrap().pop_front();
        match step {
            Some(Step::Hang) => std::future::pending().await,
            Some(Step::Panic) => panic!("scripted panic"),
            Some(Step::Slow(d)) => {
                tokio::time::sleep(d).await;
                None
            }
            other => other,
        }
    }
}

#[derive(Default)]
struct Fakes {
    script: Script_,
    footage: Script_,
    voice: Script_,
    render: Script_,
    host: Script_,
    drafts: Script_,
    notify: Script_,
    /// When set, footage fills the disk with this file before it writes its clip (a
    /// download that runs out of space, leaving the disk full), once this many jobs are
    /// at footage, or after 5 s: jobs sharing one footage search wait for the first at its
    /// flight, and the wait lets them finish their scripts first. Filled earlier, a job
    /// still writing its script fails there (on a loaded machine, now and then).
    fill: Mutex<Option<(PathBuf, usize)>>,
    at_footage: std::sync::atomic::AtomicUsize,
    /// Drafts in the inbox, by job.
    inbox: Mutex<Vec<String>>,
    hosted: Mutex<Vec<String>>,
    notices: Mutex<Vec<String>>,
    digests: Digests,
    versions: ToolVersions,
}

struct Services_(Arc<Fakes>);

impl Services for Services_ {
    fn script_writer(&self, _: &ScriptSpec) -> Result<Arc<dyn ScriptWriter>, ProviderError> {
        Ok(Arc::new(Writer(Arc::clone(&self.0))))
    }
    fn footage_source(
        &self,
        _: &FootageSpec,
        _: &Path,
    ) -> Result<Arc<dyn FootageSource>, ProviderError> {
        Ok(Arc::new(Footage(Arc::clone(&self.0))))
    }
    fn voice(&self, _: &VoiceDef) -> Result<Arc<dyn Voice>, ProviderError> {
        Ok(Arc::new(Speaker(Arc::clone(&self.0))))
    }
    fn renderer(&self) -> Arc<dyn Renderer> {
        Arc::new(Render(Arc::clone(&self.0)))
    }
    fn host(&self, _: &Publish) -> Result<Arc<dyn Host>, ProviderError> {
        Ok(Arc::new(Hoster(Arc::clone(&self.0))))
    }
    fn drafts(&self, _: &Publish) -> Result<Arc<dyn Drafts>, ProviderError> {
        Ok(Arc::new(Inbox(Arc::clone(&self.0))))
    }
    fn notifier(&self, _: Option<&Notify>) -> Result<Arc<dyn Notifier>, ProviderError> {
        Ok(Arc::new(Messenger(Arc::clone(&self.0))))
    }
    fn versions(&self) -> &ToolVersions {
        &self.0.versions
    }
    fn digests(&self) -> &Digests {
        &self.0.digests
    }
}

fn fail_or_ok(step: Option<Step>) -> Result<(), ProviderError> {
    match step {
        Some(Step::Fail(e)) => Err(e),
        _ => Ok(()),
    }
}

struct Writer(Arc<Fakes>);
#[async_trait]
impl ScriptWriter for Writer {
    async fn write(&self, r: &ScriptRequest) -> Result<Script, ProviderError> {
        fail_or_ok(self.0.script.next().await)?;
        Ok(Script {
            hook: format!("{} hook.", r.topic),
            sentences: vec!["A body line.".into()],
            cta: "Follow.".into(),
            title: r.topic.clone(),
            caption: "caption".into(),
            hashtags: vec!["tag".into()],
            visuals: Vec::new(),
            usage: None,
        })
    }
}

struct Footage(Arc<Fakes>);
#[async_trait]
impl FootageSource for Footage {
    async fn fetch(&self, _: &FootageRequest, dir: &Path) -> Result<Vec<Clip>, ProviderError> {
        fail_or_ok(self.0.footage.next().await)?;
        let fill = self.0.fill.lock().unwrap().clone();
        if let Some((filler, jobs)) = fill {
            use std::sync::atomic::Ordering;
            self.0.at_footage.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while self.0.at_footage.load(Ordering::SeqCst) < jobs
                && std::time::Instant::now() < deadline
            {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            fill_disk(&filler);
        }
        let path = dir.join("clip-0.mp4");
        std::fs::write(&path, b"clip").map_err(|e| ProviderError::io("fake", dir, &e))?;
        Ok(vec![Clip {
            path,
            source_id: "fake:0".into(),
            duration: 5.0,
            credit: None,
        }])
    }
}

struct Speaker(Arc<Fakes>);
#[async_trait]
impl Voice for Speaker {
    async fn speak(&self, r: &VoiceRequest, dir: &Path) -> Result<Narration, ProviderError> {
        fail_or_ok(self.0.voice.next().await)?;
        let audio = dir.join("narration.wav");
        std::fs::write(&audio, r.lines.join(" ")).unwrap();
        Ok(Narration {
            audio,
            duration: 3.0,
            words: vec![WordTiming {
                word: "hook".into(),
                start: 0.0,
                end: 0.5,
            }],
            characters: 10,
            lufs: None,
        })
    }
}

struct Render(Arc<Fakes>);
#[async_trait]
impl Renderer for Render {
    async fn render(&self, spec: &RenderSpec) -> Result<(), ProviderError> {
        fail_or_ok(self.0.render.next().await)?;
        // The loudness measured with the narration, never measured again here.
        assert_eq!(spec.narration_lufs, Some(NARRATION_LUFS));
        // The inputs must be readable where the stage says they are.
        let mut bytes = std::fs::read(&spec.narration).unwrap();
        for clip in &spec.clips {
            bytes.extend(std::fs::read(clip).unwrap());
        }
        std::fs::write(&spec.out, bytes).unwrap();
        Ok(())
    }

    async fn loudness(&self, audio: &Path) -> Result<f64, ProviderError> {
        assert!(
            audio.exists(),
            "the narration is measured where it was written"
        );
        Ok(NARRATION_LUFS)
    }

    async fn cover(&self, video: &Path, _at: f64, out: &Path) -> Result<(), ProviderError> {
        std::fs::copy(video, out).unwrap();
        Ok(())
    }
}

/// What the fake renderer measures every narration at.
const NARRATION_LUFS: f64 = -21.5;

struct Hoster(Arc<Fakes>);
#[async_trait]
impl Host for Hoster {
    async fn put(&self, r: &HostRequest) -> Result<Hosted, ProviderError> {
        let step = self.0.host.next().await;
        let mut hosted = self.0.hosted.lock().unwrap();
        if !hosted.contains(&r.key) {
            if let Some(Step::Fail(e)) = step {
                return Err(e);
            }
            hosted.push(r.key.clone());
        }
        Ok(Hosted {
            location: r.key.clone(),
            url: format!("https://example.test/{}", r.key),
            expires_at: r.expires_at,
        })
    }
    async fn delete(&self, _: &str) -> Result<(), ProviderError> {
        Ok(())
    }
    async fn expired(&self, _: i64) -> Result<Vec<String>, ProviderError> {
        Ok(Vec::new())
    }
}

/// Like TikTok: a draft lands in the inbox when the upload completes, and the recorded
/// id is asked about before anything is sent again.
struct Inbox(Arc<Fakes>);
#[async_trait]
impl Drafts for Inbox {
    async fn send(
        &self,
        r: &DraftRequest,
        log: &dyn EffectLog,
    ) -> Result<DraftReceipt, ProviderError> {
        // As TikTok's status fetch does: an upload the service holds is a draft already.
        if let Some(p) = log.progress().await?
            && let Some(id) = p.external_id
            && (p.phase == "uploaded" || id == format!("publish-{}", r.job_id))
            && self.0.inbox.lock().unwrap().contains(&r.job_id)
        {
            return Ok(DraftReceipt {
                external_id: id,
                status: "SEND_TO_USER_INBOX".into(),
            });
        }
        let step = self.0.drafts.next().await;
        if let Some(Step::Fail(e)) = step {
            return Err(e);
        }
        let id = format!("publish-{}", r.job_id);
        self.0.inbox.lock().unwrap().push(r.job_id.clone());
        log.record(&EffectProgress {
            external_id: Some(id.clone()),
            phase: "uploaded".into(),
            data: serde_json::Value::Null,
        })
        .await?;
        if let Some(Step::DoThenFail(e)) = step {
            return Err(e);
        }
        Ok(DraftReceipt {
            external_id: id,
            status: "SEND_TO_USER_INBOX".into(),
        })
    }
}

struct Messenger(Arc<Fakes>);
#[async_trait]
impl Notifier for Messenger {
    async fn send(&self, n: &Notice) -> Result<String, ProviderError> {
        let step = self.0.notify.next().await;
        if let Some(Step::Fail(e)) = step {
            return Err(e);
        }
        self.0.notices.lock().unwrap().push(n.text.clone());
        if let Some(Step::DoThenFail(e)) = step {
            return Err(e);
        }
        Ok("1".into())
    }
}

/// A recipe folder, a state directory and an artifact store.
struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    jobs: Vec<JobInput>,
    fakes: Arc<Fakes>,
    events: Arc<Collect>,
    stop: watch::Sender<bool>,
}

const RECIPE: &str = r#"version: 1
name: fake
voices:
  a: { provider: espeak, voice: en-us }
  b: { provider: espeak, voice: en-gb }
templates:
  t:
    script: { provider: offline, seconds: 10 }
    footage: { provider: generated, clips: 1 }
    captions: { style: bold-center, max_words: 3, highlight: word }
    video: { size: 1080x1920, fps: 30, max_seconds: 60 }
    title: "{{ topic }}"
batch:
  template: t
  matrix: { topic: [Owls], voice: [VOICES] }
"#;

impl World {
    fn new(voices: &str) -> Self {
        Self::with_recipe(&RECIPE.replace("VOICES", voices))
    }

    fn with_recipe(text: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let mut world = Self {
            _dir: dir,
            root,
            jobs: Vec::new(),
            fakes: Arc::new(Fakes::default()),
            events: Arc::new(Collect::default()),
            stop: watch::channel(false).0,
        };
        world.edit(text);
        world
    }

    /// Rewrites the recipe (same folder, state and artifacts) and loads its jobs.
    fn edit(&mut self, text: &str) {
        let root = self.root.clone();
        let path = root.join("fake.yaml");
        std::fs::write(&path, text).unwrap();
        let (ok, diags) = crate::cli::load_all(std::slice::from_ref(&path));
        assert!(diags.is_empty(), "{diags:?}");
        let e = ok.into_iter().next().unwrap();
        let jobs = e
            .jobs
            .into_iter()
            .map(|job| JobInput {
                recipe: "fake".into(),
                recipe_path: path.clone(),
                dir: root.clone(),
                job,
            })
            .collect();
        self.jobs = jobs;
    }

    fn inputs(&self) -> Vec<JobInput> {
        self.jobs
            .iter()
            .map(|j| JobInput {
                recipe: j.recipe.clone(),
                recipe_path: j.recipe_path.clone(),
                dir: j.dir.clone(),
                job: j.job.clone(),
            })
            .collect()
    }

    async fn engine_at(&self, state: &str, budgets: Budgets) -> Arc<Engine> {
        let store = Store::open(&self.root.join(state)).await.unwrap();
        let artifacts = ArtifactStore::open(&self.root.join("cache")).unwrap();
        Arc::new(Engine::new(
            store,
            artifacts,
            Arc::new(Services_(Arc::clone(&self.fakes))),
            Arc::new(crate::stages::Pipeline),
            Arc::clone(&self.events) as Arc<dyn Sink>,
            budgets,
            Settings {
                retry: RetryPolicy {
                    attempts: 3,
                    base: Duration::from_millis(1),
                    max_delay: Duration::from_millis(5),
                    max_retry_after: Duration::from_secs(1),
                },
                max_wait_in_run: Duration::from_secs(2),
                record_jobs: true,
            },
            self.stop.subscribe(),
        ))
    }

    /// An engine on the state directory `state` over the artifact store `cache`: another
    /// machine on a shared store has the same store and artifacts of its own.
    async fn engine_over(&self, state: &str, cache: &str) -> Arc<Engine> {
        self.engine_with(&self.root.join(state), &self.root.join(cache))
            .await
    }

    /// An engine with the default settings on `state` over `cache`.
    async fn engine_with(&self, state: &Path, cache: &Path) -> Arc<Engine> {
        let store = Store::open(state).await.unwrap();
        let artifacts = ArtifactStore::open(cache).unwrap();
        Arc::new(Engine::new(
            store,
            artifacts,
            Arc::new(Services_(Arc::clone(&self.fakes))),
            Arc::new(crate::stages::Pipeline),
            Arc::clone(&self.events) as Arc<dyn Sink>,
            Budgets::default(),
            Settings::default(),
            self.stop.subscribe(),
        ))
    }

    async fn engine(&self) -> Arc<Engine> {
        self.engine_at("state", Budgets::default()).await
    }

    /// An engine whose state directory and artifact store are both under `base`.
    async fn engine_in(&self, base: &Path) -> Arc<Engine> {
        self.engine_with(&base.join("state"), &base.join("cache"))
            .await
    }

    async fn run(&self) -> Summary {
        self.engine().await.run(self.inputs(), 0).await
    }

    async fn job(&self, engine: &Engine, i: usize) -> crate::store::StoredJob {
        engine
            .store()
            .find_job(&self.jobs[i].job.id.to_string())
            .await
            .unwrap()
    }
}

fn retryable() -> ProviderError {
    ProviderError::retryable("fake", "HTTP 503")
}

#[tokio::test]
async fn a_job_runs_every_stage_and_a_second_run_executes_nothing() {
    let w = World::new("a");
    let first = w.run().await;
    assert_eq!((first.done, first.executed_stages), (1, 8), "{first:?}");
    let again = w.run().await;
    assert_eq!(
        (
            again.done,
            again.reused,
            again.executed_stages,
            again.reused_stages
        ),
        (1, 1, 0, 8)
    );
    assert_eq!(w.fakes.script.calls(), 1);
    assert_eq!(w.fakes.inbox.lock().unwrap().len(), 1);
    assert_eq!(w.fakes.notices.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_failed_job_resumes_at_the_failed_stage() {
    let w = World::new("a");
    w.fakes
        .render
        .push(Step::Fail(ProviderError::permanent("render", "bad media")));
    let first = w.run().await;
    assert_eq!(first.failed, 1);
    let engine = w.engine().await;
    let job = w.job(&engine, 0).await;
    assert_eq!(job.status, Status::Failed);
    assert_eq!(job.stage.as_deref(), Some("render"));
    let again = engine.run(w.inputs(), 0).await;
    assert_eq!(again.done, 1);
    // Script, footage, voice and captions came from the artifact store.
    assert_eq!(again.reused_stages, 4);
    assert_eq!(w.fakes.script.calls(), 1);
    assert_eq!(w.fakes.render.calls(), 2);
}

#[tokio::test]
async fn two_jobs_that_share_a_script_pay_for_it_once() {
    // A second voice at the same pace (only the pitch differs) reads the same script.
    let w = World::with_recipe(&RECIPE.replace("VOICES", "a, low").replace(
        "templates:",
        "  low: { provider: espeak, voice: en-us, pitch: 30 }\ntemplates:",
    ));
    let summary = w.run().await;
    assert_eq!(summary.done, 2);
    assert_eq!(w.fakes.script.calls(), 1);
    assert_eq!(w.fakes.footage.calls(), 1);
    assert_eq!(w.fakes.voice.calls(), 2);
}

#[tokio::test]
async fn retries_are_recorded_in_the_summary_the_store_and_the_events() {
    let w = World::new("a");
    w.fakes.script.push(Step::Fail(retryable()));
    let summary = w.run().await;
    assert_eq!((summary.done, summary.retries), (1, 1));
    let engine = w.engine().await;
    let stages = engine
        .store()
        .stages(&w.jobs[0].job.id.to_string())
        .await
        .unwrap();
    let script = stages.iter().find(|s| s.stage == "script").unwrap();
    assert_eq!(script.attempt, 2);
    assert!(w.events.events().iter().any(|e| matches!(
        e,
        Event::Retry {
            stage: Stage::Script,
            attempt: 2,
            ..
        }
    )));
}

#[tokio::test]
async fn a_stage_that_keeps_failing_fails_its_job_after_the_last_attempt() {
    let w = World::new("a");
    for _ in 0..3 {
        w.fakes.voice.push(Step::Fail(retryable()));
    }
    let summary = w.run().await;
    assert_eq!((summary.failed, summary.retries), (1, 2));
    let job = w.job(&*w.engine().await, 0).await;
    assert_eq!(job.stage.as_deref(), Some("voice"));
    assert!(job.error.unwrap().contains("503"));
}

#[tokio::test]
async fn a_panicking_stage_fails_its_job_with_the_stage_and_the_message() {
    let w = World::new("a");
    w.fakes.footage.push(Step::Panic);
    let summary = w.run().await;
    assert_eq!(summary.failed, 1);
    let job = w.job(&*w.engine().await, 0).await;
    assert_eq!(job.status, Status::Failed);
    assert_eq!(job.stage.as_deref(), Some("footage"));
    assert!(job.error.unwrap().contains("scripted panic"));
}

#[tokio::test]
async fn cancelling_a_run_marks_the_running_stage_interrupted_and_the_next_run_resumes() {
    let w = World::new("a");
    w.fakes.voice.push(Step::Hang);
    let engine = w.engine().await;
    let run = tokio::spawn({
        let engine = Arc::clone(&engine);
        let inputs = w.inputs();
        async move { engine.run(inputs, 0).await }
    });
    while w.fakes.voice.calls() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    w.stop.send(true).unwrap();
    let summary = run.await.unwrap();
    assert_eq!(summary.interrupted, 1);
    let job = w.job(&engine, 0).await;
    assert_eq!(job.status, Status::Interrupted);
    assert_eq!(job.stage.as_deref(), Some("voice"));
    w.stop.send(false).unwrap();
    let again = w.run().await;
    assert_eq!(again.done, 1);
    assert_eq!(w.fakes.script.calls(), 1);
}

#[tokio::test]
async fn a_long_deferral_defers_the_job_until_its_time() {
    let w = World::new("a");
    let until = crate::clock::now() + 3600;
    w.fakes.drafts.push(Step::Fail(ProviderError::deferred(
        "tiktok",
        "the account has 5 pending drafts",
        until,
        "tiktok:pending:main",
    )));
    let summary = w.run().await;
    assert_eq!(summary.deferred, 1);
    let job = w.job(&*w.engine().await, 0).await;
    assert_eq!(job.status, Status::Deferred);
    assert_eq!(job.deferred_until, Some(until));
    assert_eq!(job.stage.as_deref(), Some("draft"));
    let planned = crate::plan::plan("fake", "fake.yaml", &[w.jobs[0].job.clone()], &[job]);
    assert_eq!(planned.jobs[0].action, crate::plan::Action::Deferred);
    assert!(w.fakes.inbox.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_short_deferral_is_waited_out_within_the_run() {
    let w = World::new("a");
    w.fakes.script.push(Step::Fail(ProviderError::deferred(
        "openrouter",
        "rate window",
        crate::clock::now() + 1,
        "openrouter:rpm",
    )));
    let summary = w.run().await;
    assert_eq!(summary.done, 1);
    assert!(
        w.events
            .events()
            .iter()
            .any(|e| matches!(e, Event::Waiting { .. }))
    );
}

#[tokio::test]
async fn a_draft_whose_answer_is_lost_after_delivery_is_reconciled_not_sent_again() {
    let w = World::new("a");
    w.fakes
        .drafts
        .push(Step::DoThenFail(ProviderError::unconfirmed(
            "tiktok",
            "answer cut off",
        )));
    let summary = w.run().await;
    assert_eq!((summary.done, summary.retries), (1, 1));
    assert_eq!(w.fakes.inbox.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_notice_whose_answer_is_lost_is_reported_and_never_sent_again() {
    let w = World::new("a");
    w.fakes
        .notify
        .push(Step::DoThenFail(ProviderError::unconfirmed(
            "telegram",
            "answer cut off",
        )));
    let first = w.run().await;
    assert_eq!((first.done, first.unconfirmed), (1, 1), "{first:?}");
    let again = w.run().await;
    assert_eq!(again.unconfirmed, 1);
    assert_eq!(w.fakes.notices.lock().unwrap().len(), 1);
    let stages = w
        .engine()
        .await
        .store()
        .stages(&w.jobs[0].job.id.to_string())
        .await
        .unwrap();
    assert_eq!(
        stages.iter().find(|s| s.stage == "notify").unwrap().status,
        StageStatus::Unconfirmed
    );
}

#[tokio::test]
async fn a_notice_refused_by_the_service_is_sent_on_the_next_attempt() {
    let w = World::new("a");
    w.fakes.notify.push(Step::Fail(retryable()));
    let summary = w.run().await;
    assert_eq!((summary.done, summary.unconfirmed), (1, 0));
    assert_eq!(w.fakes.notices.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn an_intent_left_by_a_crash_keeps_a_notice_from_going_out_twice() {
    let w = World::new("a");
    w.run().await;
    // A crashed process wrote its intent and may have sent: simulate by turning the
    // done entry back into an intent.
    let engine = w.engine().await;
    let dir = engine.artifacts().root().join("effects");
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let mut r: EffectRecord =
            serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        if r.kind == "notify" {
            r.status = EffectStatus::Intent;
            engine.artifacts().put_effect(&r).await.unwrap();
        }
    }
    let fresh = w.engine_at("fresh-state", Budgets::default()).await;
    let summary = fresh.run(w.inputs(), 0).await;
    assert_eq!(summary.unconfirmed, 1);
    assert_eq!(w.fakes.notices.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_notice_unconfirmed_on_a_shared_store_is_not_sent_again_from_other_artifacts() {
    let w = World::new("a");
    w.fakes
        .notify
        .push(Step::DoThenFail(ProviderError::unconfirmed(
            "telegram",
            "answer cut off",
        )));
    let first = w.run().await;
    assert_eq!(first.unconfirmed, 1, "{first:?}");
    // Another machine: the same store, an artifact store of its own with no ledger.
    let other = w.engine_over("state", "other-cache").await;
    let summary = other.run(w.inputs(), 0).await;
    assert_eq!(summary.unconfirmed, 1, "{summary:?}");
    assert_eq!(w.fakes.notices.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_draft_unknown_on_a_shared_store_is_reconciled_not_sent_again_from_other_artifacts() {
    let w = World::new("a");
    w.run().await;
    assert_eq!(w.fakes.inbox.lock().unwrap().len(), 1);
    // The machine that sent it died before its answer: the store knows the publish id
    // and that the outcome is unknown; its artifacts are gone with it.
    let engine = w.engine().await;
    let dir = engine.artifacts().root().join("effects");
    let mut draft = None;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let r: EffectRecord =
            serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        if r.kind == "draft" {
            draft = Some(r);
        }
    }
    let draft = draft.expect("a draft ledger entry");
    let id = draft.progress.and_then(|p| p.external_id).unwrap();
    engine
        .store()
        .record_effect(&draft.key, &draft.job, "draft", "unknown", Some(&id), None)
        .await
        .unwrap();
    let other = w.engine_over("state", "other-cache").await;
    let summary = other.run(w.inputs(), 0).await;
    assert_eq!(summary.done, 1, "{summary:?}");
    assert_eq!(
        w.fakes.inbox.lock().unwrap().len(),
        1,
        "the service was asked, not sent to again"
    );
}

#[tokio::test]
async fn a_narration_cached_before_its_loudness_was_kept_is_measured_not_paid_again() {
    let mut w = World::new("a");
    w.run().await;
    let voices = w.fakes.voice.calls();
    // An entry as the voice stage wrote it before `lufs` was recorded.
    let dir = w.root.join("cache").join("voice");
    let mut stripped = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path().join("manifest.json");
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let mut manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        if manifest["output"]
            .as_object_mut()
            .unwrap()
            .remove("lufs")
            .is_some()
        {
            stripped += 1;
        }
        std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    }
    assert_eq!(stripped, 1);
    // A new title: the job runs again over the kept narration.
    w.edit(
        &RECIPE
            .replace("VOICES", "a")
            .replace("\"{{ topic }}\"", "\"{{ topic }}!\""),
    );
    let summary = w.run().await;
    assert_eq!(summary.done, 1, "{summary:?}");
    assert_eq!(
        w.fakes.voice.calls(),
        voices,
        "the narration is not made again"
    );
}

#[tokio::test]
async fn a_fresh_state_directory_over_a_kept_artifact_store_executes_nothing_and_sends_nothing() {
    let w = World::new("a, b");
    w.run().await;
    let calls = |f: &Fakes| {
        [
            f.script.calls(),
            f.footage.calls(),
            f.voice.calls(),
            f.render.calls(),
            f.host.calls(),
            f.drafts.calls(),
            f.notify.calls(),
        ]
    };
    let before = calls(&w.fakes);
    let fresh = w.engine_at("another-runner", Budgets::default()).await;
    let summary = fresh.run(w.inputs(), 0).await;
    assert_eq!((summary.done, summary.executed_stages), (2, 0));
    assert_eq!(calls(&w.fakes), before);
    assert_eq!(w.fakes.inbox.lock().unwrap().len(), 2);
    assert_eq!(w.fakes.notices.lock().unwrap().len(), 2);
    assert_eq!(fresh.artifacts().jobs().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_cached_render_corrupted_in_place_is_rebuilt_and_said_so() {
    let w = World::new("a");
    w.run().await;
    let engine = w.engine().await;
    let render = engine.artifacts().root().join("render");
    let entry = std::fs::read_dir(&render)
        .unwrap()
        .flatten()
        .next()
        .unwrap();
    let video = entry.path().join(crate::stages::render::FILE);
    let mut bytes = std::fs::read(&video).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&video, bytes).unwrap();
    let summary = engine.run(w.inputs(), 0).await;
    assert_eq!((summary.done, summary.rebuilt), (1, 1));
    assert_eq!(w.fakes.render.calls(), 2);
    assert!(w.events.events().iter().any(|e| matches!(
        e,
        Event::Rebuild {
            stage: Stage::Render,
            ..
        }
    )));
}

#[tokio::test]
async fn a_store_write_that_fails_fails_the_job_instead_of_passing_silently() {
    let w = World::new("a");
    let engine = w.engine().await;
    engine.store().close().await;
    let summary = engine.run(w.inputs(), 0).await;
    assert_eq!((summary.done, summary.failed), (0, 1));
    assert!(w.events.events().iter().any(|e| matches!(
        e,
        Event::Job { status: JobEnd::Failed, detail: Some(d), .. } if d.contains("cannot record")
    )));
}

#[tokio::test]
async fn a_full_lane_makes_a_stage_wait_for_a_slot_and_says_so() {
    let w = World::new("a, b");
    let budgets = Budgets {
        cpu: 1,
        ..Budgets::default()
    };
    w.fakes.render.push(Step::Slow(Duration::from_millis(300)));
    let engine = w.engine_at("state", budgets).await;
    let summary = engine.run(w.inputs(), 0).await;
    assert_eq!(summary.done, 2);
    assert!(w.events.events().iter().any(|e| matches!(
        e,
        Event::Queued {
            stage: Stage::Render,
            ..
        }
    )));
}

#[tokio::test]
async fn the_host_effect_key_does_not_include_the_job() {
    let mut w = World::new("a");
    w.run().await;
    // A title-only edit: a new job over the same render. It gets its own hosted copy, so
    // purging one job never takes the other's link with it.
    w.edit(
        &RECIPE
            .replace("VOICES", "a")
            .replace("\"{{ topic }}\"", "\"{{ topic }}, again\""),
    );
    let summary = w.run().await;
    assert_eq!(summary.done, 1);
    assert_eq!(w.fakes.render.calls(), 1, "the render is reused");
    assert_eq!(w.fakes.hosted.lock().unwrap().len(), 2);
    assert_eq!(w.fakes.inbox.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn local_footage_is_keyed_by_the_folders_name_only() {
    let text = RECIPE.replace("VOICES", "a").replace(
        "{ provider: generated, clips: 1 }",
        "{ provider: local, dir: clips, clips: 1 }",
    );
    let mut w = World::new("a");
    std::fs::create_dir_all(w.root.join("clips")).unwrap();
    std::fs::write(w.root.join("clips/one.mp4"), b"first clip").unwrap();
    w.edit(&text);
    w.run().await;
    w.run().await;
    assert_eq!(w.fakes.footage.calls(), 1, "unchanged clips are reused");
    std::fs::write(w.root.join("clips/one.mp4"), b"a changed clip").unwrap();
    w.run().await;
    assert_eq!(
        w.fakes.footage.calls(),
        2,
        "a changed clip runs the stage again"
    );
    std::fs::write(w.root.join("clips/two.mp4"), b"a new clip").unwrap();
    w.run().await;
    assert_eq!(
        w.fakes.footage.calls(),
        3,
        "a new clip runs the stage again"
    );
}

#[tokio::test]
async fn the_music_file_is_read_whole_for_every_job() {
    // Hashed once per run, streaming: a second job (and a change on disk meanwhile) finds
    // the digest already known.
    let dir = tempfile::tempdir().unwrap();
    let music = dir.path().join("lofi.mp3");
    std::fs::write(&music, vec![7u8; 3 << 20]).unwrap();
    let digests = Digests::default();
    let first = digests.file(&music).await.unwrap();
    std::fs::write(&music, b"changed").unwrap();
    assert_eq!(digests.file(&music).await.unwrap(), first);
    assert_ne!(Digests::default().file(&music).await.unwrap(), first);
}

/// A 30 MB filesystem mounted at a temporary directory, unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
    image: Option<PathBuf>,
}

impl SmallDisk {
    /// A tmpfs of 30 MB, else an ext4 image of 30 MB on a loop device; `None` where this
    /// process may not mount (then the in-process variants check the behaviour alone).
    fn mount() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap().to_owned();
        let ok = |cmd: &mut std::process::Command| {
            cmd.stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if ok(std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=30m", "tmpfs", &path]))
        {
            return Some(Self { dir, image: None });
        }
        let image = std::env::temp_dir().join(format!("factory-disk-{}.img", std::process::id()));
        let image_s = image.to_str().unwrap().to_owned();
        let mounted = ok(std::process::Command::new("truncate").args(["-s", "30M", &image_s]))
            && ok(std::process::Command::new("mkfs.ext4").args(["-q", &image_s]))
            && ok(std::process::Command::new("mount").args(["-o", "loop", &image_s, &path]));
        if mounted {
            return Some(Self {
                dir,
                image: Some(image),
            });
        }
        std::fs::remove_file(&image).ok();
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: the store's connections close on their own threads.
        std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status()
            .ok();
        if let Some(image) = &self.image {
            std::fs::remove_file(image).ok();
        }
    }
}

/// Writes `path` until the disk holding it is full.
fn fill_disk(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for chunk in [1 << 20, 4096, 512] {
        let block = vec![1u8; chunk];
        while file.write_all(&block).is_ok() {}
    }
    file.sync_all().ok();
}

/// Writes `path` until the disk holding it has about `left` bytes free.
fn fill_disk_but(path: &Path, left: u64) {
    let free = crate::disk::free_bytes(path.parent().unwrap()).unwrap();
    let size = usize::try_from(free.saturating_sub(left)).unwrap();
    std::fs::write(path, vec![1u8; size]).unwrap();
}

fn enospc() -> std::io::Error {
    std::io::Error::from_raw_os_error(libc::ENOSPC)
}

#[tokio::test]
async fn a_full_disk_fails_at_the_stage_with_the_directory_named() {
    // In-process: a renderer whose write hits ENOSPC.
    let w = World::new("a");
    let cache = w.root.join("cache");
    w.fakes.render.push(Step::Fail(ProviderError::io(
        "ffmpeg",
        &cache.join("render"),
        &enospc(),
    )));
    let first = w.run().await;
    assert_eq!((first.failed, first.no_space), (1, 1), "{first:?}");
    assert_eq!(w.fakes.render.calls(), 1, "a full disk is not retried");
    let engine = w.engine().await;
    let job = w.job(&engine, 0).await;
    assert_eq!(job.status, Status::Failed);
    assert_eq!(job.stage.as_deref(), Some("render"));
    let error = job.error.unwrap();
    assert!(error.contains(&format!("`{}", cache.display())), "{error}");
    let again = engine.run(w.inputs(), 0).await;
    assert_eq!((again.done, again.no_space), (1, 0), "{again:?}");

    // On a real 30 MB filesystem with 6 MB left: the render's estimate does not fit, so
    // it fails before ffmpeg starts, naming the artifact store, the need and the room.
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let w = World::new("a");
    let engine = w.engine_in(disk.path()).await;
    let filler = disk.path().join("filler");
    fill_disk_but(&filler, 6 << 20);
    let first = engine.run(w.inputs(), 0).await;
    assert_eq!((first.failed, first.no_space), (1, 1), "{first:?}");
    assert_eq!(w.fakes.render.calls(), 0, "ffmpeg never started");
    let job = w.job(&engine, 0).await;
    assert_eq!(job.status, Status::Failed);
    assert_eq!(job.stage.as_deref(), Some("render"));
    let error = job.error.unwrap();
    let root = engine.artifacts().root().display().to_string();
    assert!(error.contains(&format!("`{root}`")), "{error}");
    assert!(
        error.contains("the render needs about 12.1 MB and 6.0 MB are free"),
        "{error}"
    );
    engine.store().close().await;
    // Space freed: the next run resumes at the render.
    std::fs::remove_file(&filler).unwrap();
    let engine = w.engine_in(disk.path()).await;
    let again = engine.run(w.inputs(), 0).await;
    assert_eq!((again.done, again.no_space), (1, 0), "{again:?}");
    assert_eq!(again.reused_stages, 4, "{again:?}");
    engine.store().close().await;
}

#[tokio::test]
async fn a_full_disk_leaves_jobs_running() {
    // In-process: footage whose write hits ENOSPC ends both jobs failed at footage.
    let w = World::new("a, b");
    let cache = w.root.join("cache");
    for _ in 0..2 {
        w.fakes.footage.push(Step::Fail(ProviderError::io(
            "pexels",
            &cache.join("footage"),
            &enospc(),
        )));
    }
    let first = w.run().await;
    assert_eq!((first.failed, first.no_space), (2, 2), "{first:?}");
    let engine = w.engine().await;
    for i in 0..2 {
        let job = w.job(&engine, i).await;
        assert_eq!(job.status, Status::Failed, "{job:?}");
        assert_eq!(job.stage.as_deref(), Some("footage"));
    }
    assert_eq!(engine.run(w.inputs(), 0).await.done, 2);

    // On a real 30 MB filesystem that footage fills to the last byte: the failure is
    // still recorded (the store gives back its reserve), no job stays `running`, and
    // once the disk has room again the next run finishes both.
    let Some(disk) = SmallDisk::mount() else {
        return;
    };
    let w = World::new("a, b");
    let engine = w.engine_in(disk.path()).await;
    let reserve = disk.path().join("state").join(crate::store::RESERVE_FILE);
    assert!(
        reserve.exists(),
        "the store keeps a reserve when it has room"
    );
    let filler = disk.path().join("filler");
    *w.fakes.fill.lock().unwrap() = Some((filler.clone(), 2));
    let first = engine.run(w.inputs(), 0).await;
    assert_eq!((first.failed, first.no_space), (2, 2), "{first:?}");
    for i in 0..2 {
        let job = w.job(&engine, i).await;
        assert_eq!(job.status, Status::Failed, "{job:?}");
        assert_eq!(job.stage.as_deref(), Some("footage"));
        let error = job.error.unwrap();
        assert!(error.contains("not enough space in `"), "{error}");
        assert!(
            error.contains(&disk.path().display().to_string()),
            "{error}"
        );
    }
    let kept = std::fs::metadata(&reserve).map_or(0, |m| m.len());
    assert!(
        kept < 4 << 20,
        "the reserve gave room to the records: {kept}"
    );
    engine.store().close().await;
    *w.fakes.fill.lock().unwrap() = None;
    std::fs::remove_file(&filler).unwrap();
    let engine = w.engine_in(disk.path()).await;
    let kept = std::fs::metadata(&reserve).map_or(0, |m| m.len());
    assert_eq!(kept, 4 << 20, "the next open makes the reserve whole again");
    let again = engine.run(w.inputs(), 0).await;
    assert_eq!((again.done, again.failed), (2, 0), "{again:?}");
    engine.store().close().await;
}
