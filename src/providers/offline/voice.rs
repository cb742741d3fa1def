//! Narration with espeak-ng: robotic, but free, local and instant.

use std::ffi::OsString;
use std::fmt::Write;
use std::path::Path;

use async_trait::async_trait;

use super::permanent;
use crate::media::{Tools, media_url, probe, run};
use crate::providers::{Narration, Pace, ProviderError, Voice, VoiceRequest, WordTiming};

const SERVICE: &str = "espeak";

/// Silence between lines: a breath, long enough to split caption groups.
pub const PAUSE_SECONDS: f64 = 0.35;

/// What a voice is timed on: sentences of the lengths and punctuation scripts have. Fixed,
/// so a measurement is made once per voice, rate and espeak-ng.
const CALIBRATION: &[&str] = &[
    "Here is what nobody tells you about the deep ocean.",
    "At first glance, it might seem simple, but the details tell a different story.",
    "Every part of it follows rules that took centuries to work out.",
    "The strangest thing is how ordinary it can look from the outside.",
    "Scientists still find new creatures there every single year, some of them glowing in the dark.",
    "Follow for more.",
];

/// espeak-ng reports no word timings, so each line is synthesized on its own and
/// measured: timings are exact at every line boundary, and within a line the words share
/// the line's duration in proportion to their letter count. That is close enough for
/// captions, whose groups change at sentence ends anyway.
#[derive(Debug, Clone)]
pub struct Espeak {
    pub tools: Tools,
    /// An espeak-ng voice name such as `en-us`.
    pub voice: String,
    /// Words per minute.
    pub rate: u32,
    /// 0–99; 50 is the voice's normal pitch.
    pub pitch: u32,
}

impl Espeak {
    pub fn new(tools: Tools, voice: impl Into<String>, rate: u32, pitch: u32) -> Self {
        Self {
            tools,
            voice: voice.into(),
            rate,
            pitch,
        }
    }

    /// Speaks one line into `wav` and returns its duration and sample rate.
    async fn line(
        &self,
        text: &str,
        parts: &Path,
        index: usize,
    ) -> Result<(f64, u32), ProviderError> {
        // Text goes through a file so that a line starting with `-` is not an option.
        let text_file = parts.join(format!("{index:03}.txt"));
        tokio::fs::write(&text_file, text).await.map_err(|error| {
            ProviderError::permanent(
                SERVICE,
                format!("cannot write `{}`: {error}", text_file.display()),
            )
        })?;
        let wav = parts.join(format!("{index:03}.wav"));
        let args: Vec<OsString> = vec![
            "-v".into(),
            self.voice.clone().into(),
            "-s".into(),
            self.rate.to_string().into(),
            "-p".into(),
            self.pitch.to_string().into(),
            "-b".into(),
            "1".into(),
            "-f".into(),
            text_file.into(),
            "-w".into(),
            wav.clone().into(),
        ];
        run(&self.tools.espeak, args)
            .await
            .map_err(permanent(SERVICE))?;
        let info = probe(&self.tools, &wav).await.map_err(permanent(SERVICE))?;
        let rate = info.audio.map_or(0, |audio| audio.sample_rate);
        if rate == 0 {
            return Err(ProviderError::permanent(
                SERVICE,
                format!("`{}` has no audio", wav.display()),
            ));
        }
        Ok((info.duration, rate))
    }
}

#[async_trait]
impl Voice for Espeak {
    async fn speak(&self, request: &VoiceRequest, dir: &Path) -> Result<Narration, ProviderError> {
        let lines: Vec<&str> = request
            .lines
            .iter()
            .map(|line| line.trim())
            .filter(|line| !line.is_empty())
            .collect();
        if lines.is_empty() {
            return Err(ProviderError::permanent(
                SERVICE,
                "there is nothing to say: every line is empty",
            ));
        }
        // The per-line files are removed when this is dropped, on success or failure.
        let parts = tempfile::tempdir_in(dir).map_err(|error| {
            ProviderError::permanent(
                SERVICE,
                format!("cannot write into `{}`: {error}", dir.display()),
            )
        })?;
        let mut durations = Vec::with_capacity(lines.len());
        let mut sample_rate = 0;
        for (index, line) in lines.iter().enumerate() {
            let (duration, rate) = self.line(line, parts.path(), index).await?;
            durations.push(duration);
            sample_rate = rate;
        }
        // A whole number of samples, so the joined file is exactly as long as computed.
        let pause_samples = (PAUSE_SECONDS * f64::from(sample_rate)).round() as u64;
        let pause = pause_samples as f64 / f64::from(sample_rate);

        let audio = dir.join("narration.wav");
        let mut args: Vec<OsString> = ["-nostdin", "-hide_banner", "-v", "error"]
            .map(OsString::from)
            .to_vec();
        for index in 0..lines.len() {
            args.extend([
                "-i".into(),
                media_url(&parts.path().join(format!("{index:03}.wav"))),
            ]);
        }
        args.extend([
            "-filter_complex".into(),
            join_graph(lines.len(), pause_samples).into(),
            "-map".into(),
            "[out]".into(),
            "-c:a".into(),
            "pcm_s16le".into(),
            "-y".into(),
            media_url(&audio),
        ]);
        run(&self.tools.ffmpeg, args)
            .await
            .map_err(permanent(SERVICE))?;
        let info = probe(&self.tools, &audio)
            .await
            .map_err(permanent(SERVICE))?;

        Ok(Narration {
            audio,
            duration: info.duration,
            words: word_timings(&lines, &durations, pause),
            characters: 0,
        })
    }

