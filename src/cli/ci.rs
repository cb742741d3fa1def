//! CI mode: GitHub Actions annotations for validation errors, the JSON summary and JUnit
//! report files CI dashboards read, and `--changed-since` recipe selection through git.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use super::{Failure, Select, out};
use crate::engine::Summary;
use crate::recipe::{self, Diagnostic};

/// Whether the environment is a CI runner: every major one sets `CI`.
pub fn from_env() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false" && v != "0")
}

/// One diagnostic as a workflow command, e.g. `::error file=a.yaml,line=3,col=5::…`.
pub fn annotation(d: &Diagnostic) -> String {
    format!(
        "::error file={},line={},col={},title={}::{}\n",
        escape_property(&d.path.display().to_string()),
        d.line,
        d.column,
        escape_property(d.code),
        escape_data(&d.message)
    )
}

use super::escape::{ci_data as escape_data, ci_property as escape_property};

/// Applies `--changed-since`: the recipe files to load, or `None` when nothing changed
/// (the command then has nothing to do and says so).
pub fn select(paths: &[PathBuf], select: &Select) -> Result<Option<Vec<PathBuf>>, Failure> {
    let Some(git_ref) = &select.changed_since else {
        return Ok(Some(paths.to_vec()));
    };
    // Unreadable paths are reported by the loader with their usual diagnostic.
    let Ok(files) = recipe::discover(paths) else {
        return Ok(Some(paths.to_vec()));
    };
    // A recipe named by its file still reads its folder's project and topics files.
    let scope: Vec<PathBuf> = paths
        .iter()
        .map(|p| match p.parent() {
            _ if p.is_dir() => p.clone(),
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        })
        .collect();
    let changed = changed_files(git_ref, &scope)?;
    let picked: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| {
            // The recipe, its project file, topics file, music and footage folders.
            std::iter::once(f.clone())
                .chain(super::watch::inputs(f))
                .filter_map(|input| canonical(&input))
                .any(|input| changed.iter().any(|c| c.starts_with(&input)))
        })
        .collect();
    if picked.is_empty() {
        out(&format!(
            "no recipe changed since `{}`\n",
            super::escape::plain(git_ref)
        ));
        return Ok(None);
    }
    Ok(Some(picked))
}

/// The real path of `p`; of a deleted file, its folder's real path and its name.
fn canonical(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok().or_else(|| {
        let parent = p.parent().filter(|d| !d.as_os_str().is_empty());
        let dir = std::fs::canonicalize(parent.unwrap_or(Path::new("."))).ok()?;
        Some(dir.join(p.file_name()?))
    })
}

/// Files changed since `git_ref` under `paths`, plus untracked ones, as canonical paths.
fn changed_files(git_ref: &str, paths: &[PathBuf]) -> Result<BTreeSet<PathBuf>, Failure> {
    let mut diff = Command::new("git");
    diff.args(["diff", "--name-only", "--relative", git_ref, "--"])
        .args(paths);
    let mut untracked = Command::new("git");
    untracked
        .args(["ls-files", "--others", "--exclude-standard", "--"])
        .args(paths);
    let mut set = BTreeSet::new();
    for mut cmd in [diff, untracked] {
        let output = cmd.output().map_err(|e| {
            Failure::environment(format!("cannot run `git`: {e}"))
                .with_hint("`--changed-since` needs git on the PATH")
        })?;
        if !output.status.success() {
            return Err(Failure::invalid(format!(
                "`git` cannot compare with `{}`: {}",
                super::escape::plain(git_ref),
                super::escape::plain(String::from_utf8_lossy(&output.stderr).trim())
            )));
        }
        set.extend(
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|l| canonical(Path::new(l))),
        );
    }
    Ok(set)
}

