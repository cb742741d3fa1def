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
