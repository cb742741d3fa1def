//! Burned-in captions as an ASS script: one to three words on screen at a time, the word
//! being spoken in another colour, kept inside the part of a vertical video that the
//! app's buttons and description do not cover.

use std::fmt::Write;
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::providers::WordTiming;

/// A pause at least this long ends a caption group even without punctuation: the
/// speaker has moved on, so the words belong to different phrases.
const PHRASE_GAP_SECONDS: f64 = 0.3;

/// Style measurements are in pixels of a 1080×1920 frame and scale with the real one.
const REFERENCE_WIDTH: f64 = 1080.0;
const REFERENCE_HEIGHT: f64 = 1920.0;

/// A rectangle of a 1080×1920 frame, in pixels: `left ≤ x < right`, `top ≤ y < bottom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rect {
    pub left: u32,
    pub top: u32,
    pub right: u32,
    pub bottom: u32,
}

/// Where captions may be on a 1080×1920 frame: clear of TikTok's overlays, which are the
/// tabs, search and LIVE badge along the top 250 px; the like/comment/share/profile column
/// along the right 120 px; and the account name, the description (up to three lines
/// before "more") and the music ticker along the bottom 580 px (the description starts
/// near y 1350 when it has three lines). The left margin mirrors the right, so centred
/// captions are centred on the frame.
pub const SAFE_AREA: Rect = Rect {
    left: 120,
    top: 250,
    right: 960,
    bottom: 1340,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CaptionPosition {
    /// Centred on the frame, which is inside the safe area.
    Center,
    /// Just above the bottom overlay.
    Lower,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rgb {
    pub r: u8,
    pub g: u8,
    pub b: u8,
}

impl Rgb {
    pub const WHITE: Self = Self::new(0xFF, 0xFF, 0xFF);
    pub const BLACK: Self = Self::new(0, 0, 0);
    pub const YELLOW: Self = Self::new(0xFF, 0xE0, 0x1A);

    pub const fn new(r: u8, g: u8, b: u8) -> Self {
        Self { r, g, b }
    }

    /// `#RRGGBB` (either case); `None` for anything else.
    pub fn from_hex(text: &str) -> Option<Self> {
        let hex = text.strip_prefix('#')?;
        if hex.len() != 6 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
        Some(Self::new(byte(0)?, byte(2)?, byte(4)?))
    }

    /// ASS colours are `&HAABBGGRR`, alpha 0 meaning opaque.
    fn ass(self) -> String {
        format!("&H00{:02X}{:02X}{:02X}", self.b, self.g, self.r)
    }
}

// Each flag is one independent switch of a preset's look.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaptionStyle {
    /// Words on screen at once, 1 to 3; other values are clamped into that range.
    pub max_words: u8,
    /// Colour the word being spoken with `highlight_colour`.
    pub highlight_word: bool,
    pub position: CaptionPosition,
    pub font: String,
    pub bold: bool,
    /// Pixels on a 1920-pixel-high frame.
    pub font_size: u32,
    pub text_colour: Rgb,
    pub highlight_colour: Rgb,
    pub outline_colour: Rgb,
    /// Outline thickness, in pixels on a 1920-pixel-high frame.
    pub outline: u32,
    /// Show the words in capitals.
    pub uppercase: bool,
    /// The word being spoken pops: it appears a quarter larger and shrinks back to size
    /// in 150 ms (with `highlight_word`).
    pub pop: bool,
}

impl Default for CaptionStyle {
    /// Large bold white words with a thick black outline, centred, the spoken word in
    /// yellow.
    fn default() -> Self {
        Self {
            max_words: 3,
            highlight_word: true,
            position: CaptionPosition::Center,
            font: "DejaVu Sans".to_string(),
            bold: true,
            font_size: 92,
            text_colour: Rgb::WHITE,
            highlight_colour: Rgb::YELLOW,
            outline_colour: Rgb::BLACK,
            outline: 7,
            uppercase: false,
            pop: false,
        }
    }
}

/// The font families fontconfig knows on this machine, the names libass looks a
/// caption font up by.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FontFamilies {
    /// Every name a family is known by, as `fc-list` prints it.
    names: Vec<String>,
}