    /// Speaks the calibration sentences one by one: the words over the time they take,
    /// and the pause the narration leaves between lines.
    async fn measure_pace(&self, dir: &Path) -> Result<Option<Pace>, ProviderError> {
        let parts = tempfile::tempdir_in(dir).map_err(|error| {
            ProviderError::permanent(
                SERVICE,
                format!("cannot write into `{}`: {error}", dir.display()),
            )
        })?;
        let mut seconds = 0.0;
        let mut sample_rate = 0;
        for (index, line) in CALIBRATION.iter().enumerate() {
            let (duration, rate) = self.line(line, parts.path(), index).await?;
            seconds += duration;
            sample_rate = rate;
        }
        let words: usize = CALIBRATION
            .iter()
            .map(|l| l.split_whitespace().count())
            .sum();
        let pause = (PAUSE_SECONDS * f64::from(sample_rate)).round() / f64::from(sample_rate);
        Ok(Some(Pace {
            words_per_second: words as f64 / seconds,
            pause_seconds: pause,
        }))
    }
}

/// The voice names espeak-ng accepts for `-v`: each voice's language, the other
/// languages it speaks and its file, with an optional `+variant`. espeak-ng itself takes
/// an unknown name silently and speaks another voice, so recipes are checked against this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EspeakVoices {
    /// Lowercase names a voice can be given by, in the order `espeak-ng --voices` lists them.
    voices: Vec<String>,
    /// Lowercase variant names (`f3`, `klatt`, …).
    variants: Vec<String>,
}

impl EspeakVoices {
    /// From the tables `espeak-ng --voices` and `espeak-ng --voices=variant` print.
    pub fn parse(voices: &str, variants: &str) -> Self {
        let rows = |table: &str| -> Vec<Vec<String>> {
            table
                .lines()
                .skip(1)
                .map(|line| line.split_whitespace().map(str::to_lowercase).collect())
                .filter(|cols: &Vec<String>| cols.len() >= 5)
                .collect()
        };
        let mut names = Vec::new();
        let mut add = |name: &str| {
            if !name.is_empty() && !names.iter().any(|n: &String| n == name) {
                names.push(name.to_owned());
            }
        };
        for cols in rows(voices) {
            // Pty, Language, Age/Gender, VoiceName, File, then `(en 3)` pairs.
            add(&cols[1]);
            add(&cols[4]);
            if let Some((_, base)) = cols[4].rsplit_once('/') {
                add(base);
            }
            for other in cols[5..].iter().filter(|c| c.starts_with('(')) {
                add(other.trim_start_matches('('));
            }
        }
        let variants = rows(variants)
            .into_iter()
            .filter_map(|cols| cols[4].rsplit_once('/').map(|(_, v)| v.to_owned()))
            .collect();
        Self {
            voices: names,
            variants,
        }
    }

    /// The voices espeak-ng on this machine has (`FACTORY_ESPEAK` or `espeak-ng` on
    /// `PATH`), asked once per process; `None` when it cannot be asked, which the tool
    /// check reports.
    pub fn installed() -> Option<&'static Self> {
        static INSTALLED: std::sync::OnceLock<Option<EspeakVoices>> = std::sync::OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                let program = std::env::var_os("FACTORY_ESPEAK")
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "espeak-ng".into());
                let table = |arg: &str| -> Option<String> {
                    let out = std::process::Command::new(&program)
                        .arg(arg)
                        .stdin(std::process::Stdio::null())
                        .output()
                        .ok()?;
                    out.status
                        .success()
                        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
                };
                let voices = table("--voices")?;
                let variants = table("--voices=variant").unwrap_or_default();
                Some(Self::parse(&voices, &variants)).filter(|v| !v.voices.is_empty())
            })
            .as_ref()
    }

    /// `Ok` when espeak-ng knows `name` (`en-us`, `en-us+f3`); else the closest name it
    /// does know, when one is close.
    pub fn check(&self, name: &str) -> Result<(), Option<String>> {
        let lower = name.trim().to_lowercase();
        let (base, variant) = lower.split_once('+').unwrap_or((lower.as_str(), ""));
        let base_known = self.voices.iter().any(|v| v == base);
        let variant_known = variant.is_empty() || self.variants.iter().any(|v| v == variant);
        if base_known && variant_known {
            return Ok(());
        }
        let base = if base_known {
            Some(base.to_owned())
        } else {
            crate::recipe::diagnostic::closest(base, self.voices.iter().map(String::as_str))
                .map(str::to_owned)
        };
        let variant = if variant_known {
            Some(variant.to_owned())
        } else {
            crate::recipe::diagnostic::closest(variant, self.variants.iter().map(String::as_str))
                .map(str::to_owned)
        };
        Err(match (base, variant) {
            (Some(base), Some(v)) if v.is_empty() => Some(base),
            (Some(base), Some(v)) => Some(format!("{base}+{v}")),
            _ => None,
        })
    }
}

