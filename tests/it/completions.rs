//! `factory completions` and `factory man` come from the clap definitions.

use crate::support::Factory;

#[test]
fn completions_name_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Factory::new().args(["completions", shell]).run();
        assert_eq!(out.code, 0, "{out:?}");
        for sub in ["validate", "plan", "run", "watch"] {
            assert!(out.stdout.contains(sub), "{shell} completion lacks `{sub}`");
        }
    }
    let out = Factory::new().args(["completions", "tcsh"]).run();
    assert_eq!(out.code, 2, "{out:?}");
}

#[test]
fn the_man_page_is_roff_with_the_commands() {
    let out = Factory::new().arg("man").run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(".ie") || out.stdout.contains(".TH factory"),
        "{}",
        &out.stdout[..out.stdout.len().min(200)]
    );
    assert!(out.stdout.contains("watch"), "man page lacks `watch`");
}

#[test]
fn completions_offer_the_values_of_enum_flags() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Factory::new().args(["completions", shell]).run();
        assert_eq!(out.code, 0, "{out:?}");
        for status in ["pending", "deferred", "done", "failed", "interrupted"] {
            assert!(
                out.stdout.contains(status),
                "{shell} completion does not offer `--status {status}`"
            );
        }
    }
    let bad = Factory::new()
        .args(["jobs", "list", "--status", "queued"])
        .run();
    assert_eq!(bad.code, 2, "{bad:?}");
    assert!(bad.stderr.contains("possible values"), "{bad:?}");
}

#[test]
fn the_man_page_has_exit_status_environment_examples_and_a_page_per_command() {
    let main = Factory::new().arg("man").run();
    assert_eq!(main.code, 0, "{main:?}");
    for section in [".SH \"EXIT STATUS\"", ".SH ENVIRONMENT", ".SH EXAMPLES"] {
        assert!(main.stdout.contains(section), "no `{section}`");
    }
    for variable in [
        "TIKTOK_CLIENT_KEY",
        "R2_BUCKET",
        "TELEGRAM_BOT_TOKEN",
        "FACTORY_STATE_DIR",
    ] {
        assert!(
            main.stdout.contains(variable),
            "ENVIRONMENT lacks `{variable}`"
        );
    }
    assert!(main.stdout.contains("factory\\-run(1)") || main.stdout.contains("factory-run(1)"));

    let run = Factory::new().args(["man", "run"]).run();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.contains(".TH factory-run 1"),
        "{}",
        &run.stdout[..200.min(run.stdout.len())]
    );
    assert!(
        run.stdout.contains("changed\\-since"),
        "the page has the command's flags"
    );
    let nested = Factory::new().args(["man", "jobs", "list"]).run();
    assert!(
        nested.stdout.contains(".TH factory-jobs-list 1"),
        "{nested:?}"
    );
    let unknown = Factory::new().args(["man", "rnu"]).run();
    assert_eq!(unknown.code, 2, "{unknown:?}");

    // Every page the main page refers to is written.
    let dir = tempfile::tempdir().unwrap();
    let all = Factory::new().args(["man", "--dir"]).arg(dir.path()).run();
    assert_eq!(all.code, 0, "{all:?}");
    let referred: Vec<String> = main
        .stdout
        .replace("\\-", "-")
        .split(|c: char| c.is_whitespace() || c == '\\')
        .filter_map(|w| w.strip_suffix("(1)"))
        .filter(|w| w.starts_with("factory-"))
        .map(|w| format!("{w}.1"))
        .collect();
    assert!(referred.len() > 10, "{referred:?}");
    for page in referred
        .iter()
        .chain(std::iter::once(&"factory.1".to_owned()))
    {
        assert!(dir.path().join(page).is_file(), "`{page}` was not written");
    }
    assert!(dir.path().join("factory-jobs-retry.1").is_file());
}
