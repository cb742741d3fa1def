//! A mutation fuzzer for the recipe front half: load → validate → expand of recipes
//! and their project file (`factory.yaml`), on stable, inside `cargo test`.
//!
//! Seeds are the sample recipes (`recipes/`, `examples/cooking-channel/`), every
//! fixture under `tests/fixtures/`, and the committed corpus in `tests/fixtures/fuzz/`
//! (inputs that broke the front half once, kept as regressions). Each round mutates a
//! seed (bytes, YAML and template tokens, long repeats, splices of two seeds) and
//! checks that
//! - nothing panics, and every diagnostic renders;
//! - no input takes longer than [`SLOW`] (the parser's node budget and the template
//!   fuel bound the work);
//! - every diagnostic has a location inside its file;
//! - validation writes nothing: the folder holds the same files afterwards.
//!
//! `FUZZ_SECONDS` sets the run time (default 5; `scripts/test` runs 45,
//! `scripts/fuzz` ten minutes), `FUZZ_SEED` the random seed (default: the clock, and
//! printed). An input that fails is written to `target/fuzz-failures/` to be added to
//! the corpus.

// The fuzz suite reports its measurements on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tiktok_factory::cli::load_all;
use tiktok_factory::recipe::Diagnostic;

/// The longest one input may take to load, validate and expand.
const SLOW: Duration = Duration::from_secs(5);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Every seed: (text, whether it is a project file).
fn seeds() -> Vec<(Vec<u8>, bool)> {
    let mut files = Vec::new();
    for dir in ["recipes", "examples/cooking-channel", "tests/fixtures"] {
        yaml_files(&repo().join(dir), &mut files);
    }
    assert!(files.len() >= 40, "only {} seeds", files.len());
    files
        .iter()
        .map(|p| {
            let project = p.file_name().is_some_and(|n| n == "factory.yaml");
            (std::fs::read(p).expect("read seed"), project)
        })
        .collect()
}

const TOKENS: &[&str] = &[
    "{{ topic }}",
    "{{",
    "}}",
    "{%",
    "%}",
    "{% if x %}",
    "{% endif %}",
    "{% for x in y %}",
    "{% set a = topic ~ topic %}",
    "| replace('', 'xxxxxxxxxx')",
    "| join(topic)",
    " * 100000000",
    "~",
    "&a ",
    "*a",
    "<<: *a",
    "\n  ",
    "\n- ",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    "\"",
    "\t",
    "\r\n",
    "\r",
    "#",
    "no",
    "yes",
    "n",
    "off",
    "null",
    "~",
    "1e400",
    "-1",
    "0x10",
    "!!binary ",
    "!!str ",
    "? ",
    "|",
    ">",
    "---\n",
    "...\n",
    "\u{1b}[31m",
    "\u{7}",
    "\u{0}",
    "🦉",
    "e\u{301}",
    "黒",
    "\u{202e}",
    "sk-or-v1-0123456789abcdef0123456789abcdef",
    "Bearer ",
    "topics_file: ",
    "../",
    "/etc/passwd",
    "max_jobs: 1000000",
    "seconds: 0",
    "max_seconds: 600",
    "provider: elevenlabs",
    "template: ",
    "voice: ",
    "include:\n  - {topic: a}",
    "exclude:\n  - {}",
];

struct Mutator {
    rng: fastrand::Rng,
}

impl Mutator {
    fn mutate(&mut self, input: &[u8], other: &[u8]) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..self.rng.usize(1..=4) {
            let at = self.rng.usize(0..=out.len());
            match self.rng.u8(0..9) {
                0 if !out.is_empty() => {
                    let i = self.rng.usize(0..out.len());
                    out[i] ^= 1 << self.rng.u8(0..8);
                }
                1 => out.insert(at, self.rng.u8(..)),
                2 if !out.is_empty() => {
                    let end = (at + self.rng.usize(0..64)).min(out.len());
                    out.drain(at.min(end)..end);
                }
                3 | 4 => {
                    let token = TOKENS[self.rng.usize(0..TOKENS.len())];
                    out.splice(at..at, token.bytes());
                }
                5 if !out.is_empty() => {
                    // A long repeat of a slice: long lines, many items.
                    let start = self.rng.usize(0..out.len());
                    let end = (start + self.rng.usize(1..16)).min(out.len());
                    let times = [10, 1_000, 70_000][self.rng.usize(0..3)];
                    let piece = out[start..end].repeat(times);
                    out.splice(end..end, piece);
                }
                6 if !other.is_empty() => {
                    // Splice: the head of this seed, the tail of another.
                    let cut = self.rng.usize(0..other.len());
                    out.truncate(at);
                    out.extend_from_slice(&other[cut..]);
                }
                7 if !out.is_empty() => {
                    // Duplicate a line (duplicate keys, repeated entries).
                    let text = String::from_utf8_lossy(&out).into_owned();
                    let lines: Vec<&str> = text.split_inclusive('\n').collect();
                    let i = self.rng.usize(0..lines.len());
                    let mut next: Vec<&str> = lines.clone();
                    next.insert(i, lines[i]);
                    out = next.concat().into_bytes();
                }
                _ => {
                    let text = String::from_utf8_lossy(&out).into_owned();
                    out = text.replace('\n', "\r\n").into_bytes();
                }
            }
        }
        out.truncate(8 * 1024 * 1024);
        out
    }
}

