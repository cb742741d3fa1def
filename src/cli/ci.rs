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
        out(&format!("no recipe changed since `{git_ref}`\n"));
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
                "`git` cannot compare with `{git_ref}`: {}",
                String::from_utf8_lossy(&output.stderr).trim()
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
    pub status: String,
    pub stage: Option<String>,
    pub error: Option<String>,
    pub seconds: i64,
}

/// One `<testsuite>` per recipe, one `<testcase>` per job: failed jobs fail with their
/// stage and error; queued, pending and interrupted ones are skipped.
fn junit(summary: &Summary, jobs: &[JobReport]) -> String {
    let mut recipes: Vec<&str> = jobs.iter().map(|j| j.recipe.as_str()).collect();
    recipes.dedup();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures = jobs.iter().filter(|j| j.status == "failed").count();
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
        let failed = mine.iter().filter(|j| j.status == "failed").count();
        let skipped = mine.iter().filter(|j| is_skipped(&j.status)).count();
        let _ = writeln!(
            xml,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" skipped=\"{skipped}\">",
            xml_escape(recipe),
            mine.len()
        );
        for j in mine {
            let _ = write!(
                xml,
                "    <testcase classname=\"{}\" name=\"{} ({})\" time=\"{}\"",
                xml_escape(recipe),
                xml_escape(&j.topic),
                xml_escape(&j.id[..j.id.len().min(8)]),
                j.seconds
            );
            if j.status == "failed" {
                let stage = j.stage.as_deref().unwrap_or("unknown");
                let error = j.error.as_deref().unwrap_or("failed");
                let _ = write!(
                    xml,
                    ">\n      <failure message=\"{}\" type=\"{}\">{}</failure>\n    </testcase>\n",
                    xml_escape(&format!("{stage}: {error}")),
                    xml_escape(stage),
                    xml_escape(error)
                );
            } else if is_skipped(&j.status) {
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

fn is_skipped(status: &str) -> bool {
    matches!(status, "deferred" | "interrupted" | "pending" | "running")
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
