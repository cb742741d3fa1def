//! Running the real `factory` binary, and the filters that keep its output stable in
//! snapshots.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Variables that would change what the binary does if the caller's shell set them.
const ISOLATED_ENV: [&str; 16] = [
    // CI itself sets `CI`; tests that want CI mode set it themselves.
    "CI",
    "FACTORY_CACHE_DIR",
    "FACTORY_NOW",
    "FACTORY_STATE_DIR",
    "FACTORY_STORE",
    "FACTORY_ARTIFACTS",
    "OPENROUTER_API_KEY",
    "PEXELS_API_KEY",
    "ELEVENLABS_API_KEY",
    "TIKTOK_CLIENT_KEY",
    "TIKTOK_CLIENT_SECRET",
    "TELEGRAM_BOT_TOKEN",
    "R2_ACCOUNT_ID",
    "R2_ACCESS_KEY_ID",
    "R2_SECRET_ACCESS_KEY",
    "R2_BUCKET",
];

/// One run of `factory`, built like a [`Command`].
#[must_use]
pub struct Factory {
    command: Command,
}

/// What a run printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Factory {
    pub fn new() -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_factory"));
        for key in ISOLATED_ENV {
            command.env_remove(key);
        }
        Self { command }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.command.current_dir(dir);
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command.env(key, value);
        self
    }

    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.command.env_remove(key);
        self
    }

    /// The command itself, for a test that starts it and waits later.
    pub fn command(self) -> Command {
        self.command
    }

    pub fn run(mut self) -> Output {
        let out = self
            .command
            .output()
            .unwrap_or_else(|e| panic!("cannot run `factory`: {e}"));
        Output {
            // A signal has no code; -1 fails every exit-code assertion loudly.
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
        }
    }
}

impl Output {
    /// Stdout parsed as JSON; fails the test with both streams when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e})\n--- stdout\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// The crate's root: where `recipes/`, `schemas/` and `tests/fixtures/` live.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Insta settings that print `dir` (as given and canonical) as `[TMP]`.
pub fn tmp_filters(dir: &Path) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    let mut forms = vec![dir.to_path_buf()];
    if let Ok(real) = dir.canonicalize() {
        forms.push(real);
    }
    // Longest first, so a path is never half-replaced by a shorter form of it.
    forms.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    forms.dedup();
    for form in forms {
        settings.add_filter(&escape_regex(&form.display().to_string()), "[TMP]");
    }
    settings
}

fn escape_regex(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Writes `text` to `dir/relative`, creating folders on the way.
/// "N stages executed" from a run's summary line.
pub fn executed(out: &Output) -> usize {
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("executed in"))
        .unwrap_or_else(|| panic!("no summary in {out:?}"));
    let before = line.split(" stage").next().unwrap();
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

pub fn write(dir: &Path, relative: &str, text: &str) -> PathBuf {
    let path = dir.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create fixture folder");
    }
    std::fs::write(&path, text).expect("write fixture");
    path
}

/// Copies the sample recipes (with their project and topics files) into `dir/recipes`.
pub fn copy_samples(dir: &Path) -> PathBuf {
    let to = dir.join("recipes");
    copy_tree(&repo().join("recipes"), &to);
    to
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let path = entry.expect("folder entry").path();
        let target = to.join(path.file_name().expect("entry name"));
        if path.is_dir() {
            copy_tree(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy file");
        }
    }
}
