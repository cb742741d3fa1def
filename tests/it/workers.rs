//! Workers on the shared queue, as real processes over a real `PostgreSQL`: a worker
//! killed mid-render, a zombie that wakes after its lease passed on, and budgets shared
//! by every worker. Leases are shortened (`FACTORY_LEASE_MS`) so takeovers take seconds.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::pg;
use crate::support::{Factory, write};

const LEASE_MS: &str = "3000";
const HEARTBEAT_MS: &str = "500";
/// An idle slot claims again this soon: a task handed on, re-queued or due waits no longer.
const POLL_MS: &str = "100";

/// The cheapest job a recipe allows, so thirty fit in a test: the shortest script, one
/// small local clip (nothing to generate), no captions, the lowest frame rate.
const TEMPLATE: &str = "templates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    \
    footage: { provider: local, dir: clips, clips: 1 }\n    captions: { style: none }\n    \
    video: { fps: 23 }\n    title: \"{{ topic }}\"\n";

/// A job per topic, offline, a few seconds of video each; notices go to the log.
fn recipe(dir: &Path, topics: &[String]) {
    clip(dir);
    write(
        dir,
        "tiny.yaml",
        &format!(
            "version: 1\nname: tiny\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 260 }}\n\
             {TEMPLATE}batch:\n  template: t\n  matrix: {{ topic: [{}], voice: [a] }}\n",
            topics.join(", ")
        ),
    );
}

/// A small moving portrait clip in `dir/clips`, the footage of every job.
fn clip(dir: &Path) {
    let path = dir.join("clips/moving.mp4");
    if path.exists() {
        return;
    }
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let made = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=270x480:rate=23:duration=4")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&path)
        .status()
        .unwrap();
    assert!(made.success());
}

/// The file that, while it exists, holds every render before its ffmpeg starts: a test
/// that needs a worker mid-render creates it, acts, and removes it; no timing luck.
fn render_gate(dir: &Path) -> PathBuf {
    dir.join("renders.held")
}

/// An ffmpeg that waits at the render gate (see [`render_gate`]), then runs the real one.
fn gated_ffmpeg(dir: &Path) -> PathBuf {
    let path = dir.join("gated-ffmpeg");
    if !path.exists() {
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n\
                 case \"$*\" in *\"/render/.tmp-\"*)\n\
                 \x20 touch '{}/rendering.'$PPID\n\
                 \x20 while [ -e '{}' ]; do sleep 0.05; done;;\n\
                 esac\n\
                 exec ffmpeg \"$@\"\n",
                dir.display(),
                render_gate(dir).display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    path
}

/// Waits until `worker` has started a render's ffmpeg (it stands at the gate): the render
/// stage is recorded started in the store, whatever the queue's row showed before.
fn wait_rendering(dir: &Path, worker: &Worker, name: &str) {
    let marker = dir.join(format!("rendering.{}", worker.0.id()));
    let deadline = Instant::now() + Duration::from_secs(300);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {name} to render; logs:\n{}",
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hold_renders(dir: &Path) {
    std::fs::write(render_gate(dir), "").unwrap();
}

fn release_renders(dir: &Path) {
    std::fs::remove_file(render_gate(dir)).unwrap();
}

fn topics(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("Topic {i:02}")).collect()
}

/// `factory` in `dir` over the shared state, artifacts and queue.
fn factory(dir: &Path, queue: &str) -> Factory {
    Factory::new()
        .args(["--state-dir", "state", "--cache-dir", "artifacts"])
        .current_dir(dir)
        .env("CI", "1")
        .env("FACTORY_QUEUE", queue)
        .env("FACTORY_LEASE_MS", LEASE_MS)
        .env("FACTORY_HEARTBEAT_MS", HEARTBEAT_MS)
        .env("FACTORY_QUEUE_POLL_MS", POLL_MS)
        .env("FACTORY_FFMPEG", gated_ffmpeg(dir))
}

/// A `factory worker` process; killed when dropped, so a failing test leaves none behind.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.0.kill().ok();
            self.0.wait().ok();
        }
    }
}

/// A `factory worker` left running, its output in `dir/<name>.log`.
fn spawn_worker(dir: &Path, queue: &str, name: &str) -> Worker {
    worker_with(factory(dir, queue), dir, name)
}

