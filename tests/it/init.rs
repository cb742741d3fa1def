//! `factory init`: a fresh folder becomes a project that validates and makes videos, and
//! nothing a user already has is overwritten.

use std::path::Path;

use crate::support::{Factory, tmp_filters, write};

fn factory(dir: &Path, args: &[&str]) -> crate::support::Output {
    Factory::new().args(args).current_dir(dir).run()
}

#[test]
fn init_then_validate_then_run_makes_videos_in_a_fresh_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let init = factory(dir, &["init"]);
    assert_eq!(init.code, 0, "{init:?}");
    tmp_filters(dir).bind(|| insta::assert_snapshot!("init", init.stdout));

    let validate = factory(dir, &["validate"]);
    assert_eq!(validate.code, 0, "{validate:?}");
    assert!(validate.stdout.contains("1 recipe, 2 jobs"), "{validate:?}");

    let run = factory(dir, &["run"]);
    assert_eq!(run.code, 0, "{run:?}");
    let drafts = dir.join(".factory/drafts/quick-tips");
    let videos: Vec<_> = std::fs::read_dir(&drafts)
        .unwrap_or_else(|e| panic!("no drafts in `{}`: {e}\n{run:?}", drafts.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "mp4"))
        .collect();
    assert_eq!(videos.len(), 2, "{videos:?}");
    for v in &videos {
        assert!(
            std::fs::metadata(v).unwrap().len() > 10_000,
            "{}",
            v.display()
        );
    }
}

#[test]
fn init_keeps_the_state_directory_out_of_git_and_the_modelines_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("channel");
    let init = factory(tmp.path(), &["init", "channel"]);
    assert_eq!(init.code, 0, "{init:?}");
    assert!(
        init.stdout.contains("cd channel && factory validate"),
        "{init:?}"
    );

    let ignore = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
    assert!(ignore.lines().any(|l| l == ".factory/"), "{ignore}");
    // The workflow is the one the examples document.
    assert_eq!(
        std::fs::read_to_string(dir.join(".github/workflows/factory.yml")).unwrap(),
        std::fs::read_to_string(crate::support::repo().join("examples/github-actions.yml"))
            .unwrap()
    );
    // Every modeline names a schema that is there, and it is the binary's own.
    for recipe in ["recipes/quick-tips.yaml", "recipes/factory.yaml"] {
        let text = std::fs::read_to_string(dir.join(recipe)).unwrap();
        let target = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# yaml-language-server: $schema="))
            .unwrap_or_else(|| panic!("no modeline in {recipe}"));
        let schema = dir.join("recipes").join(target);
        let project = recipe.ends_with("factory.yaml");
        let printed = factory(
            tmp.path(),
            if project {
                &["schema", "--project"]
            } else {
                &["schema"]
            },
        );
        assert_eq!(
            std::fs::read_to_string(&schema)
                .unwrap_or_else(|e| panic!("`{}`: {e}", schema.display())),
            printed.stdout
        );
    }
}

#[test]
fn init_refuses_to_overwrite_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mine = "topic\nMy own topic\n";
    write(dir, "recipes/topics.csv", mine);
    write(dir, ".gitignore", "target/\n");
    let init = factory(dir, &["init"]);
    assert_eq!(init.code, 2, "{init:?}");
    tmp_filters(dir).bind(|| insta::assert_snapshot!("init_refuses", init.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join("recipes/topics.csv")).unwrap(),
        mine
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "target/\n"
    );
    assert!(!dir.join("recipes/quick-tips.yaml").exists());
    assert!(!dir.join("schemas").exists());
}