impl FontFamilies {
    /// From `fc-list : family` output: one font per line, its names comma-separated.
    pub fn parse(list: &str) -> Self {
        let mut names: Vec<String> = list
            .lines()
            .flat_map(|line| line.split(','))
            .map(|name| name.trim().replace("\\-", "-"))
            .filter(|name| !name.is_empty())
            .collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    /// Whether fontconfig has `family`, compared as fontconfig does: ignoring case and
    /// blanks. `Err` carries the closest name when it has not.
    pub fn check(&self, family: &str) -> Result<(), Option<&str>> {
        let fold = |s: &str| -> String {
            s.chars()
                .filter(|c| !c.is_whitespace())
                .flat_map(char::to_lowercase)
                .collect()
        };
        let wanted = fold(family);
        if self.names.iter().any(|n| fold(n) == wanted) {
            return Ok(());
        }
        let folded: Vec<(String, &str)> =
            self.names.iter().map(|n| (fold(n), n.as_str())).collect();
        let closest =
            crate::recipe::diagnostic::closest(&wanted, folded.iter().map(|(f, _)| f.as_str()))
                .and_then(|c| folded.iter().find(|(f, _)| f == c).map(|(_, n)| *n));
        Err(closest)
    }

    /// The families `fc-list` lists here, asked once per process; `None` without
    /// fontconfig's tools, when there is nothing to check against.
    pub fn installed() -> Option<&'static Self> {
        static INSTALLED: std::sync::OnceLock<Option<FontFamilies>> = std::sync::OnceLock::new();
        INSTALLED
            .get_or_init(|| {
                let out = std::process::Command::new("fc-list")
                    .args([":", "family"])
                    .stdin(std::process::Stdio::null())
                    .output()
                    .ok()?;
                out.status
                    .success()
                    .then(|| Self::parse(&String::from_utf8_lossy(&out.stdout)))
            })
            .as_ref()
    }
}

/// An ASS script for a `width`×`height` video showing `words` in groups of at most
/// `style.max_words`. A group never spans a sentence end or a pause, stays up until the
/// next group of its sentence starts, and (with `highlight_word`) is repeated once per
/// word so that each word is coloured while it is spoken.
pub fn ass(words: &[WordTiming], style: &CaptionStyle, width: u32, height: u32) -> String {
    let mut script = header(style, width, height);
    for event in events(words, style) {
        // Writing into a String cannot fail.
        let _ = writeln!(
            script,
            "Dialogue: 0,{},{},Caption,,0,0,0,,{}",
            timestamp(event.start),
            timestamp(event.end),
            event.text
        );
    }
    script
}

/// The file fontconfig gives for a bold or regular `family`, by name and size (what a
/// caption drawn in it depends on), asked once per family and process; empty without
/// fontconfig's tools.
pub fn font_file(family: &str, bold: bool) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static FILES: OnceLock<Mutex<HashMap<(String, bool), String>>> = OnceLock::new();
    let files = FILES.get_or_init(|| Mutex::new(HashMap::new()));
    let key = (family.to_owned(), bold);
    if let Some(known) = files.lock().ok().and_then(|f| f.get(&key).cloned()) {
        return known;
    }
    let pattern = format!(
        "{}:{}",
        family.replace([':', '-', ','], " "),
        if bold { "bold" } else { "regular" }
    );
    let file = std::process::Command::new("fc-match")
        .args(["-f", "%{file}", &pattern])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let found = if file.is_empty() {
        String::new()
    } else {
        let size = std::fs::metadata(&file).map_or(0, |m| m.len());
        let name = std::path::Path::new(&file)
            .file_name()
            .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
        format!("{name} {size}")
    };
    if let Ok(mut f) = files.lock() {
        f.insert(key, found.clone());
    }
    found
}

/// The hook title's size and box padding, in pixels of a 1080×1920 frame. Three lines
/// of it end above y 560, clear of the captions, which at their largest start below
/// y 700 when centred and far lower otherwise.
const HOOK_SIZE: f64 = 76.0;
const HOOK_PADDING: f64 = 14.0;
const HOOK_LINES: f64 = 3.0;
/// Where the hook's box may be on a 1080×1920 frame: the top of the safe area.
pub const HOOK_AREA: Rect = Rect {
    left: SAFE_AREA.left,
    top: SAFE_AREA.top,
    right: SAFE_AREA.right,
    bottom: 570,
};
const HOOK_FADE_IN_MS: u32 = 150;
const HOOK_FADE_OUT_MS: u32 = 400;

