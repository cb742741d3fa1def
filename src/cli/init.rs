//! `factory init [DIR]`: a project a new user can run at once — a recipes folder with a
//! project file, one sample recipe and its topics, the schemas the editor modelines name,
//! a `.gitignore` that keeps the state directory out of git, and the CI workflow.
//!
//! Nothing is overwritten: when any of the files exists, none is written.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{CmdResult, Failure, Outcome, out};
use crate::recipe::schema;

/// The files `init` writes, relative to the project folder, with their text.
fn files() -> Vec<(&'static str, String)> {
    vec![
        (
            "recipes/factory.yaml",
            include_str!("../../examples/init/recipes/factory.yaml").to_owned(),
        ),
        (
            "recipes/quick-tips.yaml",
            include_str!("../../examples/init/recipes/quick-tips.yaml").to_owned(),
        ),
        (
            "recipes/topics.csv",
            include_str!("../../examples/init/recipes/topics.csv").to_owned(),
        ),
        // Generated here, so they always match the binary that reads the recipes.
        (
            "schemas/recipe.schema.json",
            schema::to_pretty(&schema::recipe_schema()),
        ),
        (
            "schemas/project.schema.json",
            schema::to_pretty(&schema::project_schema()),
        ),
        (
            ".gitignore",
            include_str!("../../examples/init/gitignore").to_owned(),
        ),
        (
            ".github/workflows/factory.yml",
            include_str!("../../examples/github-actions.yml").to_owned(),
        ),
    ]
}

pub fn run(dir: &Path) -> CmdResult {
    let files = files();
    let here = dir == Path::new(".");
    // Paths as the user would type them from where they are.
    let shown = |rel: &str| {
        if here {
            PathBuf::from(rel)
        } else {
            dir.join(rel)
        }
    };
    let existing: Vec<PathBuf> = files
        .iter()
        .filter(|(rel, _)| dir.join(rel).symlink_metadata().is_ok())
        .map(|(rel, _)| shown(rel))
        .collect();
    if !existing.is_empty() {
        let list = existing
            .iter()
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Failure::invalid(format!(
            "{list} already exist{}; nothing was written",
            if existing.len() == 1 { "s" } else { "" }
        ))
        .with_hint("run `factory init` in an empty folder, or move those files away first"));
    }
    let mut written = Vec::new();
    for (rel, text) in &files {
        let path = dir.join(rel);
        if let Err(e) = write_new(&path, text) {
            // Leave the folder as it was: what this run wrote goes again.
            for p in &written {
                let _ = std::fs::remove_file(p);
            }
            return Err(Failure::environment(format!(
                "cannot write `{}`: {e}",
                path.display()
            )));
        }
        written.push(path);
    }
    let mut text = String::new();
    for (rel, _) in &files {
        text.push_str(&format!("created {}\n", shown(rel).display()));
    }
    let cd = if here {
        String::new()
    } else {
        format!("cd {} && ", dir.display())
    };
    text.push_str(&format!(
        "next: {cd}factory validate && factory run\n\
         the videos land in `.factory/drafts/quick-tips/`; add topics to `recipes/topics.csv`\n"
    ));
    out(&text);
    Ok(Outcome::Ok)
}

/// Creates `path` (and its folders) with `text`; an existing file is an error, never
/// replaced, even one that appeared since the check.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
