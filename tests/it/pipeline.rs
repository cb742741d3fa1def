//! `factory run` end to end, offline: real ffmpeg, espeak-ng and SQLite. Recipes are tiny
//! (a few seconds of narration, one clip) so every run is a real render, just a short one.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use tiktok_factory::media::{Tools, integrated_lufs};
use tiktok_factory::store::{JobFilter, Status, Store};

use crate::support::{Factory, Output, executed, write};

const VOICES: &str = "voices:\n  a: { provider: espeak, voice: en-us, rate: 260 }\n  b: { provider: espeak, voice: en-gb, rate: 260 }\n";

/// A two-second portrait clip made with ffmpeg, for `provider: local` footage.
fn make_clip(path: &Path, source: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("{source}=size=540x960:rate=30:duration=2"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn run(dir: &Path, recipe: &str) -> Output {
    Factory::new()
        .args(["run", recipe])
        .current_dir(dir)
        .env("CI", "1")
        .run()
}

fn drafts(dir: &Path, recipe: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir.join(".factory/drafts").join(recipe))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|e| e == "mp4"));
    out.sort();
    out
}

async fn store(dir: &Path) -> Store {
    Store::open_read_only(&dir.join(".factory"))
        .await
        .unwrap()
        .expect("a store")
}

/// Grey-level bytes of one frame, scaled down, at `at` seconds.
fn frame(video: &Path, at: &str) -> Vec<u8> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", at, "-i"])
        .arg(video)
        .args([
            "-frames:v",
            "1",
            "-vf",
            "scale=270:480,format=gray",
            "-f",
            "rawvideo",
            "-",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn drafts_are_watchable_and_a_second_run_executes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    make_clip(&dir.path().join("clips/one.mp4"), "testsrc2");
    write(
        dir.path(),
        "tiny.yaml",
        &format!(
            "version: 1\nname: tiny\n{VOICES}templates:\n  plain:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: local, dir: clips, clips: 1 }}\n    captions: {{ style: none }}\n    title: \"{{{{ topic }}}}\"\n  captioned:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: local, dir: clips, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  matrix: {{ topic: [Alpha], voice: [a], template: [plain, captioned] }}\n"
        ),
    );
    let first = run(dir.path(), "tiny.yaml");
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(
        executed(&first),
        2 * 8 - 2,
        "the two jobs share script and footage"
    );
    let videos = drafts(dir.path(), "tiny");
    assert_eq!(videos.len(), 2);

    let tools = Tools::detect().unwrap();
    for video in &videos {
        let info = tiktok_factory::media::probe(&tools, video).await.unwrap();
        let v = info.video.expect("a video stream");
        assert_eq!((v.codec.as_str(), v.width, v.height), ("h264", 1080, 1920));
        assert_eq!(info.audio.expect("an audio stream").codec, "aac");
        let lufs = integrated_lufs(&tools, video).await.unwrap();
        assert!(
            (-16.0..=-12.0).contains(&lufs),
            "narration loudness {lufs} LUFS"
        );
        let sidecar: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(video.with_extension("json")).unwrap())
                .unwrap();
        for key in ["title", "caption_text", "hashtags", "credits", "job_id"] {
            assert!(
                sidecar.get(key).is_some(),
                "sidecar lacks `{key}`: {sidecar}"
            );
        }
    }

    // Same footage, same narration: the only difference between the two is the captions.
    let s = store(dir.path()).await;
    let jobs = s.list_jobs(&JobFilter::default()).await.unwrap();
    let by_template = |t: &str| {
        let job = jobs.iter().find(|j| j.cell.contains(t)).unwrap();
        // Drafts are named `<topic>-<voice>-<short id>.mp4`.
        let suffix = format!("-{}.mp4", &job.id[..8]);
        std::fs::read_dir(dir.path().join(".factory/drafts/tiny"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(&suffix))
            .unwrap()
    };
    let (plain, captioned) = (
        frame(&by_template("plain"), "1.0"),
        frame(&by_template("captioned"), "1.0"),
    );
    assert_eq!(plain.len(), captioned.len());
    let differing = plain
        .iter()
        .zip(&captioned)
        .filter(|(a, b)| a.abs_diff(**b) > 40)
        .count();
    assert!(
        differing * 200 > plain.len(),
        "captions changed only {differing} of {} pixels",
        plain.len()
    );

    let second = run(dir.path(), "tiny.yaml");
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(executed(&second), 0, "{}", second.stdout);
    assert!(
        second.stdout.contains("2 already done"),
        "{}",
        second.stdout
    );
    assert_eq!(drafts(dir.path(), "tiny").len(), 2);

    let machine = Factory::new()
        .args(["--json", "run", "tiny.yaml"])
        .current_dir(dir.path())
        .run();
    assert_eq!(machine.code, 0, "{machine:?}");
    let events: Vec<serde_json::Value> = machine
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let summary = events.last().expect("a summary line");
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["summary"]["already_done"], 2);
    assert_eq!(summary["summary"]["executed_stages"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_one_voice_reruns_only_that_jobs_voice_to_draft_stages() {
    let dir = tempfile::tempdir().unwrap();
    // The pitch, not the rate: a voice of another pace gets a script sized to it.
    let recipe = |pitch: u32| {
        format!(
            "version: 1\nname: voices\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 260 }}\n  b: {{ provider: espeak, voice: en-gb, rate: 260, pitch: {pitch} }}\ntemplates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  template: t\n  matrix:\n    topic: [Alpha]\n    voice: [a]\n    include: [{{ topic: Beta, voice: b }}]\n"
        )
    };
    write(dir.path(), "voices.yaml", &recipe(50));
    let first = run(dir.path(), "voices.yaml");
    assert_eq!(first.code, 0, "{first:?}");

    write(dir.path(), "voices.yaml", &recipe(30));
    let second = run(dir.path(), "voices.yaml");
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(executed(&second), 6, "{}", second.stdout);

    let s = store(dir.path()).await;
    let jobs = s.list_jobs(&JobFilter::default()).await.unwrap();
    let beta: Vec<_> = jobs.iter().filter(|j| j.topic == "Beta").collect();
    assert_eq!(
        beta.len(),
        2,
        "the old and the new Beta job are both recorded"
    );
    let new = beta
        .iter()
        .max_by_key(|j| j.created_at.max(j.updated_at))
        .unwrap();
    let stages = s.stages(&new.id).await.unwrap();
    let status = |name: &str| {
        stages
            .iter()
            .find(|st| st.stage == name)
            .map(|st| st.status.as_str())
            .unwrap_or("missing")
    };
    assert_eq!(status("script"), "cached");
    assert_eq!(status("footage"), "cached");
    for name in ["voice", "captions", "render", "host", "draft", "notify"] {
        assert_eq!(status(name), "done", "stage {name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_clip_fails_only_its_job_and_a_rerun_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    make_clip(&dir.path().join("good/one.mp4"), "testsrc2");
    write(dir.path(), "bad/one.mp4", "this is not a video");
    write(
        dir.path(),
        "mixed.yaml",
        &format!(
            "version: 1\nname: mixed\n{VOICES}templates:\n  good:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: local, dir: good, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\n  bad:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: local, dir: bad, clips: 1 }}\n    title: \"{{{{ topic }}}} again\"\nbatch:\n  matrix: {{ topic: [Alpha], voice: [a], template: [good, bad] }}\n"
        ),
    );
    let first = run(dir.path(), "mixed.yaml");
    assert_eq!(first.code, 1, "{first:?}");
    assert!(first.stderr.contains("job failed"), "{}", first.stderr);
    assert!(
        first.stderr.contains("one.mp4"),
        "the error names the file: {}",
        first.stderr
    );
    assert_eq!(drafts(dir.path(), "mixed").len(), 1);
    let failed_id = {
        let s = store(dir.path()).await;
        let jobs = s.list_jobs(&JobFilter::default()).await.unwrap();
        let failed: Vec<_> = jobs.iter().filter(|j| j.status == Status::Failed).collect();
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].stage.as_deref(), Some("footage"));
        assert!(
            failed[0]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("one.mp4")
        );
        s.close().await;
        failed[0].id.clone()
    };

    std::fs::remove_file(dir.path().join("bad/one.mp4")).unwrap();
    // A moving pattern: a still one would fail the frozen gate.
    make_clip(&dir.path().join("bad/one.mp4"), "testsrc");
    let second = Factory::new()
        .args(["jobs", "retry", &failed_id[..8]])
        .current_dir(dir.path())
        .env("CI", "1")
        .run();
    assert_eq!(second.code, 0, "{second:?}");
    assert!(
        second.stdout.starts_with("1 done"),
        "only the retried job runs: {}",
        second.stdout
    );
    // Script, narration and captions are shared with the job that finished (same topic and
    // voice); only footage and what depends on it run for the job left.
    assert_eq!(executed(&second), 5, "{}", second.stdout);
    assert_eq!(drafts(dir.path(), "mixed").len(), 2);
}

#[test]
fn a_missing_tool_stops_before_any_job_with_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "one.yaml",
        &format!(
            "version: 1\nname: one\n{VOICES}templates:\n  t:\n    script: {{ provider: offline }}\n    title: x\nbatch:\n  template: t\n  matrix: {{ topic: [A], voice: [a] }}\n"
        ),
    );
    let out = Factory::new()
        .args(["run", "one.yaml"])
        .current_dir(dir.path())
        .env("FACTORY_FFMPEG", "/nonexistent/ffmpeg")
        .run();
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("ffmpeg") && out.stderr.contains("apt-get install"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join(".factory/drafts").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_mid_batch_then_rerun_finishes_every_job_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "batch.yaml",
        &format!(
            "version: 1\nname: batch\n{VOICES}templates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  template: t\n  matrix: {{ topic: [Alpha, Beta, Gamma], voice: [a] }}\n"
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["run", "batch.yaml"])
        .current_dir(dir.path())
        .env("CI", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill as soon as the first render starts: mid-batch, with work in flight.
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines() {
            if line.unwrap_or_default().contains("render: running") {
                return true;
            }
        }
        false
    });
    assert!(reader.join().unwrap(), "a render started");
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    let again = run(dir.path(), "batch.yaml");
    assert_eq!(again.code, 0, "{again:?}");
    let s = store(dir.path()).await;
    let jobs = s.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 3);
    assert!(jobs.iter().all(|j| j.status == Status::Done), "{jobs:?}");
    let videos = drafts(dir.path(), "batch");
    assert_eq!(videos.len(), 3, "{videos:?}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join(".factory/drafts/batch"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "half-written files: {leftovers:?}");
    for job in &jobs {
        let done: Vec<_> = s
            .stages(&job.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|st| st.stage == "draft")
            .collect();
        assert_eq!(done.len(), 1);
    }
    let third = run(dir.path(), "batch.yaml");
    assert_eq!(executed(&third), 0, "{}", third.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_records_interrupted_stages_that_resume_next_run() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "stop.yaml",
        &format!(
            "version: 1\nname: stop\n{VOICES}templates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  template: t\n  matrix: {{ topic: [Alpha], voice: [a] }}\n"
        ),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(["run", "stop.yaml"])
        .current_dir(dir.path())
        .env("CI", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        let mut lines = std::io::BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            let line = line.unwrap_or_default();
            let started = line.contains("render: running");
            seen.push(line);
            if started {
                break;
            }
        }
        (seen, lines)
    });
    let (seen, rest) = reader.join().unwrap();
    assert!(
        seen.iter().any(|l| l.contains("render: running")),
        "{seen:?}"
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    let tail: Vec<String> = rest.map(Result::unwrap_or_default).collect();
    assert_eq!(status.code(), Some(1), "{tail:?}");
    assert!(
        tail.iter().any(|l| l.contains("render: interrupted")),
        "{tail:?}"
    );

    let s = store(dir.path()).await;
    let job = &s.list_jobs(&JobFilter::default()).await.unwrap()[0];
    assert_eq!(job.status, Status::Interrupted);
    assert_eq!(job.stage.as_deref(), Some("render"));
    s.close().await;
    assert!(drafts(dir.path(), "stop").is_empty());

    let again = run(dir.path(), "stop.yaml");
    assert_eq!(again.code, 0, "{again:?}");
    // Render and everything after it; script, footage, voice and captions were kept.
    assert_eq!(executed(&again), 4, "{}", again.stdout);
    assert_eq!(drafts(dir.path(), "stop").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_video_renders_again_from_kept_inputs_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "keep.yaml",
        &format!(
            "version: 1\nname: keep\n{VOICES}templates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\nbatch:\n  template: t\n  matrix: {{ topic: [Alpha], voice: [a] }}\n"
        ),
    );
    assert_eq!(run(dir.path(), "keep.yaml").code, 0);
    assert_eq!(drafts(dir.path(), "keep").len(), 1);

    let later = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 15 * 86_400)
        .to_string();
    let gc = Factory::new()
        .args(["gc"])
        .current_dir(dir.path())
        .env("FACTORY_NOW", &later)
        .run();
    assert_eq!(gc.code, 0, "{gc:?}");
    assert!(drafts(dir.path(), "keep").is_empty(), "the draft expired");

    let id = {
        let s = store(dir.path()).await;
        let job = s.list_jobs(&JobFilter::default()).await.unwrap().remove(0);
        assert_eq!(job.status, Status::Done, "the job row stays");
        s.close().await;
        job.id
    };
    let retried = Factory::new()
        .args(["jobs", "retry", &id])
        .current_dir(dir.path())
        .env("CI", "1")
        .run();
    assert_eq!(retried.code, 0, "{retried:?}");
    assert!(
        retried.stderr.contains("script: cached"),
        "the script is reused: {}",
        retried.stderr
    );
    assert!(
        retried.stderr.contains("render: done"),
        "the video renders again: {}",
        retried.stderr
    );
    assert!(
        retried.stderr.contains("draft: cached"),
        "the draft is not sent twice: {}",
        retried.stderr
    );
}