/// An ASS script showing `text` from the start for `seconds` (fading in briefly and
/// out over its last 0.4 s), bold white on a dark box at the top of the safe area, in the
/// captions' font. Text too long for three lines is drawn smaller until it fits.
pub fn hook_ass(text: &str, seconds: f64, font: &str, width: u32, height: u32) -> String {
    let x = f64::from(width) / REFERENCE_WIDTH;
    let y = f64::from(height) / REFERENCE_HEIGHT;
    let px = |value: f64, scale: f64| (value * scale).round() as i64;
    let look = CaptionStyle {
        font: font.to_owned(),
        bold: true,
        font_size: HOOK_SIZE as u32,
        pop: false,
        ..CaptionStyle::default()
    };
    let margin = HOOK_PADDING + 8.0;
    let room = f64::from(HOOK_AREA.right - HOOK_AREA.left) - 2.0 * margin;
    let text = escape(text.trim());
    let words: Vec<f64> = text
        .split_whitespace()
        .map(|w| word_width(w, &look))
        .collect();
    let space = word_width(" ", &look);
    // The largest size at which the words, wrapped greedily by their (generous) widths,
    // take at most three lines.
    let fits = |scale: f64| {
        let mut lines = 1.0;
        let mut line = 0.0;
        for width in words.iter().map(|w| w * scale) {
            if width > room {
                return false;
            }
            if line > 0.0 && line + space * scale + width > room {
                lines += 1.0;
                line = width;
            } else {
                line += if line > 0.0 { space * scale } else { 0.0 } + width;
            }
        }
        lines <= HOOK_LINES
    };
    let fit = (0..=40)
        .map(|step| 1.0 - f64::from(step) * 0.02)
        .find(|&scale| fits(scale))
        .unwrap_or(0.2);
    let size = HOOK_SIZE * fit;
    let fade_out = (f64::from(HOOK_FADE_OUT_MS) / 1000.0).min(seconds / 2.0);
    let head = ass_head(width, height);
    format!(
        "{head}\
         Style: Hook,{font},{size},&H00FFFFFF,&H00FFFFFF,&H30101010,&H00000000,-1,0,0,0,100,100,0,0,3,\
         {padding},0,8,{margin_l},{margin_r},{margin_v},1\n\
         \n\
         [Events]\n\
         Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n\
         Dialogue: 1,{start},{end},Hook,,0,0,0,,{{\\fad({HOOK_FADE_IN_MS},{out_ms})}}{text}\n",
        font = font.replace(',', " "),
        size = px(size, y).max(1),
        padding = px(HOOK_PADDING, y),
        margin_l = px(f64::from(HOOK_AREA.left) + margin, x),
        margin_r = px(REFERENCE_WIDTH - f64::from(HOOK_AREA.right) + margin, x),
        margin_v = px(f64::from(HOOK_AREA.top) + HOOK_PADDING + 4.0, y),
        start = timestamp(0),
        end = timestamp(centiseconds(seconds)),
        out_ms = (fade_out * 1000.0).round() as u32,
    )
}

fn header(style: &CaptionStyle, width: u32, height: u32) -> String {
    let x = f64::from(width) / REFERENCE_WIDTH;
    let y = f64::from(height) / REFERENCE_HEIGHT;
    let px = |value: f64, scale: f64| (value * scale).round() as i64;
    let (alignment, margin_v) = match style.position {
        // Alignment 5 centres vertically and ignores the vertical margin; the middle of
        // the frame is well inside the band between the top and bottom overlays.
        CaptionPosition::Center => (5, 0),
        // Bottom-aligned on the safe area's lower edge, less the outline that libass
        // draws outside the glyphs.
        CaptionPosition::Lower => (
            2,
            px(
                REFERENCE_HEIGHT - f64::from(SAFE_AREA.bottom) + f64::from(style.outline) + 4.0,
                y,
            ),
        ),
    };
    let side = side_margin(style);
    let colour = style.text_colour.ass();
    let head = ass_head(width, height);
    format!(
        "{head}\
         Style: Caption,{font},{size},{colour},{colour},{outline_colour},&H80000000,{bold},0,0,0,100,100,0,0,1,\
         {outline},{shadow},{alignment},{margin_l},{margin_r},{margin_v},1\n\
         \n\
         [Events]\n\
         Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text\n",
        // A comma would end the field early.
        font = style.font.replace(',', " "),
        size = px(f64::from(style.font_size), y),
        outline_colour = style.outline_colour.ass(),
        bold = if style.bold { -1 } else { 0 },
        outline = px(f64::from(style.outline), y),
        shadow = px(2.0, y),
        margin_l = px(f64::from(SAFE_AREA.left) + side, x),
        margin_r = px(REFERENCE_WIDTH - f64::from(SAFE_AREA.right) + side, x),
    )
}

