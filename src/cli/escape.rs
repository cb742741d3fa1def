//! User strings on the way out: topics, voice and recipe names, errors and script lines
//! come from files and services, so none may print a raw control character. A raw ESC
//! would drive the terminal; a newline followed by `::` would be a GitHub Actions
//! workflow command in a CI log.

use std::borrow::Cow;

use crate::recipe::diagnostic::{picture, visible};

/// One user string on a plain line: every control character (newline and tab too)
/// shows as a visible symbol.
pub fn plain(s: &str) -> Cow<'_, str> {
    visible(s)
}

/// Text made of lines (a plan, a report): newlines stay, every other control character
/// shows as a symbol, and no line can start a workflow command.
pub fn lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let line: String = line.chars().map(picture).collect();
        let trimmed = line.trim_start();
        if let Some(rest) = trimmed.strip_prefix("::") {
            out.push_str(&line[..line.len() - trimmed.len()]);
            out.push_str(": :");
            out.push_str(rest);
        } else {
            out.push_str(&line);
        }
    }
    out
}

/// The message of a workflow command: `%`, CR and LF are percent-encoded as the
/// runner expects, other control characters show as symbols.
pub fn ci_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
        .chars()
        .map(picture)
        .collect()
}

/// A property of a workflow command (`file=`, `title=`): also encodes the `:` and `,`
/// that would end it.
pub fn ci_property(s: &str) -> String {
    ci_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_topic_cannot_inject_a_workflow_command() {
        let topic = "Comets\n::warning title=x::INJECTED";
        assert!(!ci_data(topic).contains('\n'));
        assert!(!plain(topic).contains('\n'));
        let text = lines(&format!("  + {topic}\n::error::x\n"));
        assert!(
            text.lines().all(|l| !l.trim_start().starts_with("::")),
            "{text}"
        );
    }

    #[test]
    fn ansi_escapes_never_print_raw() {
        for s in [
            plain("\u{1b}[31mred").into_owned(),
            lines("a \u{1b}[2J b\n\u{7}"),
            ci_data("\u{1b}]0;title\u{7}"),
            ci_property("\u{9b}31m"),
        ] {
            assert!(!s.chars().any(|c| c.is_control() && c != '\n'), "{s:?}");
        }
    }

    #[test]
    fn workflow_command_encoding_is_kept() {
        assert_eq!(ci_data("50% a\r\nb"), "50%25 a%0D%0Ab");
        assert_eq!(ci_property("a:b,c"), "a%3Ab%2Cc");
    }
}
