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

/// [`recipe`] with its topics in a file.
fn recipe_with_topics_file(name: &str, file: &str) -> String {
    recipe(name, "x").replace("    topic: [x]\n", &format!("    topics_file: {file}\n"))
}

#[test]
fn editing_the_topics_file_plans_and_runs_the_new_job() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(
        tmp.path(),
        "recipes/tiny.yaml",
        &recipe_with_topics_file("tiny", "topics.csv"),
    );
    write(tmp.path(), "recipes/topics.csv", "topic\nComets\n");
    let mut w = Watch::start(tmp.path(), &[]);
    let first = w.wait_for(|l| l.starts_with("run: "), Duration::from_secs(240));
    assert!(
        first.starts_with("run: 1 done"),
        "{first}\n{}",
        w.seen.join("\n")
    );

    write(tmp.path(), "recipes/topics.csv", "topic\nComets\nMeteors\n");
    w.wait_for(
        |l| l.starts_with("== plan tiny: 1 added, 0 gone"),
        Duration::from_secs(20),
    );
    w.wait_for(
        |l| l.trim_start().starts_with("+ new ") && l.contains("Meteors"),
        Duration::from_secs(5),
    );
    let second = w.wait_for(|l| l.starts_with("run: "), Duration::from_secs(240));
    assert!(
        second.starts_with("run: 1 done") && second.contains("1 already done"),
        "{second}\n{}",
        w.seen.join("\n")
    );
}

#[test]
fn music_footage_and_project_files_are_inputs_of_the_recipes_that_use_them() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let uses = recipe("uses", "Comets").replace(
        "footage: { provider: generated, clips: 1 }",
        "footage: { provider: local, dir: clips, clips: 1 }\n    video: { music: music.mp3 }",
    );
    write(tmp.path(), "recipes/uses.yaml", &uses);
    write(
        tmp.path(),
        "recipes/other/plain.yaml",
        &recipe("plain", "Owls"),
    );
    write(tmp.path(), "recipes/music.mp3", "not really music");
    write(tmp.path(), "recipes/clips/one.mp4", "not really a clip");
    let mut w = Watch::start(tmp.path(), &["--plan-only"]);
    w.drain(Duration::from_secs(1));

    // A replaced music file and a new clip plan the recipe that reads them, and only it.
    for (file, text) in [
        ("recipes/music.mp3", "other music, longer than before"),
        ("recipes/clips/two.mp4", "another clip"),
    ] {
        write(tmp.path(), file, text);
        let got = w.drain(Duration::from_secs(3));
        assert_eq!(plan_headers(&got, "uses"), 1, "{file}: {got:?}");
        assert_eq!(plan_headers(&got, "plain"), 0, "{file}: {got:?}");
    }
    // A file nobody reads plans nothing.
    write(tmp.path(), "recipes/notes.md", "ideas");
    let got = w.drain(Duration::from_secs(3));
    assert_eq!(
        plan_headers(&got, "uses") + plan_headers(&got, "plain"),
        0,
        "{got:?}"
    );
    // A project file created beside a recipe is its input.
    write(
        tmp.path(),
        "recipes/other/factory.yaml",
        "version: 1\nvars: { cta: Hello. }\n",
    );
    let got = w.drain(Duration::from_secs(3));
    assert_eq!(plan_headers(&got, "plain"), 1, "{got:?}");
    assert_eq!(plan_headers(&got, "uses"), 0, "{got:?}");
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(["-c", "commit.gpgsign=false"])
        .args(args)
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// The recipe names `validate --changed-since HEAD` keeps, for the recipe given by file.
fn changed_since(dir: &Path, path: &str) -> Vec<String> {
    let out = crate::support::Factory::new()
        .current_dir(dir)
        .args(["--json", "validate", "--changed-since", "HEAD", path])
        .run();
    if out.stdout.starts_with("no recipe changed") {
        return Vec::new();
    }
    let mut names: Vec<String> = out.json()["recipes"]
        .as_array()
        .unwrap_or_else(|| panic!("{out:?}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn changed_since_keeps_a_recipe_whose_topics_file_or_footage_changed() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    write(
        dir,
        "recipes/tiny.yaml",
        &recipe_with_topics_file("tiny", "topics.csv"),
    );
    write(dir, "recipes/topics.csv", "topic\nComets\n");
    write(
        dir,
        "recipes/clipped.yaml",
        &recipe("clipped", "Owls").replace(
            "provider: generated, clips: 1",
            "provider: local, dir: clips, clips: 1",
        ),
    );
    write(dir, "recipes/clips/one.mp4", "a clip");
    git(dir, &["init", "-q"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "recipes"]);
    assert_eq!(changed_since(dir, "recipes"), Vec::<String>::new());

    write(dir, "recipes/topics.csv", "topic\nComets\nMeteors\n");
    assert_eq!(changed_since(dir, "recipes"), ["tiny"]);
    // Named by its file, the recipe still sees its topics file.
    assert_eq!(changed_since(dir, "recipes/tiny.yaml"), ["tiny"]);
    git(dir, &["commit", "-qam", "topics"]);

    // A clip added to a local footage folder, and one deleted from it.
    write(dir, "recipes/clips/two.mp4", "another clip");
    assert_eq!(changed_since(dir, "recipes"), ["clipped"]);
    git(dir, &["add", "."]);
    git(dir, &["commit", "-qm", "clip"]);
    std::fs::remove_file(dir.join("recipes/clips/one.mp4")).expect("delete");
    assert_eq!(changed_since(dir, "recipes"), ["clipped"]);
}
