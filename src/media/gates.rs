//! Quality gates: what a render must pass before it counts. The picture detectors
//! (black, frozen) run inside the render's own graph on the joined clips; one audio pass
//! over the output runs silence and loudness side by side; the captions are checked
//! against the spoken words from the caption file itself.

use std::fmt;
use std::path::{Path, PathBuf};

use super::tools::{media_url, run};
use super::{MediaError, Tools};

/// A black stretch longer than this fails the `black` gate.
pub const MAX_BLACK_SECONDS: f64 = 0.5;
/// A frozen stretch longer than this fails the `frozen` gate, except over stills.
pub const MAX_FROZEN_SECONDS: f64 = 2.0;
/// A silent stretch longer than this fails the `narration` gate, and so does silence
/// over half the video.
pub const MAX_SILENT_SECONDS: f64 = 2.5;
/// Integrated loudness must be within this many LU of the target.
pub const LOUDNESS_TOLERANCE: f64 = 1.0;

/// Pixels darker than this share of full scale count as black; a frame that is 98 %
/// such pixels is black.
const BLACK_PIXEL: f64 = 0.10;
const BLACK_PICTURE: f64 = 0.98;
/// Frames differing by less than this (freezedetect's noise, a ratio) are the same.
const FREEZE_NOISE: f64 = 0.001;
/// Audio below this is silence (speech sits at −14 LUFS, pauses well under −40 dB).
const SILENCE_DB: i32 = -50;

/// The checks a render faces, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Black,
    Frozen,
    Narration,
    Loudness,
    Captions,
    Duration,
}

impl Gate {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Black => "black",
            Self::Frozen => "frozen",
            Self::Narration => "narration",
            Self::Loudness => "loudness",
            Self::Captions => "captions",
            Self::Duration => "duration",
        }
    }
}

impl fmt::Display for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A gate that did not pass: which, and what was found where.
#[derive(Debug, Clone, PartialEq)]
pub struct GateFailure {
    pub gate: Gate,
    pub detail: String,
}

impl fmt::Display for GateFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gate `{}`: {}", self.gate, self.detail)
    }
}

/// What the render is held to besides its format.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GateSpec {
    /// Spans of the video (start, end in seconds) shown from stills, where the picture
    /// is meant to stand still.
    pub stills: Vec<(f64, f64)>,
    /// The caption file burned in and every word spoken, in order; `None` when the
    /// video has no captions.
    pub captions: Option<(PathBuf, Vec<String>)>,
    /// Integrated loudness to reach, in LUFS.
    pub target_lufs: f64,
    /// The length the video must have (to within a frame and the encoder's padding)
    /// and the most it may have.
    pub seconds: f64,
    pub max_seconds: f64,
    pub fps: u32,
}

/// What the analysis pass found.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Analysis {
    pub duration: f64,
    pub black: Vec<(f64, f64)>,
    pub frozen: Vec<(f64, f64)>,
    pub silent: Vec<(f64, f64)>,
    pub lufs: Option<f64>,
}

/// The picture detectors, a branch of the render's own graph taken before the captions
/// are burned in (moving captions would hide a frozen clip, and a caption is no picture):
/// they see a quarter of the pixels and log at `info`, and the render pays no second
/// decode for them. Feed it the joined clips; it ends in a sink.
pub fn picture_detectors() -> String {
    format!(
        "scale=iw/4:ih/4:flags=fast_bilinear,\
         blackdetect=d={MAX_BLACK_SECONDS}:pix_th={BLACK_PIXEL}:pic_th={BLACK_PICTURE},\
         freezedetect=n={FREEZE_NOISE}:d={MAX_FROZEN_SECONDS},nullsink"
    )
}

/// The ffmpeg arguments of the analysis pass over the output's audio: silence and
/// loudness side by side, the video not decoded at all.
pub fn analysis_args(path: &Path) -> Vec<std::ffi::OsString> {
    let graph = format!("silencedetect=n={SILENCE_DB}dB:d=0.5,ebur128=framelog=verbose");
    [
        "-nostdin",
        "-hide_banner",
        "-nostats",
        "-loglevel",
        "info",
        "-vn",
        "-i",
    ]
    .map(std::ffi::OsString::from)
    .into_iter()
    .chain([media_url(path)])
    .chain(["-map", "0:a:0", "-af", &graph, "-f", "null", "-"].map(std::ffi::OsString::from))
    .collect()
}