/// Every file under `dir` with its size: what validation must leave unchanged.
fn listing(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read work dir").flatten() {
            let path = entry.path();
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.insert(path, meta.len());
        }
    }
    out
}

/// Whether every diagnostic points inside its file.
fn located(diags: &[Diagnostic]) -> Result<(), String> {
    for d in diags {
        if d.line == 0 || d.column == 0 {
            return Err(format!("no position: {d:?}"));
        }
        if let Ok(text) = std::fs::read_to_string(&d.path) {
            let lines = text.split('\n').count();
            if d.line as usize > lines {
                return Err(format!(
                    "line {} of a {lines}-line file: {}",
                    d.line,
                    d.render()
                ));
            }
        }
        let shown = d.render();
        if shown.chars().any(|c| c.is_control() && c != '\n') {
            return Err(format!("raw control character in {shown:?}"));
        }
    }
    Ok(())
}

/// One input: load, validate and expand the folder; the properties above.
fn check(dir: &Path, recipe: &Path) -> Result<Duration, String> {
    let before = listing(dir);
    let started = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let (ok, diags) = load_all(&[recipe.to_owned()]);
        let rendered: usize = diags.iter().map(|d| d.render().len()).sum();
        (ok.len(), diags, rendered)
    }));
    let took = started.elapsed();
    let (_, diags, _) = result.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        format!("panic: {msg}")
    })?;
    if took > SLOW {
        return Err(format!("took {took:?}"));
    }
    located(&diags)?;
    if listing(dir) != before {
        return Err("validation changed the folder".to_owned());
    }
    Ok(took)
}

fn save_failure(name: &str, bytes: &[u8], why: &str) -> PathBuf {
    let dir = repo().join("target/fuzz-failures");
    std::fs::create_dir_all(&dir).expect("create failure dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write failure");
    std::fs::write(path.with_extension("why.txt"), why).expect("write reason");
    path
}

#[test]
fn recipe_front_half_survives_mutated_inputs() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_secs())
        });
    eprintln!("fuzz: FUZZ_SEED={seed} FUZZ_SECONDS={seconds}");
    let seeds = seeds();
    let recipes: Vec<&Vec<u8>> = seeds.iter().filter(|s| !s.1).map(|s| &s.0).collect();
    let projects: Vec<&Vec<u8>> = seeds.iter().filter(|s| s.1).map(|s| &s.0).collect();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    // What the seeds point at: a topics file and a clips folder.
    std::fs::create_dir_all(dir.join("topics")).expect("topics dir");
    std::fs::create_dir_all(dir.join("clips")).expect("clips dir");
    std::fs::write(dir.join("topics/ocean.txt"), "Octopus\nSea turtles\n").expect("topics");
    std::fs::write(dir.join("topics.txt"), "Owls\n").expect("topics");
    let recipe = dir.join("fuzz.yaml");
    let project = dir.join("factory.yaml");

    // Every seed as it is, first.
    for (i, s) in recipes.iter().enumerate() {
        std::fs::write(&recipe, s).expect("write recipe");
        let _ = std::fs::remove_file(&project);
        if let Err(why) = check(dir, &recipe) {
            let saved = save_failure(&format!("seed-{i}.yaml"), s, &why);
            panic!("seed {i} fails: {why} (saved as `{}`)", saved.display());
        }
    }

    let mut m = Mutator {
        rng: fastrand::Rng::with_seed(seed),
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut rounds = 0u64;
    let mut slowest = Duration::ZERO;
    while Instant::now() < deadline {
        rounds += 1;
        let base = recipes[m.rng.usize(0..recipes.len())];
        let other = recipes[m.rng.usize(0..recipes.len())];
        let input = m.mutate(base, other);
        std::fs::write(&recipe, &input).expect("write recipe");
        // Now and then a mutated project file beside it.
        let pick = projects[m.rng.usize(0..projects.len())];
        let project_input = match m.rng.u8(0..4) {
            0 => Some(m.mutate(pick, other)),
            1 => Some(pick.clone()),
            _ => None,
        };
        match &project_input {
            Some(p) => std::fs::write(&project, p).expect("write project"),
            None => {
                let _ = std::fs::remove_file(&project);
            }
        }
        let took = check(dir, &recipe);
        if let Ok(took) = took {
            slowest = slowest.max(took);
        }
        if let Err(why) = took {
            let saved = save_failure(&format!("{seed}-{rounds}.yaml"), &input, &why);
            if let Some(p) = project_input {
                save_failure(&format!("{seed}-{rounds}.factory.yaml"), &p, &why);
            }
            panic!(
                "round {rounds} (FUZZ_SEED={seed}) fails: {why}\ninput saved as `{}`",
                saved.display()
            );
        }
    }
    eprintln!("fuzz: {rounds} mutated inputs, no failure; the slowest took {slowest:?}");
    assert!(rounds > 0 || seconds == 0);
}