/// Where the summary and JUnit files go; in CI both have defaults under the state dir.
pub struct Reports {
    pub summary: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

impl Reports {
    pub fn new(
        summary: Option<PathBuf>,
        junit: Option<PathBuf>,
        ci: bool,
        state_dir: &Path,
    ) -> Self {
        let default = |name: &str| ci.then(|| state_dir.join("reports").join(name));
        Self {
            summary: summary.or_else(|| default("summary.json")),
            junit: junit.or_else(|| default("junit.xml")),
        }
    }

    /// Writes whichever files were asked for.
    pub fn write(&self, summary: &Summary, jobs: &[JobReport]) -> Result<(), Failure> {
        // GitHub Actions shows this file on the run's page.
        if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|p| !p.is_empty()) {
            use std::io::Write as _;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| {
                    Failure::environment(format!(
                        "cannot write the step summary `{}`: {e}",
                        Path::new(&path).display()
                    ))
                })?;
            file.write_all(step_summary(summary, jobs).as_bytes())
                .map_err(|e| Failure::environment(format!("cannot write the step summary: {e}")))?;
        }
        if let Some(path) = &self.summary {
            let text = serde_json::to_string_pretty(&serde_json::json!({
                "summary": summary,
                "jobs": jobs,
            }))
            .unwrap_or_default();
            write_file(path, &text)?;
        }
        if let Some(path) = &self.junit {
            write_file(path, &junit(summary, jobs))?;
        }
        Ok(())
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::environment(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    std::fs::write(path, text)
        .map_err(|e| Failure::environment(format!("cannot write `{}`: {e}", path.display())))
}

/// How one job of the run ended, for the report files.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    pub recipe: String,
    pub id: String,
    pub topic: String,
    pub voice: String,
    pub status: String,
    /// Done before this run: nothing was looked at (JUnit: skipped).
    pub already_done: bool,
    /// Where the job's matrix cell is written (its topic), for annotations.
    pub file: Option<String>,
    pub line: Option<u32>,
    pub stage: Option<String>,
    pub error: Option<String>,
    pub seconds: i64,
}

/// One `::error` annotation per failed job, at its matrix cell in the recipe.
pub fn failed_annotations(jobs: &[JobReport]) -> String {
    jobs.iter()
        .filter(|j| j.status == "failed")
        .map(|j| {
            let at = match (&j.file, j.line) {
                (Some(f), Some(l)) => format!("file={},line={l},", escape_property(f)),
                (Some(f), None) => format!("file={},", escape_property(f)),
                _ => String::new(),
            };
            format!(
                "::error {at}title={}::{}\n",
                escape_property(&format!("{} job failed", j.recipe)),
                escape_data(&format!(
                    "\"{}\" (voice {}, job {}) failed at `{}`: {}",
                    j.topic,
                    j.voice,
                    &j.id[..j.id.len().min(8)],
                    j.stage.as_deref().unwrap_or("unknown"),
                    j.error.as_deref().unwrap_or("failed")
                ))
            )
        })
        .collect()
}

