//! Errors that point: a file, a line, a column, a snippet with a caret, and a hint.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource};
use serde::Serialize;

use super::yaml::Pos;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: u32,
    pub column: u32,
    /// A stable identifier of the kind of mistake, e.g. `unknown-key`.
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
    #[serde(skip)]
    offset: usize,
    #[serde(skip)]
    len: usize,
    #[serde(skip)]
    source: Option<Arc<str>>,
    /// A byte range of the source the snippet must not show (a pasted credential).
    #[serde(skip)]
    masked: Option<(usize, usize)>,
}

impl Diagnostic {
    pub fn new(
        file: &SourceFile,
        pos: Pos,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: file.path.clone(),
            line: pos.line.max(1),
            column: pos.col.max(1),
            code,
            message: message.into(),
            hint: None,
            offset: pos.offset,
            len: pos.len,
            source: Some(file.text.clone()),
            masked: None,
        }
    }

    /// A diagnostic about a file as a whole (unreadable, missing).
    pub fn file(path: &Path, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            path: path.to_owned(),
            line: 1,
            column: 1,
            code,
            message: message.into(),
            hint: None,
            offset: 0,
            len: 0,
            source: None,
            masked: None,
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Hides `len` bytes of the source from `offset` in the snippet (all but the first
    /// few characters), so a pasted key does not reach a terminal or a CI log.
    #[must_use]
    pub fn with_masked(mut self, offset: usize, len: usize) -> Self {
        self.masked = Some((offset, offset.saturating_add(len)));
        self
    }

    #[must_use]
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Renders like rustc: headline with `path:line:col`, snippet, caret, hint.
    ///
    /// Every input renders: snippet lines are cut to [`SNIPPET_WIDTH`] columns around
    /// the span, control characters show as visible symbols, and the message and hint
    /// print their control characters the same way.
    pub fn render(&self) -> String {
        let mut out = format!(
            "error[{}]: {}:{}:{}: {}\n",
            self.code,
            visible(&self.path.display().to_string()),
            self.line,
            self.column,
            visible(&self.message)
        );
        let hint = self.hint.as_deref().map(visible);
        let Some(source) = &self.source else {
            if let Some(hint) = &hint {
                out.push_str(&format!("  help: {hint}\n"));
            }
            return out;
        };
        let excerpt = Excerpt::of(source, self.offset, self.len, self.masked);
        // The headline above already carries the message. miette gets none, so its own
        // header is exactly one line to skip however long the message (it wraps long ones).
        let mut diag = MietteDiagnostic::new(String::new()).with_labels([LabeledSpan::at(
            excerpt.offset..excerpt.offset + excerpt.len.max(1),
            "here",
        )]);
        if let Some(hint) = hint {
            diag = diag.with_help(hint.into_owned());
        }
        // miette counts columns in bytes; the snippet's frame names our position instead,
        // in characters like the headline, so the two agree on lines with non-ASCII text.
        let report = miette::Report::new(diag).with_source_code(NamedSource::new(
            format!(
                "{}:{}:{}",
                visible(&self.path.display().to_string()),
                self.line,
                self.column
            ),
            excerpt.text,
        ));
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_context_lines(1)
            .without_primary_span_start();
        let mut snippet = String::new();
        if handler.render_report(&mut snippet, report.as_ref()).is_ok() {
            for line in snippet.lines().skip(1) {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out
    }
}

/// Widest a snippet line gets, in terminal columns; longer lines are cut around the span.
pub const SNIPPET_WIDTH: usize = 80;
/// Columns of a cut line shown before the span starts.
const LEAD: usize = 20;
/// Characters of a masked range left readable, so the user can tell which value it is.
const MASK_KEEP: usize = 6;
/// Where a line was cut.
const CUT: char = '…';

/// What the snippet shows: the lines around the span, cut and made visible, padded with
/// empty lines so line numbers stay right, and the span moved to match.
struct Excerpt {
    text: String,
    offset: usize,
    len: usize,
}

impl Excerpt {
    fn of(source: &str, offset: usize, len: usize, masked: Option<(usize, usize)>) -> Self {
        let offset = floor_boundary(source, offset.min(source.len()));
        let line_start = source[..offset].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[offset..]
            .find('\n')
            .map_or(source.len(), |i| offset + i);
        let content_end = if source[..line_end].ends_with('\r') && line_end > line_start {
            line_end - 1
        } else {
            line_end
        };
        // A span over several lines is shown on its first line only.
        let span_end = floor_boundary(source, offset.saturating_add(len).min(content_end));
        let span_end = span_end.max(offset);
        let line = &source[line_start..content_end];
        let start_col = width(&line[..offset.min(content_end) - line_start]);
        let total = width(line);
        let (from, to) = if total <= SNIPPET_WIDTH {
            (0, usize::MAX)
        } else {
            let from = start_col
                .saturating_sub(LEAD)
                .min(total.saturating_sub(SNIPPET_WIDTH));
            (from, from + SNIPPET_WIDTH)
        };
        let mask = |at: usize| {
            masked.is_some_and(|(a, b)| {
                at >= a
                    && at < b
                    && source
                        .get(a..at)
                        .is_some_and(|s| s.chars().count() >= MASK_KEEP)
            })
        };
        let mut text = String::new();
        let first_line = source[..line_start].matches('\n').count();
        // Line numbers come from position: one empty line for each line not shown.
        let before = if line_start > 0 {
            let prev_end = line_start - 1;
            let prev_start = source[..prev_end].rfind('\n').map_or(0, |i| i + 1);
            Some((prev_start, prev_end))
        } else {
            None
        };
        let padding = first_line - usize::from(before.is_some());
        text.extend(std::iter::repeat_n('\n', padding));
        if let Some((a, b)) = before {
            cut(
                source,
                a,
                strip_cr(source, a, b),
                from,
                to,
                &mask,
                &mut text,
                None,
            );
            text.push('\n');
        }
        let mut span = (offset, span_end);
        let mapped = cut(
            source,
            line_start,
            content_end,
            from,
            to,
            &mask,
            &mut text,
            Some(&mut span),
        );
        text.push('\n');
        if line_end + 1 < source.len() {
            let next_start = line_end + 1;
            let next_end = source[next_start..]
                .find('\n')
                .map_or(source.len(), |i| next_start + i);
            let next = strip_cr(source, next_start, next_end);
            cut(source, next_start, next, from, to, &mask, &mut text, None);
            text.push('\n');
        }
        let (offset, end) = mapped.unwrap_or((text.len(), text.len()));
        Self {
            len: end - offset,
            offset,
            text,
        }
    }
}

fn strip_cr(source: &str, start: usize, end: usize) -> usize {
    if end > start && source[..end].ends_with('\r') {
        end - 1
    } else {
        end
    }
}

/// Appends the columns `from..to` of the line `source[start..end]` to `out`, cut marks
/// where something was left out, control characters as visible symbols and masked
/// characters as `*`. With `span`, returns where its byte range landed in `out`.
#[allow(clippy::too_many_arguments)]
fn cut(
    source: &str,
    start: usize,
    end: usize,
    from: usize,
    to: usize,
    mask: &dyn Fn(usize) -> bool,
    out: &mut String,
    span: Option<&mut (usize, usize)>,
) -> Option<(usize, usize)> {
    let (span_start, span_end) = span.map_or((usize::MAX, usize::MAX), |s| *s);
    let mut mapped_start = None;
    let mut mapped_end = None;
    let mut col = 0;
    let mut cut_before = false;
    for (i, c) in source[start..end].char_indices() {
        let at = start + i;
        let w = char_width(c, col);
        if col < from {
            col += w;
            cut_before = true;
            continue;
        }
        if cut_before {
            out.push(CUT);
            cut_before = false;
        }
        if col + w > to {
            if at <= span_start && mapped_start.is_none() {
                mapped_start = Some(out.len());
            }
            if mapped_end.is_none() && mapped_start.is_some() {
                mapped_end = Some(out.len());
            }
            out.push(CUT);
            return finish(mapped_start, mapped_end, out.len());
        }
        if at == span_start {
            mapped_start = Some(out.len());
        }
        if at == span_end {
            mapped_end = Some(out.len());
        }
        if mask(at) {
            out.push('*');
        } else {
            out.push(picture(c));
        }
        col += w;
    }
    if cut_before {
        out.push(CUT);
    }
    if span_start != usize::MAX && mapped_start.is_none() {
        mapped_start = Some(out.len());
    }
    finish(mapped_start, mapped_end, out.len())
}

fn finish(start: Option<usize>, end: Option<usize>, len: usize) -> Option<(usize, usize)> {
    start.map(|s| (s, end.unwrap_or(len).max(s)))
}

/// Columns a character takes at column `col`, the way the snippet renderer counts them.
fn char_width(c: char, col: usize) -> usize {
    if c == '\t' {
        4 - col % 4
    } else if c.is_control() {
        1
    } else {
        unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
    }
}

fn width(text: &str) -> usize {
    text.chars().fold(0, |col, c| col + char_width(c, col))
}

fn floor_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A control character as a visible symbol of one column (tab stays a tab); any other
/// character as itself. Terminals and CI logs never receive a raw escape this way.
pub fn picture(c: char) -> char {
    match c {
        '\t' => c,
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + c as u32).unwrap_or('\u{fffd}'),
        '\u{7f}' => '\u{2421}',
        c if c.is_control() => '\u{fffd}',
        // Bidirectional overrides reorder what is shown; show them as a mark instead.
        '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => '\u{fffd}',
        c => c,
    }
}

/// `text` with every control character (newline and tab included) made visible.
pub fn visible(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().all(|c| picture(c) == c && c != '\t') {
        std::borrow::Cow::Borrowed(text)
    } else {
        std::borrow::Cow::Owned(
            text.chars()
                .map(|c| if c == '\t' { '\u{2409}' } else { picture(c) })
                .collect(),
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render())
    }
}

/// A file's path as the user named it, and its text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: Arc<str>,
}

impl SourceFile {
    /// The position of a byte range, with line and column computed.
    pub fn pos_at(&self, offset: usize, len: usize) -> Pos {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..offset].chars().count() + 1;
        Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            col: u32::try_from(col).unwrap_or(u32::MAX),
            offset,
            len: len.min(self.text.len() - offset),
        }
    }
}

