//! Topics from a file inside the recipe directory.

use std::collections::BTreeMap;
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

/// One topic of a topics file, with the values of its row's other columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub topic: String,
    /// Column name → value; empty for a `.txt` file.
    pub vars: BTreeMap<String, String>,
}

/// Reads topics: `.csv` takes the `topic` column (or the first) and keeps every other
/// column as a var of its row; anything else one topic per line with `#` comments and
/// blank lines skipped.
pub fn read(path: &Path) -> Result<Vec<Row>, String> {
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
    let topics: Vec<Row> = if is_csv {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| format!("`{}` is not valid CSV: {e}", path.display()))?
            .iter()
            .map(str::to_owned)
            .collect();
        let column = headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case("topic"))
            .unwrap_or(0);
        for (i, name) in headers.iter().enumerate() {
            if i == column {
                continue;
            }
            if !is_identifier(name) {
                return Err(format!(
                    "`{}`: column `{name}` cannot be a var; name columns with letters, digits and `_`",
                    path.display()
                ));
            }
            if RESERVED.contains(&name.as_str()) {
                return Err(format!(
                    "`{}`: column `{name}` is set by the matrix and cannot be a var",
                    path.display()
                ));
            }
            if headers[..i].contains(name) {
                return Err(format!(
                    "`{}`: column `{name}` appears twice",
                    path.display()
                ));
            }
        }
        let mut out = Vec::new();
        for record in reader.records() {
            let record =
                record.map_err(|e| format!("`{}` is not valid CSV: {e}", path.display()))?;
            if let Some(v) = record.get(column).filter(|v| !v.is_empty()) {
                let vars = headers
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != column)
                    .filter_map(|(i, name)| Some((name.clone(), record.get(i)?.to_owned())))
                    .collect();
                out.push(Row {
                    topic: v.to_owned(),
                    vars,
                });
            }
        }
        out
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|topic| Row {
                topic: topic.to_owned(),
                vars: BTreeMap::new(),
            })
            .collect()
    };
    if topics.is_empty() {
        return Err(format!("`{}` has no topics", path.display()));
    }
    Ok(topics)
}

/// Names the matrix sets for every job; a column cannot be one of them.
const RESERVED: [&str; 4] = ["topic", "voice", "template", "recipe"];

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv(text: &str) -> Result<Vec<Row>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("topics.csv");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn every_other_column_is_a_var_of_its_row() {
        let rows = csv("topic,script,language\nOwls,\"Owls hunt at night. They fly without a sound.\",en\nHiboux,\"Les hiboux chassent la nuit.\",fr\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].topic, "Hiboux");
        assert_eq!(
            rows[0].vars["script"],
            "Owls hunt at night. They fly without a sound."
        );
        assert_eq!(rows[1].vars["language"], "fr");
        assert_eq!(csv("name\nOwls\n").unwrap()[0].vars.len(), 0);
    }

    #[test]
    fn columns_that_cannot_be_vars_are_refused() {
        assert!(
            csv("topic,my script\nOwls,x\n")
                .unwrap_err()
                .contains("column `my script` cannot be a var")
        );
        assert!(
            csv("topic,voice\nOwls,x\n")
                .unwrap_err()
                .contains("set by the matrix")
        );
        assert!(
            csv("topic,a,a\nOwls,x,y\n")
                .unwrap_err()
                .contains("appears twice")
        );
    }
}