/// Runs the audio detectors over `path` and reads the picture detectors from the
/// render's log.
pub async fn analyze(
    tools: &Tools,
    path: &Path,
    render_log: &str,
    duration: f64,
) -> Result<Analysis, MediaError> {
    let output = run(&tools.ffmpeg, analysis_args(path)).await?;
    let mut log = render_log.to_owned();
    log.push('\n');
    log.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(parse(&log, duration))
}

/// Reads the detectors' log lines. A stretch still open at the end runs to `duration`.
pub fn parse(log: &str, duration: f64) -> Analysis {
    let mut analysis = Analysis {
        duration,
        ..Analysis::default()
    };
    let mut freeze_start = None;
    let mut silence_start = None;
    for line in log.lines() {
        if let Some(rest) = after(line, "black_start:") {
            let start = number(rest);
            let end = after(line, "black_end:").map(number);
            if let (Some(start), Some(Some(end))) = (start, end) {
                analysis.black.push((start, end));
            }
        } else if let Some(rest) = after(line, "lavfi.freezedetect.freeze_start:") {
            freeze_start = number(rest);
        } else if let Some(rest) = after(line, "lavfi.freezedetect.freeze_end:") {
            if let (Some(start), Some(end)) = (freeze_start.take(), number(rest)) {
                analysis.frozen.push((start, end));
            }
        } else if let Some(rest) = after(line, "silence_start:") {
            silence_start = number(rest);
        } else if let Some(rest) = after(line, "silence_end:")
            && let (Some(start), Some(end)) = (silence_start.take(), number(rest))
        {
            analysis.silent.push((start.max(0.0), end));
        }
    }
    if let Some(start) = freeze_start {
        analysis.frozen.push((start, duration));
    }
    if let Some(start) = silence_start {
        analysis.silent.push((start.max(0.0), duration));
    }
    analysis.lufs = integrated(log);
    analysis
}

fn after<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    line.find(marker).map(|at| &line[at + marker.len()..])
}

fn number(text: &str) -> Option<f64> {
    text.split(|c: char| c.is_whitespace() || c == '|')
        .find(|t| !t.is_empty())?
        .parse()
        .ok()
}

/// The `I:` value of ebur128's summary.
fn integrated(log: &str) -> Option<f64> {
    let summary = &log[log.rfind("Summary:")?..];
    let block = &summary[summary.find("Integrated loudness:")?..];
    let value = block
        .lines()
        .find_map(|line| line.trim().strip_prefix("I:"))?;
    value.split_whitespace().next()?.parse().ok()
}

