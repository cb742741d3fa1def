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
