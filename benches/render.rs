//! Our render against a hand-written ffmpeg command with the same encoder settings on the
//! same inputs, runs alternating: the graph we build, plus the loudness measurement, the
//! verification and the quality gates we run after, should cost next to nothing over what
//! a person would type. Then the per-scene render of 8 scenes (8 clips cut on the
//! narration's scene starts) against the 5-clip render of the same length. Prints wall
//! and CPU times and the ratios. Run with `cargo bench --bench render`.

// A benchmark reports its measurements on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tiktok_factory::media::{self, CaptionStyle, GateSpec, RenderSpec, Tools};
use tiktok_factory::providers::offline::{Espeak, GeneratedFootage, OfflineWriter};
use tiktok_factory::providers::{
    FootageRequest, FootageSource, ScriptRequest, ScriptWriter, Voice, VoiceRequest,
};

const RUNS: usize = 3;
const CLIPS: u32 = 5;
const SCENES: usize = 8;
const SECONDS: u32 = 45;
const TARGET_RATIO: f64 = 1.10;
const SCENES_TARGET_RATIO: f64 = 1.15;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tools = Tools::detect()?;
    let dir = tempfile::tempdir()?;
    let dir = dir.path();

    eprintln!("generating {CLIPS} portrait clips and a {SECONDS}-second narration…");
    let footage_dir = dir.join("footage");
    std::fs::create_dir(&footage_dir)?;
    let footage = GeneratedFootage {
        width: 720,
        height: 1280,
        ..GeneratedFootage::new(tools.clone())
    };
    let request = FootageRequest {
        query: String::new(),
        clips: SCENES as u32,
        min_clip_seconds: f64::from(SECONDS) / f64::from(CLIPS) + 1.0,
        avoid: Vec::new(),
        variant: 1,
    };
    let clips = footage.fetch(&request, &footage_dir).await?;

    let script = OfflineWriter
        .write(&ScriptRequest {
            topic: "Neutron stars".into(),
            prompt: String::new(),
            seconds: SECONDS,
            cta: None,
            models: Vec::new(),
            temperature: None,
            seed: None,
            pace: tiktok_factory::providers::Pace::default(),
        })
        .await?;
    let voice_dir = dir.join("voice");
    std::fs::create_dir(&voice_dir)?;
    let narration = Espeak::new(tools.clone(), "en-us", 150, 50)
        .speak(
            &VoiceRequest {
                lines: script.spoken().into_iter().map(str::to_string).collect(),
            },
            &voice_dir,
        )
        .await?;
    let captions = dir.join("captions.ass");
    std::fs::write(
        &captions,
        media::ass(&narration.words, &CaptionStyle::default(), 1080, 1920),
    )?;

    let mut spec = RenderSpec::new(
        clips[..CLIPS as usize]
            .iter()
            .map(|clip| clip.path.clone())
            .collect(),
        narration.audio.clone(),
        narration.duration,
        dir.join("ours.mp4"),
    );
    spec.captions = Some(captions.clone());
    let mut hand = hand_written(&tools, &spec, &dir.join("hand.mp4"));
    // What the render stage asks for: the gates, the captions checked against the words.
    spec.gates = Some(GateSpec {
        stills: Vec::new(),
        captions: Some((
            captions.clone(),
            narration.words.iter().map(|w| w.word.clone()).collect(),
        )),
        target_lufs: media::TARGET_LUFS,
        seconds: narration.duration,
        max_seconds: 600.0,
        fps: spec.fps,
    });
    // 8 scenes: the spoken lines' starts, merged into 8 when there are more.
    let spoken = script.spoken();
    let starts =
        tiktok_factory::stages::render::scene_starts(&spoken, &narration.words, narration.duration);
    let mut scenes = spec.clone();
    scenes.clips = clips.iter().map(|clip| clip.path.clone()).collect();
    scenes.cuts = (1..SCENES)
        .map(|i| starts[i * starts.len() / SCENES])
        .collect();
    scenes.out = dir.join("scenes.mp4");

    eprintln!(
        "narration {:.1} s, {} words, {} lines; rendering 1080×1920 at {} fps, preset {}, crf {}",
        narration.duration,
        narration.words.len(),
        spoken.len(),
        spec.fps,
        spec.preset,
        spec.crf
    );
    println!("run   ours: wall     cpu      hand-written: wall     cpu");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for run in 1..=RUNS {
        ours.push(measure(media::render(&tools, &spec)).await?);
        theirs.push(measure(async { run_hand_written(&mut hand) }).await?);
        let (a, b) = (ours[run - 1], theirs[run - 1]);
        println!(
            "{run:<5} {:>8.2} s {:>8.2} s       {:>8.2} s {:>8.2} s",
            a.wall, a.cpu, b.wall, b.cpu
        );
    }
    let median = |runs: &[Timing], field: fn(&Timing) -> f64| {
        let mut values: Vec<f64> = runs.iter().map(field).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    let (wall_ours, wall_theirs) = (median(&ours, |t| t.wall), median(&theirs, |t| t.wall));
    let (cpu_ours, cpu_theirs) = (median(&ours, |t| t.cpu), median(&theirs, |t| t.cpu));
    let ratio = wall_ours / wall_theirs;
    println!(
        "median wall: ours {wall_ours:.2} s, hand-written {wall_theirs:.2} s, \
         ratio ours/hand-written {ratio:.3} (target ≤ {TARGET_RATIO:.2}){}",
        if ratio <= TARGET_RATIO {
            ""
        } else {
            " — over target"
        }
    );
    // CPU time is what the work costs; wall time also carries whatever else the machine
    // is doing, so on a busy machine this is the steadier comparison.
    println!(
        "median cpu:  ours {cpu_ours:.2} s, hand-written {cpu_theirs:.2} s, ratio {:.3}",
        cpu_ours / cpu_theirs
    );

    println!("run   5 clips: wall  cpu      8 scenes: wall     cpu");
    let (mut five, mut eight) = (Vec::new(), Vec::new());
    for run in 1..=RUNS {
        five.push(measure(media::render(&tools, &spec)).await?);
        eight.push(measure(media::render(&tools, &scenes)).await?);
        let (a, b) = (five[run - 1], eight[run - 1]);
        println!(
            "{run:<5} {:>8.2} s {:>8.2} s       {:>8.2} s {:>8.2} s",
            a.wall, a.cpu, b.wall, b.cpu
        );
    }
    let (wall_five, wall_eight) = (median(&five, |t| t.wall), median(&eight, |t| t.wall));
    let (cpu_five, cpu_eight) = (median(&five, |t| t.cpu), median(&eight, |t| t.cpu));
    let ratio = wall_eight / wall_five;
    println!(
        "median wall: 8 scenes {wall_eight:.2} s, 5 clips {wall_five:.2} s, \
         ratio {ratio:.3} (target ≤ {SCENES_TARGET_RATIO:.2}){}",
        if ratio <= SCENES_TARGET_RATIO {
            ""
        } else {
            " — over target"
        }
    );
    println!(
        "median cpu:  8 scenes {cpu_eight:.2} s, 5 clips {cpu_five:.2} s, ratio {:.3}",
        cpu_eight / cpu_five
    );
    Ok(())
}

