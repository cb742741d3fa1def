//! A music folder: each job picks one file by its id, the same one on every run, and the
//! render plays it under the voice, looped, fading out at the end.

use std::path::Path;
use std::process::Command;

use tiktok_factory::media::{self, RenderSpec, Tools};
use tiktok_factory::stages::render::pick;

use crate::support::{Factory, Output, executed, write};

fn ffmpeg(args: &[&str]) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y"])
        .args(args)
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg {args:?}");
}

fn tone(path: &Path, hz: u32, seconds: f64) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("sine=f={hz}:r=44100:d={seconds}"),
        path.to_str().unwrap(),
    ]);
}

fn factory(dir: &Path, args: &[&str]) -> Output {
    Factory::new()
        .args(["--state-dir", "state"])
        .args(args)
        .current_dir(dir)
        .run()
}

/// The mean level of `seconds` of a file's audio from `from`, in dB.
fn mean_volume(file: &Path, from: f64, seconds: f64) -> f64 {
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostats", "-ss", &from.to_string(), "-t"])
        .arg(seconds.to_string())
        .arg("-i")
        .arg(file)
        .args(["-vn", "-af", "volumedetect", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    log.lines()
        .find_map(|l| l.split("mean_volume:").nth(1))
        .and_then(|v| v.trim().trim_end_matches("dB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no mean_volume in {log}"))
}

#[test]
fn each_job_picks_the_same_file_of_the_folder_on_every_run_and_jobs_show_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("music")).unwrap();
    for (name, hz) in [
        ("a.wav", 330),
        ("b.wav", 440),
        ("c.wav", 550),
        (".hidden.wav", 660),
    ] {
        tone(&d.join("music").join(name), hz, 1.0);
    }
    std::fs::write(d.join("music/notes.txt"), "not music").unwrap();
    write(
        d,
        "bed.yaml",
        "version: 1\nname: bed\nvoices:\n  a: { provider: espeak, voice: en-us, rate: 260 }\n\
         templates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: generated, clips: 1 }\n\
         \x20   captions: { style: none }\n    music: { dir: music/, volume: 0.15 }\n    title: \"{{ topic }}\"\n\
         batch:\n  template: t\n  matrix: { topic: [Owls, Bats, Moths], voice: [a] }\n",
    );
    let run = factory(d, &["run", "bed.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    let files = ["a.wav", "b.wav", "c.wav"];
    let jobs = factory(d, &["--json", "jobs", "list"]).json();
    let ids: Vec<String> = jobs["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    let mut picked = Vec::new();
    for id in &ids {
        let expected = format!("music/{}", files[pick(id, files.len())]);
        let shown = factory(d, &["--json", "jobs", "show", id]).json();
        assert_eq!(shown["music"], expected.as_str(), "job {id}");
        let human = factory(d, &["jobs", "show", id]);
        assert!(
            human.stdout.contains(&format!("  music    {expected}\n")),
            "{}",
            human.stdout
        );
        picked.push(expected);
    }
    // The pick is the job's, not the run's: a second run renders nothing.
    let again = factory(d, &["run", "bed.yaml"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(executed(&again), 0, "{again:?}");
    // A pick is a pure function of the id and the count, spread over the files.
    let spread: std::collections::BTreeSet<usize> =
        (0..60).map(|i| pick(&format!("{i:016x}"), 3)).collect();
    assert_eq!(spread.len(), 3);
    assert_eq!(pick(&ids[0], 3), pick(&ids[0], 3));
}

#[tokio::test]
async fn music_plays_under_the_voice_looped_and_is_quieter_in_the_last_second() {
    let tools = Tools::detect().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let clip = d.join("clip.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=270x480:rate=30:d=1",
        "-pix_fmt",
        "yuv420p",
        clip.to_str().unwrap(),
    ]);
    // A voice for the first second, then a gap to the end of the six.
    let voice = d.join("voice.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "aevalsrc='0.3*sin(2*PI*220*t)*lt(t,1)':s=44100:d=6",
        voice.to_str().unwrap(),
    ]);
    // Two seconds of music, so the bed must loop to fill six.
    let music = d.join("music.wav");
    tone(&music, 660, 2.0);
    let render = |name: &str, music: Option<&Path>| {
        let mut spec = RenderSpec::new(vec![clip.clone()], voice.clone(), 6.0, d.join(name));
        (spec.width, spec.height, spec.preset) = (540, 960, "ultrafast".into());
        spec.music = music.map(Path::to_path_buf);
        spec.music_volume = 0.15;
        spec
    };
    let with = render("with.mp4", Some(&music));
    let without = render("without.mp4", None);
    media::render(&tools, &with).await.unwrap();
    media::render(&tools, &without).await.unwrap();

    // In the gap, after the two-second file has ended once: the music, against silence.
    let gap = mean_volume(&with.out, 2.5, 1.0);
    let silent = mean_volume(&without.out, 2.5, 1.0);
    assert!(gap > -50.0, "music in the gap at {gap} dB");
    assert!(
        silent < -70.0,
        "the narration alone is silent there: {silent} dB"
    );
    // The fade-out: the last second well under the middle.
    let last = mean_volume(&with.out, 5.0, 1.0);
    assert!(last < gap - 6.0, "last second {last} dB, middle {gap} dB");
    // The voice is still there over the music.
    let spoken = mean_volume(&with.out, 0.2, 0.6);
    assert!(spoken > gap, "voice {spoken} dB under music {gap} dB");
}
