//! Topics from a file inside the recipe directory.

use std::path::{Component, Path, PathBuf};

/// Why a relative path from a recipe is not acceptable, if it is not.
pub fn inside(dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let rel = Path::new(relative);
    if rel.is_absolute() {
        return Err(format!(
            "`{relative}` is an absolute path; use a path relative to the recipe"
        ));
    }
    if rel.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(format!("`{relative}` leaves the recipe directory"));
    }
    let joined = dir.join(rel);
    // Symlinks could still point outside; compare canonical forms when the file exists.
    if let (Ok(real), Ok(base)) = (joined.canonicalize(), dir.canonicalize())
        && !real.starts_with(&base)
    {
        return Err(format!(
            "`{relative}` resolves outside the recipe directory"
        ));
    }
    Ok(joined)
}

/// Reads topics: `.csv` takes the `topic` column (or the first), anything else one topic
/// per line with `#` comments and blank lines skipped.
pub fn read(path: &Path) -> Result<Vec<String>, String> {
    let size = std::fs::metadata(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?
        .len();
    if size > super::yaml::MAX_BYTES as u64 {
        return Err(format!(
            "`{}` is {size} bytes; topics files are limited to {} bytes",
            path.display(),
            super::yaml::MAX_BYTES
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    let is_csv = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let topics: Vec<String> = if is_csv {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let column = reader
            .headers()
            .map_err(|e| format!("`{}` is not valid CSV: {e}", path.display()))?
            .iter()
            .position(|h| h.eq_ignore_ascii_case("topic"))
            .unwrap_or(0);
        let mut out = Vec::new();
        for record in reader.records() {
            let record =
                record.map_err(|e| format!("`{}` is not valid CSV: {e}", path.display()))?;
            if let Some(v) = record.get(column).filter(|v| !v.is_empty()) {
                out.push(v.to_owned());
            }
        }
        out
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(str::to_owned)
            .collect()
    };
    if topics.is_empty() {
        return Err(format!("`{}` has no topics", path.display()));
    }
    Ok(topics)
}
