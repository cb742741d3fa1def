//! Quality gates through `factory run`: a render that breaks a gate (a black clip, a
//! frozen clip, a silent or near-silent narration) fails its job at `render` with the gate
//! named and where; nothing is delivered. A render that passes them all is delivered.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use tiktok_factory::store::{JobFilter, Status, Store};

use crate::support::{Factory, Output, write};

/// A portrait clip from a lavfi source, for `provider: local` footage.
fn clip(path: &Path, source: &str, seconds: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("{source}:size=270x480:rate=30:duration={seconds}"))
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn recipe(dir: &Path) {
    write(
        dir,
        "gates.yaml",
        r"version: 1
name: gates
voices:
  n: { provider: espeak, voice: en-us, rate: 200 }
templates:
  t:
    script: { provider: offline, seconds: 6 }
    footage: { provider: local, dir: clips }
    video: { max_seconds: 30 }
    title: x
batch:
  template: t
  matrix: { topic: [Owls], voice: [n] }
",
    );
}

/// An espeak-ng that speaks, then turns what it wrote down by `gain` (a broken or
/// muted voice).
fn quiet_espeak(dir: &Path, gain: &str) -> std::path::PathBuf {
    let path = dir.join("quiet-espeak");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             espeak-ng \"$@\" || exit $?\n\
             out=\"\"; prev=\"\"\n\
             for a in \"$@\"; do [ \"$prev\" = \"-w\" ] && out=\"$a\"; prev=\"$a\"; done\n\
             [ -n \"$out\" ] || exit 0\n\
             ffmpeg -v error -y -i \"$out\" -af volume={gain} \"$out.q.wav\" && mv \"$out.q.wav\" \"$out\"\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn run(dir: &Path, espeak: Option<&Path>) -> Output {
    let mut factory = Factory::new()
        .args(["--state-dir", "state", "run", "gates.yaml"])
        .current_dir(dir)
        .env("CI", "1");
    if let Some(espeak) = espeak {
        factory = factory.env("FACTORY_ESPEAK", espeak);
    }
    factory.run()
}

/// The job's failed stage and its error, from the store.
async fn failure(dir: &Path) -> (String, String) {
    let store = Store::open_read_only(&dir.join("state"))
        .await
        .unwrap()
        .expect("a store");
    let jobs = store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.status, Status::Failed, "{job:?}");
    (
        job.stage.clone().unwrap_or_default(),
        job.error.clone().unwrap_or_default(),
    )
}

fn delivered(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("state/drafts/gates"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "mp4"))
            })
            .count()
        })
        .unwrap_or(0)
}

async fn assert_gate(dir: &Path, out: &Output, gate: &str, also: &str) {
    assert_ne!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    let (stage, error) = failure(dir).await;
    assert_eq!(stage, "render", "{error}");
    assert!(error.contains(&format!("gate `{gate}`")), "{error}");
    assert!(error.contains(also), "{error}");
    assert_eq!(
        delivered(dir),
        0,
        "a video that failed a gate was delivered"
    );
}

#[tokio::test]
async fn a_black_clip_fails_the_black_gate_at_render() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    clip(&dir.path().join("clips/a.mp4"), "color=c=black", 9);
    let out = run(dir.path(), None);
    assert_gate(dir.path(), &out, "black", "black picture at 0.00–").await;
}

#[tokio::test]
async fn a_frozen_clip_fails_the_frozen_gate_at_render() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    clip(&dir.path().join("clips/a.mp4"), "color=c=gray", 9);
    let out = run(dir.path(), None);
    assert_gate(dir.path(), &out, "frozen", "frozen picture at 0.00–").await;
}

#[tokio::test]
async fn a_silent_narration_fails_the_narration_gate_at_render() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    clip(&dir.path().join("clips/a.mp4"), "testsrc2=alpha=0", 9);
    let espeak = quiet_espeak(dir.path(), "0");
    let out = run(dir.path(), Some(&espeak));
    assert_gate(dir.path(), &out, "narration", "no narration heard at").await;
}

#[tokio::test]
async fn a_narration_too_quiet_to_reach_the_target_fails_the_loudness_gate() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    clip(&dir.path().join("clips/a.mp4"), "testsrc2=alpha=0", 9);
    // 45 dB down: the render gives at most 30 dB, so the video stays far under −14 LUFS.
    let espeak = quiet_espeak(dir.path(), "-45dB");
    let out = run(dir.path(), Some(&espeak));
    assert_gate(dir.path(), &out, "loudness", "LUFS, not -14 ± 1 LUFS").await;
}

#[tokio::test]
async fn a_render_that_passes_every_gate_is_delivered() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    clip(&dir.path().join("clips/a.mp4"), "testsrc2=alpha=0", 9);
    let out = run(dir.path(), None);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    assert_eq!(delivered(dir.path()), 1);
}