/// The hint naming the closest of `candidates` to `word`, if it is a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = (len / 3).max(1);
    candidates
        .into_iter()
        // The distance is at least the difference in length: a name far longer or
        // shorter than a candidate is no typo of it, and is not compared letter by letter.
        .filter(|c| c.chars().count().abs_diff(len) <= limit)
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A diagnostic at the first `needle` of `text`, spanning it.
    fn at(text: &str, needle: &str) -> Diagnostic {
        let file = SourceFile {
            path: PathBuf::from("r.yaml"),
            text: Arc::from(text),
        };
        let offset = text.find(needle).expect("needle in text");
        Diagnostic::new(
            &file,
            file.pos_at(offset, needle.len()),
            "test",
            "a mistake",
        )
    }

    /// The snippet line holding the caret's stem and the source line above it must put
    /// the stem under the span: checked by columns, the way a terminal shows them.
    fn caret_column(rendered: &str) -> usize {
        let line = rendered
            .lines()
            .find(|l| l.contains('┬') || l.contains('▲'))
            .unwrap_or_else(|| panic!("no caret in:\n{rendered}"));
        let i = line.find(['┬', '▲']).expect("caret");
        width(&line[..i])
    }

    fn snippet_line(rendered: &str, number: usize) -> &str {
        let prefix = format!(" {number} │ ");
        rendered
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(&prefix[1..]))
            .unwrap_or_else(|| panic!("no line {number} in:\n{rendered}"))
    }

    #[test]
    fn a_66072_character_line_renders_without_panicking() {
        let topic = "a".repeat(66_060);
        let text = format!("version: 1\ntopic: [{topic}, Zz]\n");
        assert!(text.lines().nth(1).unwrap().len() >= 66_072);
        let rendered = at(&text, "Zz").render();
        let line = snippet_line(&rendered, 2);
        assert!(width(line) <= SNIPPET_WIDTH + 2, "{line}");
        assert!(line.starts_with('…') && line.contains("Zz"), "{line}");
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn lines_of_every_length_render_with_the_caret_on_the_span() {
        for power in 2..=6 {
            let n = 10usize.pow(power);
            for (label, text) in [
                ("start", format!("k: MARK{}\n", "x".repeat(n))),
                (
                    "middle",
                    format!("k: {}MARK{}\n", "x".repeat(n / 2), "x".repeat(n / 2)),
                ),
                ("end", format!("k: {}MARK", "x".repeat(n))),
            ] {
                let rendered = at(&text, "MARK").render();
                let line = snippet_line(&rendered, 1);
                assert!(width(line) <= SNIPPET_WIDTH + 2, "{label} {n}: {line}");
                let col = caret_column(&rendered);
                let prefix = rendered
                    .lines()
                    .find(|l| l.contains(" │ "))
                    .map(|l| width(&l[..l.find(" │ ").unwrap() + " │ ".len()]))
                    .unwrap();
                let mark = width(&line[..line.find("MARK").unwrap()]);
                assert!(
                    (prefix + mark..prefix + mark + 4).contains(&col),
                    "{label} {n}: caret at {col}, MARK at {}:\n{rendered}",
                    prefix + mark
                );
            }
        }
    }

    #[test]
    fn tabs_render_with_the_caret_on_the_span() {
        let text = "a:\n\tb:\t\tvalue\t# note\nc: 1\n";
        let rendered = at(text, "value").render();
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn wide_and_combining_characters_render_with_the_caret_on_the_span() {
        let text = format!(
            "topic: [黒い穴, 🦉🦉 owls, cafe\u{301} e\u{301}, {}, MARK]\n",
            "宇宙".repeat(60)
        );
        let rendered = at(&text, "MARK").render();
        insta::assert_snapshot!(rendered);
        let short = at("topic: [黒い穴, 🦉 owls, cafe\u{301}, MARK]\n", "MARK").render();
        insta::assert_snapshot!("wide_short", short);
    }

    #[test]
    fn crlf_files_render_without_carriage_returns() {
        let text = "version: 1\r\nname: demo\r\nvoice: [narator]\r\n";
        let rendered = at(text, "narator").render();
        assert!(!rendered.contains('\r'));
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn a_file_without_a_final_newline_renders() {
        for text in ["a: 1\nb: MARK", "MARK", "a: 1\nb: 2"] {
            let file = SourceFile {
                path: PathBuf::from("r.yaml"),
                text: Arc::from(text),
            };
            let offset = text.find("MARK").unwrap_or(text.len());
            let d = Diagnostic::new(&file, file.pos_at(offset, 4), "test", "a mistake");
            let rendered = d.render();
            assert!(rendered.contains("here"), "{rendered}");
        }
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let text = "topic: [\"x\u{1b}[31mred\u{7}\", MARK]\n";
        let mut d = at(text, "MARK");
        d.message = "topic `\u{1b}[2J` \n::warning::x".into();
        let rendered = d.render();
        assert!(
            !rendered.chars().any(|c| c.is_control() && c != '\n'),
            "{rendered:?}"
        );
        assert!(!rendered.contains("\n::warning"), "{rendered}");
    }

    #[test]
    fn a_masked_range_shows_only_its_first_characters() {
        let key = "sk-or-v1-0123456789abcdef0123456789abcdef";
        let text = format!("vars:\n  note: \"use {key} here\"\n");
        let offset = text.find(key).unwrap();
        let rendered = at(&text, "note").with_masked(offset, key.len()).render();
        assert!(!rendered.contains("0123456789"), "{rendered}");
        assert!(rendered.contains("sk-or-****"), "{rendered}");
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("warm2", ["warm", "offline"]).as_deref(),
            Some("did you mean `warm`?")
        );
        assert_eq!(did_you_mean("zzzz", ["warm", "offline"]), None);
    }

    /// A fuzzed recipe with a 210 KB espeak voice name took 5.8 s to validate: the name
    /// was compared letter by letter with every installed voice. A name this long is
    /// now refused without a comparison (before the fix this test ran for minutes).
    #[test]
    fn a_voice_name_of_hundreds_of_kilobytes_is_no_typo_and_is_not_compared() {
        let long = "en-un".repeat(2_000_000);
        let voices: Vec<String> = (0..300).map(|i| format!("voice-{i}")).collect();
        assert_eq!(closest(&long, voices.iter().map(String::as_str)), None);
        // Close names of a different length are still found.
        assert_eq!(closest("en-uss", ["en-us", "fr"]), Some("en-us"));
    }
}