/// Pads every input but the last with `pause_samples` of silence, then joins them.
fn join_graph(inputs: usize, pause_samples: u64) -> String {
    let mut graph = String::new();
    for i in 0..inputs - 1 {
        let _ = write!(graph, "[{i}:a]apad=pad_len={pause_samples}[a{i}];");
    }
    for i in 0..inputs - 1 {
        let _ = write!(graph, "[a{i}]");
    }
    let _ = write!(graph, "[{}:a]concat=n={inputs}:v=0:a=1[out]", inputs - 1);
    graph
}

/// Lines spoken back to back with `pause` after each; a line's words share its duration
/// in proportion to their letters and digits.
fn word_timings(lines: &[&str], durations: &[f64], pause: f64) -> Vec<WordTiming> {
    let mut timings = Vec::new();
    let mut offset = 0.0;
    for (line, duration) in lines.iter().zip(durations) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let weights: Vec<usize> = words
            .iter()
            .map(|word| word.chars().filter(|c| c.is_alphanumeric()).count().max(1))
            .collect();
        let total: usize = weights.iter().sum();
        let mut done = 0;
        for (word, weight) in words.iter().zip(&weights) {
            let start = offset + duration * done as f64 / total as f64;
            done += weight;
            timings.push(WordTiming {
                word: (*word).to_string(),
                start,
                end: offset + duration * done as f64 / total as f64,
            });
        }
        offset += duration + pause;
    }
    timings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::testing;

    #[test]
    fn words_share_their_line_by_length_and_lines_are_exact() {
        let timings = word_timings(&["a bbb", "cc, dd!"], &[2.0, 1.0], 0.5);
        let spans: Vec<(&str, f64, f64)> = timings
            .iter()
            .map(|t| (t.word.as_str(), t.start, t.end))
            .collect();
        assert_eq!(
            spans,
            [
                ("a", 0.0, 0.5),
                ("bbb", 0.5, 2.0),
                ("cc,", 2.5, 3.0),
                ("dd!", 3.0, 3.5),
            ]
        );
    }

    #[test]
    fn the_join_graph_pads_all_but_the_last_line() {
        assert_eq!(
            join_graph(3, 100),
            "[0:a]apad=pad_len=100[a0];[1:a]apad=pad_len=100[a1];[a0][a1][2:a]concat=n=3:v=0:a=1[out]"
        );
        assert_eq!(join_graph(1, 100), "[0:a]concat=n=1:v=0:a=1[out]");
    }

    #[tokio::test]
    async fn the_narration_lasts_its_lines_plus_the_pauses() {
        let tools = testing::tools();
        let espeak = Espeak::new(tools.clone(), "en-us", 175, 50);
        let lines = [
            "Black holes bend light.",
            "  ",
            "-They also spin, very fast!",
            "Follow for more.",
        ];
        let request = VoiceRequest {
            lines: lines.iter().map(|line| line.to_string()).collect(),
        };
        let dir = tempfile::tempdir().unwrap();
        let narration = espeak.speak(&request, dir.path()).await.unwrap();

        // Measure each spoken line on its own, the way a listener would hear it.
        let mut parts = Vec::new();
        for (i, line) in lines.iter().filter(|l| !l.trim().is_empty()).enumerate() {
            let scratch = tempfile::tempdir().unwrap();
            parts.push(espeak.line(line.trim(), scratch.path(), i).await.unwrap().0);
        }
        let pause = (PAUSE_SECONDS * 22050.0).round() / 22050.0;
        let expected = parts.iter().sum::<f64>() + pause * (parts.len() - 1) as f64;
        assert!(
            (narration.duration - expected).abs() < 0.002,
            "{} vs {expected}",
            narration.duration
        );

        assert_eq!(narration.audio, dir.path().join("narration.wav"));
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["narration.wav"], "the per-line files are gone");
        assert_eq!(narration.characters, 0);
        assert_eq!(narration.words.len(), 4 + 5 + 3);
        assert_eq!(narration.words[4].word, "-They");
        // The second line's first word starts right after the first line and its pause.
        assert!((narration.words[4].start - (parts[0] + pause)).abs() < 1e-9);
        assert!((narration.words.last().unwrap().end - narration.duration).abs() < 0.002);
        for pair in narration.words.windows(2) {
            assert!(
                pair[0].start < pair[0].end && pair[0].end <= pair[1].start,
                "{pair:?}"
            );
        }
    }

    #[tokio::test]
    async fn the_measured_pace_predicts_a_narration() {
        let espeak = Espeak::new(testing::tools(), "en-us", 165, 50);
        let dir = tempfile::tempdir().unwrap();
        let pace = espeak.measure_pace(dir.path()).await.unwrap().unwrap();
        assert!(
            (2.0..3.2).contains(&pace.words_per_second),
            "{pace:?} at 165 words a minute"
        );
        let faster = Espeak::new(testing::tools(), "en-us", 250, 50)
            .measure_pace(dir.path())
            .await
            .unwrap()
            .unwrap();
        assert!(
            faster.words_per_second > pace.words_per_second * 1.3,
            "{faster:?}"
        );

        let lines = [
            "Owls can turn their heads almost all the way around.",
            "Their eyes do not move, so the whole head does the looking.",
            "Follow for more.",
        ];
        let request = VoiceRequest {
            lines: lines.iter().map(|line| line.to_string()).collect(),
        };
        let out = tempfile::tempdir().unwrap();
        let narration = espeak.speak(&request, out.path()).await.unwrap();
        let words = lines.iter().map(|l| l.split_whitespace().count()).sum();
        let predicted = pace.seconds(words, lines.len());
        assert!(
            (predicted / narration.duration - 1.0).abs() < 0.1,
            "predicted {predicted:.2} s, spoken {:.2} s",
            narration.duration
        );
    }

    const VOICES: &str =
        "Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  af              --/M      Afrikaans          gmw/af
 5  en-029          --/M      English_(Caribbean) gmw/en-029           (en 10)
 2  en-gb           --/M      English_(Great_Britain) gmw/en               (en 2)
 2  en-us           --/M      English_(America)  gmw/en-US            (en 3)
 5  fr-fr           --/M      French_(France)    roa/fr               (fr 5)