/// A Markdown table cell: one line, no markup of its own.
fn cell(s: &str) -> String {
    let one_line: String = super::escape::plain(s).into_owned();
    let mut out = String::with_capacity(one_line.len());
    for c in one_line.chars() {
        if "|\\`*_[]<>#&".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The run as a Markdown table for `$GITHUB_STEP_SUMMARY`: failures first.
pub fn step_summary(summary: &Summary, jobs: &[JobReport]) -> String {
    let mut text = format!(
        "### factory run\n\n{} done, {} already done, {} failed, {} deferred; {} stages executed, {} reused, {:.0} s\n\n",
        summary.done,
        summary.already_done,
        summary.failed,
        summary.deferred,
        summary.executed_stages,
        summary.reused_stages,
        summary.wall_seconds
    );
    if jobs.is_empty() {
        return text;
    }
    text.push_str("| status | recipe | topic | voice | job | stage | error |\n|---|---|---|---|---|---|---|\n");
    let rank = |j: &JobReport| match j.status.as_str() {
        "failed" => 0,
        _ if j.already_done => 2,
        _ => 1,
    };
    let mut sorted: Vec<&JobReport> = jobs.iter().collect();
    sorted.sort_by_key(|j| rank(j));
    for j in sorted {
        let status = if j.already_done {
            "already done"
        } else {
            j.status.as_str()
        };
        text.push_str(&format!(
            "| {} | {} | {} | {} | `{}` | {} | {} |\n",
            cell(status),
            cell(&j.recipe),
            cell(&j.topic),
            cell(&j.voice),
            &j.id[..j.id.len().min(8)],
            cell(j.stage.as_deref().unwrap_or("")),
            cell(j.error.as_deref().unwrap_or(""))
        ));
    }
    text.push('\n');
    text
}

/// One `<testsuite>` per recipe, one `<testcase>` per job, named by topic and voice:
/// failed jobs fail with their stage and error; jobs done before this run, deferred,
/// pending and interrupted ones are skipped.
fn junit(summary: &Summary, jobs: &[JobReport]) -> String {
    let mut recipes: Vec<&str> = jobs.iter().map(|j| j.recipe.as_str()).collect();
    recipes.dedup();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = jobs
        .iter()
        .filter(|j| j.status == "failed" && !j.already_done)
        .count();
    let _ = writeln!(
        xml,
        "<testsuites name=\"factory\" tests=\"{}\" failures=\"{failures}\" time=\"{:.1}\">",
        jobs.len(),
        summary.wall_seconds
    );
    let mut seen = BTreeSet::new();
    for recipe in recipes {
        if !seen.insert(recipe) {
            continue;
        }
        let mine: Vec<&JobReport> = jobs.iter().filter(|j| j.recipe == recipe).collect();
        let failed = mine
            .iter()
            .filter(|j| j.status == "failed" && !j.already_done)
            .count();
        let skipped = mine.iter().filter(|j| is_skipped(j)).count();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\">",
            xml_escape(recipe),
            mine.len()
        );
        for j in mine {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{} · {} ({})\" time=\"{}\"",
                xml_escape(recipe),
                xml_escape(&j.topic),
                xml_escape(&j.voice),
                xml_escape(&j.id[..j.id.len().min(8)]),
                j.seconds
            );
            if j.already_done {
                xml.push_str(">\n      <skipped message=\"already done before this run\"/>\n    </testcase>\n");
            } else if j.status == "failed" {
                let stage = j.stage.as_deref().unwrap_or("unknown");
                let error = j.error.as_deref().unwrap_or("failed");
                let _ = write!(
                    xml,
                    ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                    xml_escape(&format!("{stage}: {error}")),
                    xml_escape(stage),
                    xml_escape(error)
                );
            } else if is_skipped(j) {
                let _ = write!(
                    xml,
                    ">\n      <skipped message=\"{}\"/>\n    </testcase>\n",
                    xml_escape(&j.status)
                );
            } else {
                xml.push_str("/>\n");
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

fn is_skipped(j: &JobReport) -> bool {
    j.already_done
        || matches!(
            j.status.as_str(),
            "deferred" | "interrupted" | "pending" | "running"
        )
}

/// Escapes text for XML content and attributes; control characters XML 1.0 forbids go.
pub fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_escape_percent_and_newlines() {
        assert_eq!(escape_data("50% a\r\nb"), "50%25 a%0D%0Ab");
        assert_eq!(escape_property("a:b,c"), "a%3Ab%2Cc");
    }

    #[test]
    fn an_annotation_is_one_line_whatever_the_message() {
        let d = Diagnostic::file(
            Path::new("r.yaml"),
            "invalid-value",
            "topic `Comets\n::warning title=x::INJECTED\u{1b}[31m`",
        );
        let line = annotation(&d);
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(!line.contains('\u{1b}'), "{line:?}");
    }

    #[test]
    fn xml_escapes_markup_and_drops_control_characters() {
        assert_eq!(
            xml_escape("<a & \"b\">\u{1b}"),
            "&lt;a &amp; &quot;b&quot;&gt;"
        );
    }
}