/// One caption on screen, times in centiseconds (ASS precision).
#[derive(Debug, PartialEq)]
struct Event {
    start: u64,
    end: u64,
    text: String,
}

struct Word<'a> {
    timing: &'a WordTiming,
    text: String,
}

fn events(words: &[WordTiming], style: &CaptionStyle) -> Vec<Event> {
    let words: Vec<Word> = words
        .iter()
        .filter(|timing| !timing.word.trim().is_empty())
        .map(|timing| Word {
            timing,
            text: escape(&if style.uppercase {
                timing.word.trim().to_uppercase()
            } else {
                timing.word.trim().to_owned()
            }),
        })
        .collect();
    let groups = groups(&words, usize::from(style.max_words.clamp(1, 3)));
    let mut events = Vec::new();
    for (index, group) in groups.iter().enumerate() {
        let last = &words[group.range.end - 1];
        // Within a phrase the group stays up until the next one replaces it, so the
        // captions do not flicker between words.
        let end = match groups.get(index + 1) {
            Some(next) if !group.ends_phrase => words[next.range.start].timing.start,
            _ => last.timing.end,
        };
        if style.highlight_word {
            for i in group.range.clone() {
                let word_end = if i + 1 < group.range.end {
                    words[i + 1].timing.start
                } else {
                    end
                };
                push(
                    &mut events,
                    words[i].timing.start,
                    word_end,
                    line(&words, group, Some(i), style),
                );
            }
        } else {
            let start = words[group.range.start].timing.start;
            push(&mut events, start, end, line(&words, group, None, style));
        }
    }
    events
}

fn push(events: &mut Vec<Event>, start: f64, end: f64, text: String) {
    let (start, end) = (centiseconds(start), centiseconds(end));
    // Words too short to show at ASS precision, or with timings out of order, are
    // covered by their neighbours' events.
    if end > start {
        events.push(Event { start, end, text });
    }
}

/// Room between the side margins for a line of captions, in reference pixels.
fn line_room(style: &CaptionStyle) -> f64 {
    f64::from(SAFE_AREA.right - SAFE_AREA.left) - 2.0 * side_margin(style)
}

/// What a side margin adds inside the safe area: the outline libass draws outside the
/// glyphs, and the pop's growth.
fn side_margin(style: &CaptionStyle) -> f64 {
    f64::from(style.outline) + if style.pop { 24.0 } else { 8.0 }
}

/// A generous estimate of a word's width in reference pixels (`DejaVu Sans` advances,
/// bold and capitals wider), so a word too long for a line can be shrunk to fit: libass
/// wraps between words, never inside one.
fn word_width(word: &str, style: &CaptionStyle) -> f64 {
    let em = f64::from(style.font_size) * if style.bold { 1.08 } else { 1.0 };
    word.chars()
        .map(|c| {
            if c.is_uppercase() || c == 'm' || c == 'w' || c == 'M' || c == 'W' {
                0.78
            } else if c.is_ascii_punctuation() || c == 'i' || c == 'l' || c == 'j' {
                0.36
            } else if c.is_ascii() || is_alphabet(c) {
                0.64
            } else if is_wide(c) {
                // CJK comes from Noto Sans CJK, whose tall line box makes its full-width
                // glyphs about 0.7 of the font size.
                0.72
            } else {
                // Other scripts: a full em.
                1.0
            }
        })
        .sum::<f64>()
        * em
        * if style.pop { 1.25 } else { 1.0 }
}