fn spans(spans: &[(f64, f64)]) -> String {
    spans
        .iter()
        .map(|(a, b)| format!("{a:.2}–{b:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every gate that fails, in a fixed order; empty when the render passes.
pub fn judge(analysis: &Analysis, spec: &GateSpec, captions: Option<&str>) -> Vec<GateFailure> {
    let mut failures = Vec::new();
    let long = |list: &[(f64, f64)], limit: f64| -> Vec<(f64, f64)> {
        list.iter()
            .copied()
            .filter(|(a, b)| b - a > limit + 1e-3)
            .collect()
    };
    let black = long(&analysis.black, MAX_BLACK_SECONDS);
    if !black.is_empty() {
        failures.push(GateFailure {
            gate: Gate::Black,
            detail: format!(
                "black picture at {} (at most {MAX_BLACK_SECONDS} s allowed)",
                spans(&black)
            ),
        });
    }
    // A freeze counts only where it is not over a still; one that covers a still and
    // more is judged by what lies outside the still.
    let frozen: Vec<(f64, f64)> = long(&analysis.frozen, MAX_FROZEN_SECONDS)
        .into_iter()
        .filter(|&(a, b)| {
            let moving = b - a - overlap((a, b), &spec.stills);
            moving > MAX_FROZEN_SECONDS + 1e-3
        })
        .collect();
    if !frozen.is_empty() {
        failures.push(GateFailure {
            gate: Gate::Frozen,
            detail: format!(
                "frozen picture at {} (at most {MAX_FROZEN_SECONDS} s allowed outside stills)",
                spans(&frozen)
            ),
        });
    }
    let silent_total: f64 = analysis.silent.iter().map(|(a, b)| b - a).sum();
    let silent = long(&analysis.silent, MAX_SILENT_SECONDS);
    if !silent.is_empty() || silent_total > analysis.duration / 2.0 {
        let where_ = if silent.is_empty() {
            spans(&analysis.silent)
        } else {
            spans(&silent)
        };
        failures.push(GateFailure {
            gate: Gate::Narration,
            detail: format!(
                "no narration heard at {where_} ({silent_total:.1} s silent of {:.1} s)",
                analysis.duration
            ),
        });
    }
    match analysis.lufs {
        Some(lufs) if (lufs - spec.target_lufs).abs() <= LOUDNESS_TOLERANCE => {}
        Some(lufs) => failures.push(GateFailure {
            gate: Gate::Loudness,
            detail: format!(
                "integrated loudness over the whole video is {lufs:.1} LUFS, not {} ± {LOUDNESS_TOLERANCE} LUFS",
                spec.target_lufs
            ),
        }),
        None => failures.push(GateFailure {
            gate: Gate::Loudness,
            detail: "the audio could not be measured".into(),
        }),
    }
    if let (Some((_, words)), Some(script)) = (&spec.captions, captions)
        && let Some((index, word)) = uncaptioned(words, script)
    {
        failures.push(GateFailure {
            gate: Gate::Captions,
            detail: format!("spoken word {} (`{word}`) is not captioned", index + 1),
        });
    }
    let slack = 1.0 / f64::from(spec.fps.max(1)) + 0.1;
    if (analysis.duration - spec.seconds).abs() > slack || analysis.duration > spec.max_seconds {
        failures.push(GateFailure {
            gate: Gate::Duration,
            detail: format!(
                "the video is {:.2} s; the narration is {:.2} s and the most allowed {} s",
                analysis.duration, spec.seconds, spec.max_seconds
            ),
        });
    }
    failures
}

/// How much of `span` the stills cover.
fn overlap(span: (f64, f64), stills: &[(f64, f64)]) -> f64 {
    stills
        .iter()
        .map(|&(a, b)| (span.1.min(b) - span.0.max(a)).max(0.0))
        .sum()
}

/// Letters and digits, lower-cased: how a word is compared with its caption, whatever
/// the caption's case or punctuation.
fn normal(word: &str) -> String {
    word.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The first spoken word missing from the captions, in order: each word must appear in
/// the caption events after the one before it (a group shown once per highlighted word
/// repeats its words, which is fine).
pub fn uncaptioned<'a>(words: &'a [String], ass: &str) -> Option<(usize, &'a str)> {
    let shown: Vec<String> = ass
        .lines()
        .filter_map(|line| line.strip_prefix("Dialogue:"))
        // The text is the tenth field; it may itself hold commas.
        .filter_map(|rest| rest.splitn(10, ',').nth(9))
        .flat_map(|text| {
            let mut plain = String::new();
            let mut in_tag = false;
            for c in text.chars() {
                match c {
                    '{' => in_tag = true,
                    '}' => in_tag = false,
                    _ if !in_tag => plain.push(c),
                    _ => {}
                }
            }
            plain
                .replace("\\N", " ")
                .replace("\\h", " ")
                .split_whitespace()
                .map(normal)
                .filter(|w| !w.is_empty())
                .collect::<Vec<_>>()
        })
        .collect();
    let mut at = 0;
    for (index, word) in words.iter().enumerate() {
        let wanted = normal(word);
        if wanted.is_empty() {
            continue;
        }
        match shown[at..].iter().position(|w| *w == wanted) {
            Some(found) => at += found,
            None => return Some((index, word)),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
[blackdetect @ 0x1] black_start:1.2 black_end:2.4 black_duration:1.2
[blackdetect @ 0x1] black_start:5 black_end:5.3 black_duration:0.3
[freezedetect @ 0x2] lavfi.freezedetect.freeze_start: 3.5
[freezedetect @ 0x2] lavfi.freezedetect.freeze_duration: 4
[freezedetect @ 0x2] lavfi.freezedetect.freeze_end: 7.5
[silencedetect @ 0x3] silence_start: 8.1
[silencedetect @ 0x3] silence_end: 9.0 | silence_duration: 0.9
[silencedetect @ 0x3] silence_start: 9.5
[Parsed_ebur128_4 @ 0x4] Summary:

  Integrated loudness:
    I:         -14.4 LUFS
    Threshold: -24.6 LUFS
";

    fn spec() -> GateSpec {
        GateSpec {
            stills: Vec::new(),
            captions: None,
            target_lufs: -14.0,
            seconds: 10.0,
            max_seconds: 60.0,
            fps: 30,
        }
    }

    #[test]
    fn the_detectors_log_is_read_with_open_stretches_running_to_the_end() {
        let analysis = parse(LOG, 10.0);
        assert_eq!(analysis.black, [(1.2, 2.4), (5.0, 5.3)]);
        assert_eq!(analysis.frozen, [(3.5, 7.5)]);
        assert_eq!(analysis.silent, [(8.1, 9.0), (9.5, 10.0)]);
        assert_eq!(analysis.lufs, Some(-14.4));
    }

    #[test]
    fn each_gate_names_itself_and_where() {
        let failures = judge(&parse(LOG, 10.0), &spec(), None);
        let names: Vec<&str> = failures.iter().map(|f| f.gate.as_str()).collect();
        assert_eq!(names, ["black", "frozen"]);
        assert!(
            failures[0].detail.contains("1.20–2.40 s"),
            "{}",
            failures[0]
        );
        assert!(!failures[0].detail.contains("5.00"), "{}", failures[0]);
        assert!(
            failures[1].detail.contains("3.50–7.50 s"),
            "{}",
            failures[1]
        );

        // The same freeze over a still is expected.
        let mut still = spec();
        still.stills = vec![(3.0, 8.0)];
        let failures = judge(&parse(LOG, 10.0), &still, None);
        assert!(
            failures.iter().all(|f| f.gate != Gate::Frozen),
            "{failures:?}"
        );

        let mut quiet = parse(LOG, 10.0);
        quiet.lufs = Some(-16.2);
        quiet.silent = vec![(0.0, 10.0)];
        quiet.duration = 12.0;
        let failures = judge(&quiet, &spec(), None);
        let names: Vec<&str> = failures.iter().map(|f| f.gate.as_str()).collect();
        assert_eq!(
            names,
            ["black", "frozen", "narration", "loudness", "duration"]
        );
        assert!(failures[3].detail.contains("-16.2 LUFS"), "{}", failures[3]);
    }

    #[test]
    fn every_spoken_word_must_be_captioned_in_order() {
        let words: Vec<String> = ["Owls", "turn", "heads.", "Wow!"]
            .map(String::from)
            .to_vec();
        let ass = "[Events]\n\
            Dialogue: 0,0:00:00.00,0:00:00.50,Caption,,0,0,0,,{\\c&H00FFFFFF&}OWLS{\\r} TURN\n\
            Dialogue: 0,0:00:00.50,0:00:01.00,Caption,,0,0,0,,OWLS {\\c&H00FFFFFF&}TURN\n\
            Dialogue: 0,0:00:01.00,0:00:01.50,Caption,,0,0,0,,heads, wow\n";
        assert_eq!(uncaptioned(&words, ass), None);
        let missing = ass.replace("heads, wow", "wow");
        assert_eq!(uncaptioned(&words, &missing), Some((2, "heads.")));
        let failures = judge(
            &Analysis {
                duration: 10.0,
                lufs: Some(-14.0),
                ..Analysis::default()
            },
            &GateSpec {
                captions: Some(("/c.ass".into(), words.clone())),
                ..spec()
            },
            Some(&missing),
        );
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(
            failures[0].to_string(),
            "gate `captions`: spoken word 3 (`heads.`) is not captioned"
        );
    }
}