/// The command a person would write for the same job: the usual scale/crop/fps chain per
/// clip, the same captions, loudness target and encoder settings.
fn hand_written(tools: &Tools, spec: &RenderSpec, out: &Path) -> Command {
    let share = spec.narration_seconds / spec.clips.len() as f64;
    let mut graph = String::new();
    for i in 0..spec.clips.len() {
        graph.push_str(&format!(
            "[{i}:v]scale=1080:1920:force_original_aspect_ratio=increase,crop=1080:1920,setsar=1,\
             fps=30,trim=duration={share:.3},setpts=PTS-STARTPTS[v{i}];"
        ));
    }
    for i in 0..spec.clips.len() {
        graph.push_str(&format!("[v{i}]"));
    }
    let captions = spec.captions.as_ref().expect("the bench renders captions");
    graph.push_str(&format!(
        "concat=n={n}:v=1:a=0,ass={}[v];[{n}:a]loudnorm=I=-14:TP=-1.5:LRA=11,aresample=48000[a]",
        captions.display(),
        n = spec.clips.len()
    ));
    let mut command = Command::new(&tools.ffmpeg);
    command.args(["-nostdin", "-v", "error", "-y"]);
    for clip in &spec.clips {
        command.arg("-i").arg(clip);
    }
    command.arg("-i").arg(&spec.narration);
    command.args(["-filter_complex", &graph, "-map", "[v]", "-map", "[a]"]);
    command.args([
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        "21",
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-b:a",
        "160k",
        "-ar",
        "48000",
        "-ac",
        "2",
        "-movflags",
        "+faststart",
    ]);
    command.args(["-t", &format!("{:.3}", spec.narration_seconds)]);
    command.arg(out);
    command
}

/// A `Command` can be run again and again; each run overwrites the same output.
fn run_hand_written(command: &mut Command) -> Result<(), Box<dyn std::error::Error>> {
    let status = command.status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the hand-written ffmpeg command failed ({status})").into())
    }
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    wall: f64,
    /// User plus system time of the child processes that ran.
    cpu: f64,
}

async fn measure<T, E>(work: impl Future<Output = Result<T, E>>) -> Result<Timing, E> {
    let (started, cpu) = (Instant::now(), children_cpu_seconds());
    work.await?;
    Ok(Timing {
        wall: started.elapsed().as_secs_f64(),
        cpu: children_cpu_seconds() - cpu,
    })
}

/// `cutime + cstime` of this process (reaped children), from `/proc/self/stat`, in
/// seconds at Linux's fixed 100 ticks per second; 0 where there is no procfs.
fn children_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses and may contain spaces;
    // cutime and cstime are fields 16 and 17 of the line, 14th and 15th after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(13) + ticks(14)) / 100.0
}