fn worker_with(f: Factory, dir: &Path, name: &str) -> Worker {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    Worker(
        f.args(["worker", "--renders", "1", "--network", "4", "--name", name])
            .command()
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn signal(worker: &Worker, sig: i32) {
    // SAFETY: `kill` on the pid of a child this test started and has not reaped.
    let pid = i32::try_from(worker.0.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill {sig}");
}

/// Stops a worker with SIGTERM and waits for it.
fn stop(mut worker: Worker) {
    signal(&worker, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(60);
    while worker.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "a worker did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `factory status --json`.
fn status(dir: &Path, queue: &str) -> serde_json::Value {
    let out = factory(dir, queue).args(["--json", "status"]).run();
    assert_eq!(out.code, 0, "{out:?}");
    out.json()
}

/// Polls `factory status` until `done` holds of it, or fails with the last one seen.
fn wait_for(
    dir: &Path,
    queue: &str,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let now = status(dir, queue);
        if done(&now) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; the queue:\n{now:#}\nlogs:\n{}",
            logs(dir)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn logs(dir: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "log") {
            let body = std::fs::read_to_string(&path).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(30).collect();
            text.push_str(&format!("--- {}\n", path.display()));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    text
}

fn count(status: &serde_json::Value, state: &str) -> u64 {
    status["counts"][state].as_u64().unwrap()
}

/// The job running a render on `worker`, if any: its render phase at the render stage.
/// (A network phase handing its job on to a render slot shows the render stage for a
/// moment too.)
fn rendering_on(status: &serde_json::Value, worker: &str) -> Option<String> {
    status["jobs"].as_array().unwrap().iter().find_map(|j| {
        (j["state"] == "running"
            && j["phase"] == "render"
            && j["stage"] == "render"
            && j["worker"] == worker)
            .then(|| j["job"].as_str().unwrap().to_owned())
    })
}

fn drafts(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("state/drafts/tiny"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "mp4"))
                .count()
        })
        .unwrap_or(0)
}

fn notices(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("state/notices.log"))
        .map(|t| t.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// How often each (job, stage) executed (the store's attempt count; reuses do not count).
async fn executions(dir: &Path) -> BTreeMap<(String, String), i64> {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("state/factory.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT job_id, stage, attempt FROM stages")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().map(|(j, s, n)| ((j, s), n)).collect()
}

async fn store_status(dir: &Path) -> BTreeMap<String, String> {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("state/factory.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String)> = sqlx::query_as("SELECT id, status FROM jobs")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    rows.into_iter().collect()
}

fn enqueue(dir: &Path, queue: &str, expected: usize) {
    let out = factory(dir, queue)
        .args(["--json", "run", "--enqueue", "tiny.yaml"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["enqueued"], expected, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_do_every_job_once_and_a_render_killed_with_its_worker_is_redone_elsewhere() {
    let queue = pg::shared().url();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    recipe(dir, &topics(30));
    enqueue(dir, &queue, 30);
    // Enqueueing again adds nothing: a job is on the queue once.
    enqueue(dir, &queue, 0);
    // Renders wait at the gate until w1 is in one: it dies mid-render, whatever the pace.
    hold_renders(dir);
    let mut workers: Vec<(String, Worker)> = ["w1", "w2", "w3"]
        .iter()
        .map(|n| ((*n).to_owned(), spawn_worker(dir, &queue, n)))
        .collect();
    let (_, mut w1) = workers.remove(0);
    wait_rendering(dir, &w1, "w1");
    signal(&w1, libc::SIGKILL);
    w1.0.wait().unwrap();
    release_renders(dir);
    // What w1 held when it died: its rows stay until the library re-queues its tasks.
    let dead = status(dir, &queue);
    let held: Vec<(String, String)> = dead["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "running" && j["worker"] == "w1")
        .map(|j| {
            (
                j["job"].as_str().unwrap().to_owned(),
                j["stage"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let killed =
        rendering_on(&dead, "w1").unwrap_or_else(|| panic!("w1 died without a render: {dead:#}"));
    let done = wait_for(
        dir,
        &queue,
        // Generous: the machine may be shared; alone it takes about a minute.
        Duration::from_secs(1200),
        "every job to be done",
        |s| count(s, "done") == 30,
    );
    for (_, w) in workers {
        stop(w);
    }
    assert_eq!(count(&done, "failed"), 0, "{done:#}");
    let after = done["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == killed.as_str())
        .unwrap()
        .clone();
    // Network, the killed render, the render again, publishing: four leases, where a
    // job nobody killed takes three.
    assert_eq!(
        after["attempt"], 4,
        "the killed job was taken over under a new lease: {after:#}"
    );
    assert_eq!(drafts(dir), 30, "one draft per job");
    let lines = notices(dir);
    let distinct: std::collections::BTreeSet<&String> = lines.iter().collect();
    assert_eq!(distinct.len(), lines.len(), "no notice twice: {lines:#?}");
    // A notice cut off by the kill is at most once: reported unconfirmed, never re-sent.
    let cut_notices = held.iter().filter(|(_, s)| s == "notify").count();
    assert!(
        lines.len() <= 30 && lines.len() + cut_notices >= 30,
        "one notice per job: {lines:#?}"
    );
    let stored = store_status(dir).await;
    assert_eq!(stored.len(), 30);
    assert!(stored.values().all(|s| s == "done"), "{stored:?}");
    let runs = executions(dir).await;
    let again: Vec<_> = runs.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(
        runs.get(&(killed.clone(), "render".to_owned())),
        Some(&2),
        "the killed render ran again"
    );
    for ((job, stage), n) in &again {
        assert!(
            **n == 2 && held.contains(&(job.clone(), stage.clone())),
            "`{stage}` of `{job}` ran {n} times, and w1 was not running it when it died ({held:?})"
        );
    }
    assert_eq!(runs.len(), 30 * 8, "every stage of every job ran");
    // Every stage stays recorded `done` by the phase that ran it; only what w1 left
    // half-recorded may read otherwise: a stage it committed but did not record done is
    // reused (`cached`), a notice it was sending is `unconfirmed` (never sent again).
    let held_jobs: std::collections::BTreeSet<&String> = held.iter().map(|(j, _)| j).collect();
    for ((job, stage), status) in stage_statuses(dir).await {
        assert!(
            status == "done"
                || (held_jobs.contains(&job)
                    && ["cached", "unconfirmed"].contains(&status.as_str())),
            "`{stage}` of `{job}` is recorded `{status}`, and w1 did not hold it ({held:?})"
        );
    }
}

/// `run --enqueue` planned against the SQLite file in the state directory, not the store
/// `--store` names: a job done on a shared Postgres store went on the queue again.
#[tokio::test(flavor = "multi_thread")]
async fn enqueue_counts_a_job_done_on_the_configured_store_as_done() {
    let store = pg::shared().url();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    recipe(dir, &["Stored".to_owned()]);
    let on_store = |f: Factory| f.env("FACTORY_STORE", &store);
    let ran = on_store(factory(dir, &store))
        .args(["run", "tiny.yaml"])
        .run();
    assert_eq!(ran.code, 0, "{ran:?}");
    let out = on_store(factory(dir, &store))
        .args(["--json", "run", "--enqueue", "tiny.yaml"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    let summary = out.json();
    assert_eq!(
        (
            summary["enqueued"].as_u64(),
            summary["already_done"].as_u64()
        ),
        (Some(0), Some(1)),
        "{summary}"
    );
}

/// Each (job, stage)'s recorded status.
async fn stage_statuses(dir: &Path) -> BTreeMap<(String, String), String> {
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}?mode=ro",
        dir.join("state/factory.db").display()
    ))
    .await
    .unwrap();
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT job_id, stage, status FROM stages")
            .fetch_all(&pool)
            .await
            .unwrap();
    pool.close().await;
    rows.into_iter().map(|(j, s, st)| ((j, s), st)).collect()
}

/// Every phase ran the job from its first stage and found the earlier phases' stages
/// reused: it recorded them `cached` over the `done` (and the time) of the phase that
/// ran them, so `jobs show`, the report and the bench saw no render at all.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_run_in_phases_keeps_each_stage_done_by_the_phase_that_ran_it() {
    let queue = pg::shared().url();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    recipe(dir, &["Phases".to_owned()]);
    enqueue(dir, &queue, 1);
    let worker = spawn_worker(dir, &queue, "only");
    let done = wait_for(dir, &queue, Duration::from_secs(300), "the job", |s| {
        count(s, "done") == 1
    });
    stop(worker);
    // Network, render, publishing: three phases, each from the first stage.
    assert_eq!(done["jobs"][0]["attempt"], 3, "{done:#}");
    let statuses = stage_statuses(dir).await;
    assert_eq!(statuses.len(), 8, "{statuses:?}");
    assert!(
        statuses.values().all(|s| s == "done"),
        "no stage rewritten as reused: {statuses:?}"
    );
    let log = std::fs::read_to_string(dir.join("only.log")).unwrap();
    assert!(
        log.contains("render: cached"),
        "the publishing phase did reuse the render: {log}"
    );
}

/// The committed render entries of the artifact store (work folders left out): every
/// file's SHA-256, by path inside the entries.
fn render_entries(dir: &Path) -> BTreeMap<PathBuf, String> {
    use sha2::{Digest, Sha256};
    let mut files = BTreeMap::new();
    let root = dir.join("artifacts/render");
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                let digest = Sha256::digest(std::fs::read(&p).unwrap());
                files.insert(
                    p.strip_prefix(&root).unwrap().to_owned(),
                    hex::encode(digest),
                );
            }
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zombie_worker_woken_after_its_lease_passed_on_overwrites_nothing() {
    let queue = pg::shared().url();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    recipe(dir, &["Zombie".to_owned()]);
    enqueue(dir, &queue, 1);
    hold_renders(dir);
    let zombie = spawn_worker(dir, &queue, "zombie");
    wait_rendering(dir, &zombie, "the zombie");
    let seen = status(dir, &queue);
    let job = rendering_on(&seen, "zombie").unwrap_or_else(|| panic!("{seen:#}"));
    // One lease per phase: the network stages took attempt 1, the render attempt 2.
    assert_eq!(seen["jobs"][0]["attempt"], 2, "{seen:#}");
    signal(&zombie, libc::SIGSTOP);
    release_renders(dir);
    let heir = spawn_worker(dir, &queue, "heir");
    let done = wait_for(
        dir,
        &queue,
        Duration::from_secs(300),
        "the heir to finish the job",
        |s| count(s, "done") == 1,
    );
    // The heir's render took attempt 3 and the publishing stages attempt 4.
    assert_eq!(done["jobs"][0]["attempt"], 4, "{done:#}");
    let artifacts = render_entries(dir);
    let history = executions(dir).await;
    let before_wake = std::fs::read_to_string(dir.join("zombie.log")).unwrap();
    signal(&zombie, libc::SIGCONT);
    // The zombie finds its lease gone at its next renewal or write.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = std::fs::read_to_string(dir.join("zombie.log")).unwrap();
        if log.contains("was lost") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the zombie never said it lost its lease:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Time for any write it might still attempt.
    std::thread::sleep(Duration::from_secs(3));
    stop(zombie);
    stop(heir);
    assert_eq!(
        render_entries(dir),
        artifacts,
        "the render the heir committed is untouched"
    );
    assert_eq!(
        executions(dir).await,
        history,
        "the zombie recorded nothing after it woke"
    );
    assert_eq!(
        history.get(&(job.clone(), "render".to_owned())),
        Some(&2),
        "the render ran on both"
    );
    let after = status(dir, &queue);
    assert_eq!(after["jobs"][0]["state"], "done", "{after:#}");
    assert_eq!(after["jobs"][0]["attempt"], 4, "{after:#}");
    assert_eq!(
        store_status(dir).await.get(&job).map(String::as_str),
        Some("done")
    );
    assert_eq!(drafts(dir), 1);
    assert_eq!(notices(dir).len(), 1);
    let log = std::fs::read_to_string(dir.join("zombie.log")).unwrap();
    assert!(
        !before_wake.contains("was lost"),
        "the zombie slept through: {before_wake}"
    );
    assert!(
        log.contains("worker `heir`"),
        "the failure names the holder: {log}"
    );
}

const SECRET_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// A recipe whose drafts go to the TikTok account `account`.
fn publishing(dir: &Path, name: &str, account: &str, topics: &[String]) {
    publishing_with(dir, name, account, topics, "local", "");
}

/// [`publishing`] with the drafts hosted on `host`, and `tail` (more top-level keys).
fn publishing_with(
    dir: &Path,
    name: &str,
    account: &str,
    topics: &[String],
    host: &str,
    tail: &str,
) {
    clip(dir);
    write(
        dir,
        &format!("{name}.yaml"),
        &format!(
            "version: 1\nname: {name}\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 260 }}\n\
             {TEMPLATE}batch:\n  template: t\n  matrix: {{ topic: [{}], voice: [a] }}\n\
             publish: {{ host: {host}, tiktok: {{ account: {account} }} }}\n{tail}",
            topics.join(", ")
        ),
    );
}

/// The most init requests the fake saw within any 60 seconds.
fn most_in_a_minute(times: &[Instant]) -> usize {
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && t.duration_since(*start) < Duration::from_secs(60))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn three_workers_share_tiktoks_init_window_and_an_accounts_pending_cap_defers_its_jobs() {
    use crate::fakes::tiktok::{self, FakeTikTok};
    let queue = pg::shared().url();
    let fake = FakeTikTok::start().await;
    // The fake's own cap is per token; the engine's is per account, which is what is
    // tested here: two accounts on one token (one init window) get 5 drafts each.
    fake.set(|b| b.pending_cap = 100);
    let account = fake.account_json();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    // Six jobs for `main` (five drafts, then its cap) and two for `second`: seven inits,
    // one more than a minute's window holds.
    let names = topics(8);
    publishing(dir, "main", "main", &names[..6]);
    publishing(dir, "second", "second", &names[6..]);
    let with_tiktok = |f: Factory| {
        f.env("TIKTOK_CLIENT_KEY", tiktok::CLIENT_KEY)
            .env("TIKTOK_CLIENT_SECRET", tiktok::CLIENT_SECRET)
            .env("TIKTOK_API_BASE_URL", fake.url())
            .env("TIKTOK_AUTH_BASE_URL", fake.url())
            .env("TIKTOK_ACCOUNT_JSON", &account)
            .env("FACTORY_SECRET_KEY", SECRET_KEY)
    };
    let out = with_tiktok(factory(dir, &queue))
        .args(["--json", "run", "--enqueue", "main.yaml", "second.yaml"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["enqueued"], 8, "{out:?}");
    let workers: Vec<Worker> = ["b1", "b2", "b3"]
        .iter()
        .map(|name| worker_with(with_tiktok(factory(dir, &queue)), dir, name))
        .collect();
    let end = wait_for(
        dir,
        &queue,
        Duration::from_secs(600),
        "seven drafts and one deferred job",
        |s| count(s, "done") == 7 && count(s, "deferred") == 1,
    );
    for w in workers {
        stop(w);
    }
    assert_eq!(count(&end, "failed"), 0, "{end:#}");
    let times = fake.init_request_times();
    assert_eq!(times.len(), 7, "one init per draft");
    assert_eq!(fake.inbox().len(), 7);
    assert!(
        most_in_a_minute(&times) <= 6,
        "the fake saw {} inits within a minute",
        most_in_a_minute(&times)
    );
    // Seven inits at six a minute cannot all fall within one minute: the seventh waited
    // for the window.
    assert!(
        times[6].duration_since(times[0]) >= Duration::from_secs(59),
        "the inits were not paced: {:?}",
        times[6].duration_since(times[0])
    );
    let deferred: Vec<&serde_json::Value> = end["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["state"] == "deferred")
        .collect();
    assert_eq!(deferred.len(), 1, "{end:#}");
    let now = tiktok_factory::clock::now();
    for j in &deferred {
        assert_eq!(j["recipe"], "main", "{j:#}");
        assert!(
            j["why"].as_str().unwrap().contains("pending"),
            "deferred for the pending-draft cap: {j:#}"
        );
        assert!(
            j["until"].as_i64().unwrap() > now + 3_000,
            "until the cap has room again, not in a moment: {j:#}"
        );
        assert!(
            j["worker"].is_null(),
            "a deferred job holds no lease: {j:#}"
        );
    }
}

/// Workers `SIGKILLed` at random points, over everything a fleet shares: a `PostgreSQL`
/// store and queue, artifacts and drafts' hosting in an S3 bucket, and the HTTP fakes of
/// TikTok (uploads slowed so a kill can land mid-PUT) and Telegram. Each kill is logged
/// with what the worker was doing; the seed is printed (`CHAOS_SEED` repeats a run).
/// Every job ends done, no draft reaches the inbox twice, no notice is sent twice.
#[tokio::test(flavor = "multi_thread")]
#[allow(clippy::print_stderr)]
async fn workers_killed_at_random_points_lose_no_job_and_send_no_draft_or_notice_twice() {
    use crate::fakes::faults::Fault;
    use crate::fakes::telegram::{self, FakeTelegram};
    use crate::fakes::tiktok::{self, FakeTikTok};
    use crate::publish_r2::{BUCKET, Moto};
    const ACCOUNTS: [&str; 3] = ["one", "two", "three"];
    const PER_ACCOUNT: usize = 3;
    let seed: u64 = std::env::var("CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| u64::try_from(tiktok_factory::clock::now()).unwrap_or(1));
    eprintln!("chaos: CHAOS_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let moto = Moto::start().await;
    let fake = FakeTikTok::start().await;
    fake.set(|b| {
        b.pending_cap = 100;
        b.put_delay = Some(Duration::from_millis(800));
    });
    let chat = FakeTelegram::start().await;
    // Slow answers widen the windows a kill can land in: a draft's init and a notice are
    // taken by the service, and their answers are still on the way.
    for _ in 0..ACCOUNTS.len() * PER_ACCOUNT * 2 {
        fake.faults()
            .inject("/init/", Fault::Stall(Duration::from_millis(1000)));
        chat.faults()
            .inject("/sendMessage", Fault::Stall(Duration::from_millis(1500)));
    }
    let account = fake.account_json();
    let store = pg::shared().url();
    let queue = store.clone();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let names = topics(ACCOUNTS.len() * PER_ACCOUNT);
    let mut recipes = Vec::new();
    let notify = format!(
        "notify: {{ telegram: {{ chat: \"{}\" }} }}\n",
        telegram::CHAT
    );
    for (i, account) in ACCOUNTS.iter().enumerate() {
        let name = format!("chaos-{account}");
        let mine = &names[i * PER_ACCOUNT..(i + 1) * PER_ACCOUNT];
        publishing_with(dir, &name, account, mine, "r2", &notify);
        recipes.push(format!("{name}.yaml"));
    }
    let fleet = |f: Factory| {
        f.env("FACTORY_STORE", &store)
            .env("FACTORY_ARTIFACTS", format!("s3://{BUCKET}/chaos"))
            .env("R2_ENDPOINT", &moto.endpoint)
            .env("R2_ACCESS_KEY_ID", "AKIAFAKE")
            .env("R2_SECRET_ACCESS_KEY", "fake-secret-key")
            .env("R2_BUCKET", BUCKET)
            .env("TIKTOK_CLIENT_KEY", tiktok::CLIENT_KEY)
            .env("TIKTOK_CLIENT_SECRET", tiktok::CLIENT_SECRET)
            .env("TIKTOK_API_BASE_URL", fake.url())
            .env("TIKTOK_AUTH_BASE_URL", fake.url())
            .env("TIKTOK_ACCOUNT_JSON", &account)
            .env("TELEGRAM_API_BASE_URL", chat.url())
            .env("TELEGRAM_BOT_TOKEN", telegram::TOKEN)
            .env("FACTORY_SECRET_KEY", SECRET_KEY)
    };
    let jobs = names.len();
    let out = fleet(factory(dir, &queue))
        .args(["--json", "run", "--enqueue"])
        .args(&recipes)
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.json()["enqueued"], jobs, "{out:?}");
    let mut spawned = 0;
    let spawn = |spawned: &mut usize| {
        *spawned += 1;
        let name = format!("c{spawned}");
        let worker = worker_with(fleet(factory(dir, &queue)), dir, &name);
        (name, worker)
    };
    let mut workers: Vec<(String, Worker)> = (0..3).map(|_| spawn(&mut spawned)).collect();
    // Each kill waits for a worker in the stage it aims at, the publishing ones most.
    let mut aims = [
        "draft", "notify", "render", "host", "draft", "notify", "voice", "draft", "notify",
    ]
    .into_iter();
    let mut kills = Vec::new();
    let mut aim = aims.next();
    let mut aiming_since = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(1200);
    let end = loop {
        let now = status(dir, &queue);
        if count(&now, "done") + count(&now, "failed") == jobs as u64 {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; kills: {kills:#?}\nthe queue:\n{now:#}\nlogs:\n{}",
            logs(dir)
        );
        let Some(stage) = aim else {
            std::thread::sleep(Duration::from_millis(500));
            continue;
        };
        let running = now["jobs"].as_array().unwrap().iter().find(|j| {
            // A killed worker's rows show it running until its lease ends.
            j["state"] == "running"
                && j["stage"] == stage
                && workers.iter().any(|(n, _)| j["worker"] == n.as_str())
        });
        if let Some(job) = running {
            // A moment into the stage, chosen by the seed.
            std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
            let name = job["worker"].as_str().unwrap().to_owned();
            let i = workers.iter().position(|(n, _)| *n == name).unwrap();
            let (_, mut worker) = workers.swap_remove(i);
            signal(&worker, libc::SIGKILL);
            worker.0.wait().unwrap();
            // Everything the worker held dies with it, not only the stage aimed at.
            let held: Vec<String> = now["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|j| j["state"] == "running" && j["worker"] == name.as_str())
                .map(|j| format!("{} at {}", j["job"], j["stage"]))
                .collect();
            let what = format!("{name} at {stage}, holding {}", held.join(", "));
            eprintln!("chaos: killed {what}");
            kills.push(what);
            workers.push(spawn(&mut spawned));
        } else if aiming_since.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(rng.u64(20..150)));
            continue;
        } else {
            eprintln!("chaos: no worker was at {stage} within 30 s");
        }
        aim = aims.next();
        aiming_since = Instant::now();
    };
    assert!(kills.len() >= 5, "most aims were met: {kills:#?}");
    for (_, w) in workers {
        stop(w);
    }
    assert_eq!(
        count(&end, "failed"),
        0,
        "kills: {kills:#?}\n{end:#}\nlogs:\n{}",
        logs(dir)
    );
    // One draft per job in the inbox, each of a different video.
    let inbox = fake.inbox();
    let videos: std::collections::BTreeSet<String> = inbox
        .iter()
        .map(|id| fake.uploaded_sha256(id).unwrap())
        .collect();
    assert_eq!(
        (inbox.len(), videos.len()),
        (jobs, jobs),
        "one draft per job; kills: {kills:#?}"
    );
    // An init is sent again only for a draft a kill cut off before its answer was kept
    // (that upload never completes, so it is no draft). A stage deferred for the init
    // window starts again without a request, so the store's attempts are no measure here.
    let cut_drafts = kills
        .iter()
        .map(|k| k.matches("at \"draft\"").count())
        .sum::<usize>();
    assert!(
        fake.init_requests() as usize <= jobs + cut_drafts,
        "{} inits for {jobs} drafts and {cut_drafts} cut off; kills: {kills:#?}",
        fake.init_requests()
    );
    // No notice twice; one cut off by a kill is at most once, recorded unconfirmed.
    let texts: Vec<String> = chat
        .messages()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = texts.iter().collect();
    assert_eq!(distinct.len(), texts.len(), "no notice twice: {texts:#?}");
    let pool = sqlx::PgPool::connect(&store).await.unwrap();
    let unconfirmed: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM stages WHERE stage = 'notify' AND status = 'unconfirmed'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let done: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE status = 'done'")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(
        usize::try_from(done).unwrap(),
        jobs,
        "the store has every job done"
    );
    assert!(
        texts.len() <= jobs && texts.len() + usize::try_from(unconfirmed).unwrap() >= jobs,
        "a notice per job, or one recorded unconfirmed: {} sent, {unconfirmed} unconfirmed",
        texts.len()
    );
}

mod queue_store {
    //! The queue's own SQL against a real `PostgreSQL`, without processes.

    use std::time::Duration;

    use tiktok_factory::store::queue::{
        Acquired, PgBudgets, Phase, PhaseEnd, QueueError, QueueState, QueueStore, QueueTask,
    };

    use crate::pg;

    fn task(job: &str) -> QueueTask {
        QueueTask {
            job: job.to_owned(),
            recipe: "r".to_owned(),
            recipe_path: "/r.yaml".to_owned(),
            topic: "t".to_owned(),
            phase: Phase::Network,
        }
    }

    async fn waiting_in(q: &QueueStore, queue: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM apalis.jobs WHERE job_type = $1 AND status = 'Pending'",
        )
        .bind(queue)
        .fetch_one(q.pool())
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_job_enqueued_twice_is_on_the_queue_once() {
        let q = QueueStore::connect(&pg::shared().url(), 2).await.unwrap();
        assert_eq!(q.enqueue(&[task("j1"), task("j2")]).await.unwrap(), 2);
        assert_eq!(q.enqueue(&[task("j1"), task("j3")]).await.unwrap(), 1);
        assert_eq!(waiting_in(&q, Phase::Network.queue()).await, 3);
        // Set-up is safe to repeat (every worker runs it at start).
        let again = QueueStore::connect(&pg::shared().url(), 2).await.unwrap();
        again.close().await;
    }

    #[tokio::test]
    async fn a_lease_taken_over_fails_every_write_of_its_old_holder_with_a_named_error() {
        let url = pg::shared().url();
        let q = QueueStore::connect(&url, 2).await.unwrap();
        let t = task("job-1");
        q.enqueue(std::slice::from_ref(&t)).await.unwrap();
        let short = Duration::from_millis(300);
        assert_eq!(
            q.acquire(&t, "old", short).await.unwrap(),
            Acquired::Held(1)
        );
        assert_eq!(
            q.acquire(&t, "new", short).await.unwrap(),
            Acquired::Busy,
            "a live lease is not taken"
        );
        q.fence("job-1", 1, Some("render")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            matches!(
                q.renew("job-1", 1, short).await,
                Err(QueueError::LeaseLost { .. })
            ),
            "an ended lease is not renewed"
        );
        assert_eq!(
            q.acquire(&t, "new", Duration::from_secs(30)).await.unwrap(),
            Acquired::Held(2),
            "the fencing token is the attempt number"
        );
        let err = q.fence("job-1", 1, Some("render")).await.unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, QueueError::LeaseLost { token: 1, .. }),
            "{err:?}"
        );
        assert!(
            text.contains("worker `new` holds attempt 2"),
            "the error names the holder: {text}"
        );
        let stale = q.finish(&t, 1, &PhaseEnd::Next(Phase::Render)).await;
        assert!(
            matches!(stale, Err(QueueError::LeaseLost { .. })),
            "{stale:?}"
        );
        assert_eq!(
            waiting_in(&q, Phase::Render.queue()).await,
            0,
            "the stale holder queued nothing"
        );
        let row = q.jobs().await.unwrap().remove(0);
        assert_eq!(
            (row.state, row.worker.as_deref(), row.attempt),
            (QueueState::Running, Some("new"), 2)
        );
        q.fence("job-1", 2, Some("render")).await.unwrap();
        q.finish(&t, 2, &PhaseEnd::Next(Phase::Render))
            .await
            .unwrap();
        assert_eq!(waiting_in(&q, Phase::Render.queue()).await, 1);
        let row = q.jobs().await.unwrap().remove(0);
        assert_eq!(
            (row.state, row.phase, row.worker),
            (QueueState::Waiting, Phase::Render, None)
        );
        // A finished phase gives its lease up: the next phase takes it at once.
        let render = QueueTask {
            phase: Phase::Render,
            ..t.clone()
        };
        assert_eq!(
            q.acquire(&render, "third", short).await.unwrap(),
            Acquired::Held(3)
        );
        q.finish(
            &render,
            3,
            &PhaseEnd::Deferred {
                phase: Phase::Network,
                until: 4_000_000_000,
                why: "tiktok pending drafts".to_owned(),
            },
        )
        .await
        .unwrap();
        let row = q.jobs().await.unwrap().remove(0);
        assert_eq!(
            (row.state, row.until, row.why.as_deref()),
            (
                QueueState::Deferred,
                Some(4_000_000_000),
                Some("tiktok pending drafts")
            )
        );
        let run_at: i64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM MAX(run_at))::bigint FROM apalis.jobs WHERE job_type = $1",
        )
        .bind(Phase::Network.queue())
        .fetch_one(q.pool())
        .await
        .unwrap();
        assert_eq!(
            run_at, 4_000_000_000,
            "the deferred task runs when the budget refills"
        );
    }

    /// A worker killed after it finished a phase (the next one queued) but before the
    /// queue library heard so: the library runs the finished task again. It must take no
    /// lease and queue the next phase no second time.
    #[tokio::test]
    async fn a_phase_task_run_again_after_its_phase_finished_takes_no_lease_and_queues_nothing() {
        let q = QueueStore::connect(&pg::shared().url(), 2).await.unwrap();
        let t = task("job-again");
        let long = Duration::from_secs(30);
        q.enqueue(std::slice::from_ref(&t)).await.unwrap();
        assert_eq!(q.acquire(&t, "w1", long).await.unwrap(), Acquired::Held(1));
        q.finish(&t, 1, &PhaseEnd::Next(Phase::Render))
            .await
            .unwrap();
        assert_eq!(waiting_in(&q, Phase::Render.queue()).await, 1);
        let again = q.acquire(&t, "w2", long).await.unwrap();
        assert!(
            matches!(&again, Acquired::Stale(why) if why.contains("render phase")),
            "{again:?}"
        );
        let row = q.jobs().await.unwrap().remove(0);
        assert_eq!(
            (row.state, row.phase, row.worker, row.attempt),
            (QueueState::Waiting, Phase::Render, None, 1),
            "the left-over task changed nothing"
        );
        let render = QueueTask {
            phase: Phase::Render,
            ..t.clone()
        };
        assert_eq!(
            q.acquire(&render, "w2", long).await.unwrap(),
            Acquired::Held(2),
            "the left-over task took no lease"
        );
        q.finish(&render, 2, &PhaseEnd::Done).await.unwrap();
        assert!(matches!(
            q.acquire(&render, "w3", long).await.unwrap(),
            Acquired::Stale(why) if why.contains("done already")
        ));
        assert_eq!(
            waiting_in(&q, Phase::Network.queue()).await,
            1,
            "only the enqueued task"
        );
    }

    #[tokio::test]
    async fn budgets_hold_their_limit_across_workers_taking_at_once() {
        let url = pg::shared().url();
        let mut workers = Vec::new();
        for _ in 0..3 {
            workers.push(PgBudgets::new(&QueueStore::connect(&url, 4).await.unwrap()));
        }
        let mut takes = tokio::task::JoinSet::new();
        for i in 0..20 {
            let b = workers[i % 3].clone();
            takes.spawn(async move { b.take_at("tiktok:inits:o", 6, 60, 1_000).await.unwrap() });
        }
        let results = takes.join_all().await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 6);
        // Whole seconds: a take at 1000 may have happened at 1000.9, so it stays in the
        // window through 1060 and a seventh waits for 1061.
        assert!(
            results
                .iter()
                .filter_map(|r| r.err())
                .all(|until| until == 1_061)
        );
        assert_eq!(
            workers[1]
                .take_at("tiktok:inits:o", 6, 60, 1_060)
                .await
                .unwrap(),
            Err(1_061),
            "a take 60 s after the first may fall 59.1 s after it"
        );
        // The window slides: at 1061 the six takes at 1000 have left it.
        assert_eq!(
            workers[1]
                .take_at("tiktok:inits:o", 6, 60, 1_061)
                .await
                .unwrap(),
            Ok(())
        );
        workers[2].give_back_at("tiktok:inits:o").await.unwrap();
        assert_eq!(
            workers[0]
                .take_at("tiktok:inits:o", 1, 60, 1_062)
                .await
                .unwrap(),
            Ok(())
        );
        // A 429's block holds for everyone; a shorter block never shortens it (GREATEST).
        workers[0].block_at("pexels:k", 5_000).await.unwrap();
        workers[1].block_at("pexels:k", 4_000).await.unwrap();
        assert_eq!(
            workers[2]
                .take_at("pexels:k", 100, 3_600, 1_000)
                .await
                .unwrap(),
            Err(5_000)
        );
        assert_eq!(
            workers[2]
                .take_at("pexels:k", 100, 3_600, 5_000)
                .await
                .unwrap(),
            Ok(())
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_hands_a_running_render_back_at_once_and_another_worker_finishes_it() {
    let queue = pg::shared().url();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    recipe(dir, &["Handback".to_owned()]);
    enqueue(dir, &queue, 1);
    hold_renders(dir);
    let first = spawn_worker(dir, &queue, "first");
    wait_rendering(dir, &first, "the first worker");
    stop(first);
    // Handed back, not left to expire: waiting for a render slot, with no lease held.
    let back = status(dir, &queue);
    assert_eq!(back["jobs"][0]["state"], "waiting", "{back:#}");
    assert_eq!(back["jobs"][0]["phase"], "render", "{back:#}");
    assert!(back["jobs"][0]["worker"].is_null(), "{back:#}");
    let log = std::fs::read_to_string(dir.join("first.log")).unwrap();
    assert!(log.contains("render: interrupted"), "{log}");
    release_renders(dir);
    let second = spawn_worker(dir, &queue, "second");
    let done = wait_for(
        dir,
        &queue,
        Duration::from_secs(300),
        "the second worker to finish",
        |s| count(s, "done") == 1,
    );
    stop(second);
    // Network, the render handed back, the render again, publishing.
    assert_eq!(done["jobs"][0]["attempt"], 4, "{done:#}");
    assert_eq!(drafts(dir), 1);
    assert_eq!(notices(dir).len(), 1);
}

/// The worker examples match the binary: the Deployment is well-formed, runs `worker`,
/// sets only variables the man page documents (every credential from a Secret, none
/// inline), sizes the slots from the pod's CPU request, and waits for the SIGTERM
/// hand-back; the image has the tools the stages run.
#[test]
fn the_worker_examples_name_only_what_the_binary_reads_and_hold_no_credential() {
    let root = crate::support::repo().join("examples/worker");
    let text = std::fs::read_to_string(root.join("deployment.yaml")).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(doc["kind"], "Deployment");
    let pod = &doc["spec"]["template"]["spec"];
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace >= 10, "room for the SIGTERM hand-back: {grace}");
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "worker",
            "--renders",
            "$(RENDERS)",
            "--network",
            "$(NETWORK)"
        ]
    );
    let help = Factory::new().args(["worker", "--help"]).run().stdout;
    for flag in ["--renders", "--network"] {
        assert!(help.contains(flag), "`factory worker` takes `{flag}`");
    }
    let man = Factory::new().arg("man").run().stdout.replace("\\-", "-");
    let documented = |name: &str| man.contains(&format!("\\fB{name}\\fR"));
    let mut names = Vec::new();
    for var in container["env"].as_array().unwrap() {
        let name = var["name"].as_str().unwrap();
        let from = &var["valueFrom"];
        if ["RENDERS", "NETWORK"].contains(&name) {
            assert_eq!(
                from["resourceFieldRef"]["resource"], "requests.cpu",
                "{var}"
            );
            continue;
        }
        assert!(documented(name), "`{name}` is not in `factory man`");
        if var.get("value").is_some() {
            assert!(
                ["FACTORY_ARTIFACTS", "FACTORY_STATE_DIR"].contains(&name),
                "`{name}` is set inline: {var}"
            );
        } else {
            assert!(from["secretKeyRef"]["name"].is_string(), "{var}");
        }
        names.push(name.to_owned());
    }
    for must in ["FACTORY_STORE", "FACTORY_QUEUE", "FACTORY_ARTIFACTS"] {
        assert!(
            names.iter().any(|n| n == must),
            "the Deployment sets `{must}`"
        );
    }
    // The Secrets' keys, as the comment creates them, are variables the binary reads.
    let literals: Vec<&str> = text
        .split("--from-literal=")
        .skip(1)
        .map(|rest| rest.split('=').next().unwrap())
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        })
        .collect();
    assert!(literals.len() >= 8, "{literals:?}");
    for name in literals {
        assert!(
            documented(name),
            "secret key `{name}` is not in `factory man`"
        );
    }
    let image = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    for needed in [
        "cargo build --release --locked --bin factory",
        "FROM debian:",
        "ffmpeg",
        "espeak-ng",
        "fonts-dejavu-core",
        "ca-certificates",
        "CMD [\"worker\"]",
    ] {
        assert!(image.contains(needed), "the image has `{needed}`");
    }
}

/// `factory worker` opened only the local cache and ignored `--artifacts s3://…`: on
/// another machine the next phase of a job found nothing, and the effect ledger that keeps
/// drafts to one was not shared.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_keeps_artifacts_and_its_effect_ledger_in_the_s3_bucket() {
    use crate::publish_r2::{BUCKET, Moto};
    let moto = Moto::start().await;
    let queue = pg::shared().url();
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    recipe(dir, &["Bucket".to_owned()]);
    enqueue(dir, &queue, 1);
    let on_s3 = |f: Factory| {
        f.env("FACTORY_ARTIFACTS", format!("s3://{BUCKET}/workers"))
            .env("R2_ENDPOINT", &moto.endpoint)
            .env("R2_ACCESS_KEY_ID", "AKIAFAKE")
            .env("R2_SECRET_ACCESS_KEY", "fake-secret-key")
    };
    let worker = worker_with(on_s3(factory(dir, &queue)), dir, "s3");
    wait_for(dir, &queue, Duration::from_secs(300), "the job", |s| {
        count(s, "done") == 1
    });
    stop(worker);
    let keys = moto.keys("workers/").await;
    for kind in ["workers/render/", "workers/effects/", "workers/jobs/"] {
        assert!(
            keys.iter().any(|k| k.starts_with(kind)),
            "`{kind}` is in the bucket: {keys:?}"
        );
    }
}

/// Workers of one machine started together opened a fresh SQLite store at once, and all
/// but one stopped on a migration the first had applied (`duplicate column name`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fresh_store_opened_by_several_workers_at_once_is_migrated_once() {
    use tiktok_factory::store::Store;
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut opens = tokio::task::JoinSet::new();
        for _ in 0..6 {
            let path = dir.path().to_owned();
            opens.spawn(async move { Store::open(path.as_path()).await.map(|_| ()) });
        }
        for opened in opens.join_all().await {
            opened.unwrap();
        }
    }
}