/// Latin with accents, Greek and Cyrillic: `DejaVu Sans` draws them as wide as plain Latin.
fn is_alphabet(c: char) -> bool {
    matches!(u32::from(c), 0x00C0..=0x024F | 0x0370..=0x03FF | 0x0400..=0x052F)
}

/// Hangul, kana, CJK ideographs and full-width forms.
fn is_wide(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1100..=0x11FF | 0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFF00..=0xFFEF
    )
}

fn line(words: &[Word], group: &Group, highlight: Option<usize>, style: &CaptionStyle) -> String {
    // Scale, in percent, that fits the group's widest word on one line.
    let widest = group
        .range
        .clone()
        .map(|i| word_width(&words[i].text, style))
        .fold(0.0, f64::max);
    let fit = ((line_room(style) / widest.max(1.0)).min(1.0) * 100.0).floor() as u32;
    let mut text = String::new();
    if fit < 100 {
        let _ = write!(text, "{{\\fscx{fit}\\fscy{fit}}}");
    }
    for i in group.range.clone() {
        if i > group.range.start {
            text.push(' ');
        }
        if highlight == Some(i) && style.pop {
            let big = fit * 5 / 4;
            let _ = write!(
                text,
                "{{\\1c{}&\\fscx{big}\\fscy{big}\\t(0,150,\\fscx{fit}\\fscy{fit})}}{}{{\\1c{}&\\fscx{fit}\\fscy{fit}}}",
                style.highlight_colour.ass(),
                words[i].text,
                style.text_colour.ass()
            );
        } else if highlight == Some(i) {
            let _ = write!(
                text,
                "{{\\1c{}&}}{}{{\\1c{}&}}",
                style.highlight_colour.ass(),
                words[i].text,
                style.text_colour.ass()
            );
        } else {
            text.push_str(&words[i].text);
        }
    }
    text
}

#[derive(Debug, PartialEq)]
struct Group {
    range: Range<usize>,
    /// A sentence end or a pause follows the group.
    ends_phrase: bool,
}

/// Splits the words at sentence ends and pauses, then each phrase into groups of at most
/// `max_words`, as even as possible (four words make two and two, not three and one).
fn groups(words: &[Word], max_words: usize) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut start = 0;
    for i in 0..words.len() {
        let phrase_ends = match words.get(i + 1) {
            None => true,
            Some(next) => {
                ends_sentence(&words[i].timing.word)
                    || next.timing.start - words[i].timing.end >= PHRASE_GAP_SECONDS
            }
        };
        if !phrase_ends {
            continue;
        }
        let len = i + 1 - start;
        let parts = len.div_ceil(max_words);
        let (base, extra) = (len / parts, len % parts);
        for part in 0..parts {
            let size = base + usize::from(part < extra);
            groups.push(Group {
                range: start..start + size,
                ends_phrase: part + 1 == parts,
            });
            start += size;
        }
    }
    groups
}

fn ends_sentence(word: &str) -> bool {
    word.trim_end_matches(['"', '\'', ')', ']', '”', '’', '»'])
        .ends_with(['.', '!', '?', '…'])
}

