//! `factory watch`: real file changes in a temporary folder, seen by the real binary.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use crate::support::write;

/// A tiny recipe: one three-second job with one clip.
fn recipe(name: &str, topic: &str) -> String {
    format!(
        "version: 1\nname: {name}\nvoices:\n  narrator: {{ provider: espeak, voice: en-us }}\n\
         templates:\n  fact:\n    script: {{ provider: offline, seconds: 3 }}\n    \
         footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\n\
         batch:\n  template: fact\n  matrix:\n    topic: [{topic}]\n    voice: [narrator]\n"
    )
}

/// A running `factory watch` whose stdout and stderr lines arrive on one channel.
struct Watch {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Watch {
    fn start(dir: &Path, extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_factory"))
            .current_dir(dir)
            .env_remove("CI")
            .args(["watch", "recipes"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn factory watch");
        let (tx, lines) = channel();
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx2.send(line);
            }
        });
        let mut w = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        w.wait_for(|l| l.starts_with("watching "), Duration::from_secs(30));
        w
    }

    /// Reads lines until one matches; fails the test with everything seen on timeout.
    fn wait_for(&mut self, want: impl Fn(&str) -> bool, limit: Duration) -> String {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(e) => panic!("{e}; output so far:\n{}", self.seen.join("\n")),
            }
        }
    }

    /// Every line printed during `quiet`.
    fn drain(&mut self, quiet: Duration) -> Vec<String> {
        let end = Instant::now() + quiet;
        let mut got = Vec::new();
        while let Ok(line) = self
            .lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            got.push(line);
        }
        got
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn plan_headers(lines: &[String], recipe: &str) -> usize {
    let header = format!("== plan {recipe}:");
    lines.iter().filter(|l| l.starts_with(&header)).count()
}

#[test]
fn saves_are_planned_errors_reported_and_bursts_merged() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(
        tmp.path(),
        "recipes/a.yaml",
        &recipe("alpha", "Black holes"),
    );
    let mut w = Watch::start(tmp.path(), &["--plan-only"]);
    assert_eq!(plan_headers(&w.seen, "alpha"), 1, "{:?}", w.seen);

    // A new recipe is planned with its new job.
    write(tmp.path(), "recipes/b.yaml", &recipe("beta", "Comets"));
    w.wait_for(
        |l| l.starts_with("== plan beta: 1 added"),
        Duration::from_secs(20),
    );
    w.wait_for(
        |l| l.trim_start().starts_with("+ new ") && l.contains("Comets"),
        Duration::from_secs(5),
    );

    // An invalid save prints its errors with line numbers; the watcher keeps going.
    write(
        tmp.path(),
        "recipes/b.yaml",
        &recipe("beta", "Comets").replace("clips: 1", "clips: 0"),
    );
    let error = w.wait_for(|l| l.starts_with("error["), Duration::from_secs(20));
    assert!(error.contains("recipes/b.yaml:8:"), "{error}");
    write(tmp.path(), "recipes/b.yaml", &recipe("beta", "Meteors"));
    w.wait_for(
        |l| l.starts_with("== plan beta: 1 added, 1 gone"),
        Duration::from_secs(20),
    );
    w.drain(Duration::from_secs(1));

    // Twenty saves in a burst are one plan.
    for i in 0..20 {
        write(
            tmp.path(),
            "recipes/a.yaml",
            &recipe("alpha", &format!("Black holes {i}")),
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let burst = w.drain(Duration::from_secs(3));
    assert_eq!(plan_headers(&burst, "alpha"), 1, "{burst:?}");
    assert_eq!(plan_headers(&burst, "beta"), 0, "{burst:?}");
    assert!(
        burst.iter().any(|l| l.contains("Black holes 19")),
        "{burst:?}"
    );

    // An editor's atomic save (write a temporary file, rename it over) is one plan too.
    let temp = write(
        tmp.path(),
        "recipes/.a.yaml.swp",
        &recipe("alpha", "Pulsars"),
    );
    std::fs::rename(&temp, tmp.path().join("recipes/a.yaml")).expect("rename");
    let atomic = w.drain(Duration::from_secs(3));
    assert_eq!(plan_headers(&atomic, "alpha"), 1, "{atomic:?}");

    // A deleted recipe says so and deletes nothing.
    std::fs::remove_file(tmp.path().join("recipes/b.yaml")).expect("delete");
    w.wait_for(
        |l| l.contains("its jobs stay in the store"),
        Duration::from_secs(20),
    );
}

#[test]
fn a_new_job_runs_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(tmp.path().join("recipes")).expect("recipes folder");
    let mut w = Watch::start(tmp.path(), &[]);
    write(
        tmp.path(),
        "recipes/tiny.yaml",
        &recipe("tiny", "Black holes"),
    );
    w.wait_for(
        |l| l.starts_with("== plan tiny: 1 added"),
        Duration::from_secs(20),
    );
    let ran = w.wait_for(|l| l.starts_with("run: "), Duration::from_secs(240));
    assert!(
        ran.starts_with("run: 1 done"),
        "{ran}\n{}",
        w.seen.join("\n")
    );
    let after = w.drain(Duration::from_secs(2));
    assert!(!after.iter().any(|l| l.starts_with("run: ")), "{after:?}");
    let db = tmp.path().join(".factory");
    assert!(db.is_dir(), "the store was written");
}

#[test]
fn recipes_run_again_now_and_then_to_collect_and_send_what_waited() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(tmp.path(), "recipes/tiny.yaml", &recipe("tiny", "Comets"));
    let mut w = Watch::start(tmp.path(), &["--every", "3"]);
    let ran = w.wait_for(|l| l.starts_with("run: "), Duration::from_secs(240));
    assert!(
        ran.starts_with("run: 1 done"),
        "{ran}\n{}",
        w.seen.join("\n")
    );
    // No save in between: the sweep runs the recipe again (gc first), finding it done.
    let swept = w.wait_for(|l| l.starts_with("run: "), Duration::from_secs(60));
    assert!(
        swept.contains("1 already done"),
        "{swept}\n{}",
        w.seen.join("\n")
    );
}
