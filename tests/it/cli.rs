//! The binary as a user runs it.

use std::process::Command;

fn factory(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_factory"))
        .args(args)
        .current_dir(dir)
        .env_remove("FACTORY_STATE_DIR")
        .env_remove("CI")
        .output()
        .expect("factory runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sample_recipes_validate_and_nothing_is_written() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().join("state");
    let (code, out, err) = factory(
        &[
            "--state-dir",
            state_dir.to_str().unwrap(),
            "validate",
            "recipes",
            // Not `examples`: its GitHub Actions workflow is YAML but no recipe.
            "examples/cooking-channel",
            "examples/showcase",
        ],
        root,
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("ok: 6 recipes"), "{out}");
    assert!(
        !state_dir.exists(),
        "validate must not create the state directory"
    );
}

#[test]
fn every_mistake_is_reported_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "version: 1\nname: bad\nvoices:\n  warm: { provider: espeak }\ntemplates:\n  t:\n    script: { provider: offline, colour: red }\n    title: \"{{ topik }}\"\nbatch:\n  template: t\n  matrix:\n    topic: [A]\n    voice: [warm2]\n",
    )
    .unwrap();
    let (code, _, err) = factory(&["validate", "bad.yaml"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("bad.yaml:7:34: unknown key `colour`"), "{err}");
    assert!(
        err.contains("bad.yaml:8:16: template variable `topik` is not defined"),
        "{err}"
    );
    assert!(
        err.contains("bad.yaml:13:13: voice `warm2` is not defined"),
        "{err}"
    );
    assert!(err.contains("did you mean `warm`?"), "{err}");
}

#[test]
fn retention_beyond_the_policy_needs_an_explicit_opt_in() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = |publish: &str| {
        format!(
            "version: 1\nname: keep\nvoices:\n  a: {{ provider: espeak }}\ntemplates:\n  t:\n    script: {{ provider: offline }}\n    title: x\nbatch:\n  template: t\n  matrix: {{ topic: [A], voice: [a] }}\npublish: {publish}\n"
        )
    };
    std::fs::write(
        dir.path().join("keep.yaml"),
        recipe("{ retention_days: 30 }"),
    )
    .unwrap();
    let (code, _, err) = factory(&["validate", "keep.yaml"], dir.path());
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("keep.yaml:12:") && err.contains("between 1 and 14"),
        "{err}"
    );
    assert!(err.contains("allow_longer_retention"), "{err}");

    std::fs::write(
        dir.path().join("keep.yaml"),
        recipe("{ retention_days: 30, allow_longer_retention: true }"),
    )
    .unwrap();
    let (code, _, err) = factory(&["validate", "keep.yaml"], dir.path());
    assert_eq!(code, 0, "{err}");
}
