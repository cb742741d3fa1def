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
        }
    }

    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    #[must_use]
    pub fn with_hint_opt(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }

    /// Renders like rustc: headline with `path:line:col`, snippet, caret, hint.
    pub fn render(&self) -> String {
        let mut out = format!(
            "error[{}]: {}:{}:{}: {}\n",
            self.code,
            self.path.display(),
            self.line,
            self.column,
            self.message
        );
        let Some(source) = &self.source else {
            if let Some(hint) = &self.hint {
                out.push_str(&format!("  help: {hint}\n"));
            }
            return out;
        };
        let mut diag = MietteDiagnostic::new(self.message.clone()).with_labels([LabeledSpan::at(
            self.offset..self.offset + self.len.max(1),
            "here",
        )]);
        if let Some(hint) = &self.hint {
            diag = diag.with_help(hint.clone());
        }
        let report = miette::Report::new(diag).with_source_code(NamedSource::new(
            self.path.display().to_string(),
            source.to_string(),
        ));
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_context_lines(1);
        let mut snippet = String::new();
        if handler.render_report(&mut snippet, report.as_ref()).is_ok() {
            // The headline already carries the message; keep the snippet and the hint.
            for line in snippet.lines().skip(1) {
                out.push_str(line.trim_end());
                out.push('\n');
            }
        }
        out
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

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, c)| format!("did you mean `{c}`?"))
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

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("warm2", ["warm", "offline"]).as_deref(),
            Some("did you mean `warm`?")
        );
        assert_eq!(did_you_mean("zzzz", ["warm", "offline"]), None);
    }
}