/// Makes a word literal text for libass: braces would open an override block, and a
/// backslash before `N`, `n`, `h` or a brace would turn into a line break, a space or a
/// brace. A word joiner after a backslash keeps it a plain, visible backslash.
fn escape(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        match c {
            '{' => out.push_str("\\{"),
            '}' => out.push_str("\\}"),
            '\\' => out.push_str("\\\u{2060}"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn centiseconds(seconds: f64) -> u64 {
    (seconds.max(0.0) * 100.0).round() as u64
}

/// `H:MM:SS.cc`.
fn timestamp(cs: u64) -> String {
    format!(
        "{}:{:02}:{:02}.{:02}",
        cs / 360_000,
        cs / 6_000 % 60,
        cs / 100 % 60,
        cs % 100
    )
}

/// The head of an ASS script for a `width`×`height` frame, through the styles' format
/// line; each script adds its `Style:` lines and its events.
fn ass_head(width: u32, height: u32) -> String {
    format!(
        "[Script Info]\n\
         ScriptType: v4.00+\n\
         PlayResX: {width}\n\
         PlayResY: {height}\n\
         WrapStyle: 0\n\
         ScaledBorderAndShadow: yes\n\
         \n\
         [V4+ Styles]\n\
         Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, \
         Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, \
         Shadow, Alignment, MarginL, MarginR, MarginV, Encoding\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words spoken back to back, each lasting `each` seconds, with `gap` after the
    /// words whose index is listed.
    fn timed(text: &str, each: f64, pauses: &[(usize, f64)]) -> Vec<WordTiming> {
        let mut t = 0.0;
        text.split_whitespace()
            .enumerate()
            .map(|(i, word)| {
                let timing = WordTiming {
                    word: word.to_string(),
                    start: t,
                    end: t + each,
                };
                t += each;
                t += pauses
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map_or(0.0, |(_, gap)| *gap);
                timing
            })
            .collect()
    }

    fn group_texts(words: &[WordTiming], max_words: usize) -> Vec<String> {
        let words: Vec<Word> = words
            .iter()
            .map(|timing| Word {
                timing,
                text: timing.word.clone(),
            })
            .collect();
        groups(&words, max_words)
            .into_iter()
            .map(|group| {
                words[group.range]
                    .iter()
                    .map(|word| word.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }

    #[test]
    fn groups_are_even_and_never_cross_a_sentence_end() {
        let words = timed("Black holes bend light. They also spin. Fast!", 0.3, &[]);
        assert_eq!(
            group_texts(&words, 3),
            ["Black holes", "bend light.", "They also spin.", "Fast!"]
        );
        assert_eq!(group_texts(&words, 1).len(), words.len());
        assert_eq!(
            group_texts(&words, 2),
            ["Black holes", "bend light.", "They also", "spin.", "Fast!"]
        );
    }

    #[test]
    fn a_pause_splits_a_group_without_punctuation() {
        let words = timed("one two three four", 0.25, &[(1, 0.5)]);
        assert_eq!(group_texts(&words, 3), ["one two", "three four"]);
        let words = timed("one two three four", 0.25, &[(1, 0.1)]);
        assert_eq!(group_texts(&words, 3), ["one two", "three four"]);
        let words = timed("one two three four five", 0.25, &[(1, 0.1)]);
        assert_eq!(group_texts(&words, 3), ["one two three", "four five"]);
    }

    #[test]
    fn each_word_is_highlighted_while_spoken_and_groups_hold_until_the_next() {
        let words = timed("Stars are born. In clouds of gas", 0.5, &[(2, 0.4)]);
        let style = CaptionStyle::default();
        let events = events(&words, &style);
        let hl = style.highlight_colour.ass();
        let plain = style.text_colour.ass();
        assert_eq!(events.len(), words.len());
        assert_eq!(
            events[0].text,
            format!("{{\\1c{hl}&}}Stars{{\\1c{plain}&}} are born.")
        );
        assert_eq!(
            events[2].text,
            format!("Stars are {{\\1c{hl}&}}born.{{\\1c{plain}&}}")
        );
        // Back to back within a group, each event from its word's start.
        for (event, word) in events.iter().zip(&words) {
            assert_eq!(event.start, centiseconds(word.start));
        }
        assert_eq!(events[0].end, events[1].start);
        // The sentence's last group ends with its last word, leaving the pause empty.
        assert_eq!(events[2].end, 150);
        assert_eq!(events[3].start, 190);
        // "In clouds" then "of gas": the first group holds until the second starts.
        assert_eq!(events[4].end, events[5].start);
        assert_eq!(
            events[4].text,
            format!("In {{\\1c{hl}&}}clouds{{\\1c{plain}&}}")
        );
        assert_eq!(
            events[5].text,
            format!("{{\\1c{hl}&}}of{{\\1c{plain}&}} gas")
        );
        assert_eq!(events[6].end, 390);
    }

    #[test]
    fn without_highlighting_each_group_is_one_event() {
        let words = timed("one two three four five", 0.2, &[]);
        let style = CaptionStyle {
            highlight_word: false,
            ..CaptionStyle::default()
        };
        let events = events(&words, &style);
        assert_eq!(
            events,
            [
                Event {
                    start: 0,
                    end: 60,
                    text: "one two three".into()
                },
                Event {
                    start: 60,
                    end: 100,
                    text: "four five".into()
                },
            ]
        );
    }

    #[test]
    fn timestamps_are_hours_minutes_seconds_centiseconds() {
        assert_eq!(timestamp(centiseconds(3661.234)), "1:01:01.23");
        assert_eq!(timestamp(centiseconds(0.005)), "0:00:00.01");
        assert_eq!(timestamp(0), "0:00:00.00");
    }

    #[test]
    fn special_characters_stay_literal() {
        assert_eq!(escape("{\\b1}"), "\\{\\\u{2060}b1\\}");
        assert_eq!(escape("a\\N"), "a\\\u{2060}N");
        assert_eq!(escape("tab\there"), "tab here");
        let words = timed("say {\\an8}hi\\ now", 0.3, &[]);
        let script = ass(&words, &CaptionStyle::default(), 1080, 1920);
        for dialogue in script.lines().filter(|l| l.starts_with("Dialogue:")) {
            let text = dialogue.splitn(10, ',').nth(9).unwrap();
            // Strip the two colour blocks; what is left must hold no unescaped brace and
            // no backslash that libass would read as a command.
            let rest: String = text
                .replace("{\\1c&H001AE0FF&}", "")
                .replace("{\\1c&H00FFFFFF&}", "");
            let chars: Vec<char> = rest.chars().collect();
            for (i, c) in chars.iter().enumerate() {
                if *c == '{' || *c == '}' {
                    assert_eq!(chars[i - 1], '\\', "{dialogue}");
                }
                if *c == '\\' {
                    assert!(matches!(chars[i + 1], '{' | '}' | '\u{2060}'), "{dialogue}");
                }
            }
        }
    }

    #[test]
    fn words_in_other_scripts_shrink_only_as_much_as_they_need() {
        let style = CaptionStyle::default();
        let scale = |word: &str| {
            let words = timed(word, 0.5, &[]);
            let events = events(&words, &style);
            let text = &events[0].text;
            text.strip_prefix("{\\fscx")
                .and_then(|rest| rest.split('\\').next())
                .map_or(100, |n| n.parse::<u32>().unwrap())
        };
        // A thirteen-character Japanese sentence (one "word": no spaces) fits at about
        // 0.7 of the size per character, so it is drawn far larger than a full em each.
        assert!(scale("猫は昼にたくさん眠ります。") >= 75);
        // Cyrillic and accented Latin run as wide as plain Latin.
        assert_eq!(scale("поворачивают"), scale("turningaroun"));
        assert_eq!(scale("ééééééééééé"), scale("eeeeeeeeeee"));
        // Still shrunk when too long for the line.
        assert!(scale("猫は昼にたくさん眠ります猫は昼にたくさん眠ります。") < 60);
    }

    #[test]
    fn the_default_style_keeps_clear_of_the_app_overlays() {
        let words = timed("hello", 0.5, &[]);
        let style_line = |style: &CaptionStyle, w, h| {
            ass(&words, style, w, h)
                .lines()
                .find(|l| l.starts_with("Style:"))
                .unwrap()
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let centre = style_line(&CaptionStyle::default(), 1080, 1920);
        assert_eq!(centre[1], "DejaVu Sans");
        assert_eq!(centre[7], "-1", "bold");
        assert_eq!(centre[18], "5", "middle centre");
        assert!(
            centre[20].parse::<u32>().unwrap() >= 1080 - SAFE_AREA.right,
            "right margin {}",
            centre[20]
        );
        let lower = CaptionStyle {
            position: CaptionPosition::Lower,
            ..CaptionStyle::default()
        };
        let lower = style_line(&lower, 1080, 1920);
        assert_eq!(lower[18], "2", "bottom centre");
        // Regression: `bold-lower` ended at y≈1480, over the description.
        let bottom = 1920 - lower[21].parse::<u32>().unwrap();
        assert!(bottom < SAFE_AREA.bottom, "captions end at y {bottom}");
        // Half the frame, half the measurements.
        let small = style_line(&CaptionStyle::default(), 540, 960);
        assert_eq!(small[2], "46");
        assert_eq!(small[20], "68");
    }
}