";
    const VARIANTS: &str =
        "Pty Language       Age/Gender VoiceName          File                 Other Languages
 5  variant         --/F      f3                 !v/f3
 5  variant         --/M      Klatt              !v/klatt
";

    #[test]
    fn voice_names_are_checked_against_what_espeak_lists() {
        let known = EspeakVoices::parse(VOICES, VARIANTS);
        for ok in [
            "en-us",
            "EN-US",
            "en",
            "gmw/en-US",
            "en-US",
            "fr",
            "fr-fr",
            "en-us+f3",
            "af+klatt",
        ] {
            assert_eq!(known.check(ok), Ok(()), "{ok}");
        }
        assert_eq!(known.check("en-usa"), Err(Some("en-us".into())));
        assert_eq!(known.check("en-us+f33"), Err(Some("en-us+f3".into())));
        assert_eq!(known.check("fr-frr+klat"), Err(Some("fr-fr+klatt".into())));
        assert_eq!(known.check("zz-nothing-like-it"), Err(None));
    }

    #[test]
    fn the_installed_espeak_lists_the_usual_voices() {
        let installed = EspeakVoices::installed().expect("espeak-ng is installed");
        assert_eq!(installed.check("en-us"), Ok(()));
        assert_eq!(installed.check("en-gb+f3"), Ok(()));
        assert_eq!(installed.check("en-usa"), Err(Some("en-us".into())));
    }

    #[tokio::test]
    async fn an_unknown_voice_is_a_permanent_error() {
        let espeak = Espeak::new(testing::tools(), "xx-nonexistent", 175, 50);
        let request = VoiceRequest {
            lines: vec!["Hello.".into()],
        };
        let dir = tempfile::tempdir().unwrap();
        let error = espeak.speak(&request, dir.path()).await.unwrap_err();
        assert!(
            matches!(&error, ProviderError::Permanent { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("voice does not exist"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn nothing_to_say_is_refused() {
        let espeak = Espeak::new(testing::tools(), "en-us", 175, 50);
        let dir = tempfile::tempdir().unwrap();
        let request = VoiceRequest {
            lines: vec![" ".into()],
        };
        assert!(espeak.speak(&request, dir.path()).await.is_err());
    }
}
