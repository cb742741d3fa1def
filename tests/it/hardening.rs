//! Signals from outside: children die with the engine, SIGTERM stops a run like Ctrl-C,
//! and nothing half-made is left in the cache.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use tiktok_factory::store::{JobFilter, Status, Store};

use crate::support::{Factory, write};

/// One job whose render takes a few seconds.
fn recipe(dir: &Path) {
    write(
        dir,
        "slow.yaml",
        "version: 1\nname: slow\nvoices:\n  a: { provider: espeak, voice: en-us, rate: 200 }\n\
         templates:\n  t:\n    script: { provider: offline, seconds: 20 }\n    footage: { provider: generated, clips: 2 }\n\
         \x20   title: \"{{ topic }}\"\n\
         batch:\n  template: t\n  matrix: { topic: [Glaciers], voice: [a] }\n",
    );
}

fn start(dir: &Path) -> Child {
    Factory::new()
        .args(["run", "slow.yaml"])
        .current_dir(dir)
        .env("CI", "1")
        .command()
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Reads the run's progress until its render starts.
fn wait_for_render(child: &mut Child) -> std::thread::JoinHandle<()> {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut told = false;
        for line in std::io::BufReader::new(stderr).lines() {
            let line = line.unwrap_or_default();
            if !told && line.contains("render: running") {
                tx.send(()).unwrap();
                told = true;
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the render started");
    reader
}

/// Processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ppid …`; comm may hold spaces, so read after the last `)`.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s[s.rfind(')').map_or(0, |i| i + 1)..]
            .trim_start()
            .starts_with('Z')
    })
}

fn leftovers(cache: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(stages) = std::fs::read_dir(cache) {
        for stage in stages.flatten() {
            if let Ok(entries) = std::fs::read_dir(stage.path()) {
                for e in entries.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if name.starts_with(".tmp-") {
                        found.push(name);
                    }
                }
            }
        }
    }
    found
}

/// The ffmpeg rendering for the run, once it has one.
fn renderer_of(pid: u32) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kids = children(pid);
        if !kids.is_empty() || Instant::now() > deadline {
            return kids;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn orphaned_ffmpeg_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let mut child = start(dir.path());
    let reader = wait_for_render(&mut child);
    let kids = renderer_of(child.id());
    assert!(!kids.is_empty(), "the render runs in a child process");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let survivors: Vec<u32> = kids.into_iter().filter(|p| alive(*p)).collect();
    assert!(
        survivors.is_empty(),
        "children outlived the engine: {survivors:?}"
    );

    let cache = dir.path().join(".factory/cache");
    assert!(
        !leftovers(&cache).is_empty(),
        "the kill left its work folder"
    );
    let rerun = Factory::new()
        .args(["run", "slow.yaml"])
        .current_dir(dir.path())
        .env("CI", "1")
        .run();
    assert_eq!(rerun.code, 0, "{rerun:?}");
    assert_eq!(leftovers(&cache), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_is_not_handled() {
    let dir = tempfile::tempdir().unwrap();
    recipe(dir.path());
    let mut child = start(dir.path());
    let reader = wait_for_render(&mut child);
    let kids = renderer_of(child.id());
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: sends a signal to the child this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "an interrupted run exits 1, not 143"
    );
    assert!(
        stdout.contains("1 interrupted"),
        "the summary is printed: {stdout}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(kids.iter().all(|p| !alive(*p)), "the render was stopped");
    assert_eq!(
        leftovers(&dir.path().join(".factory/cache")),
        Vec::<String>::new()
    );
    let store = Store::open_read_only(&dir.path().join(".factory"))
        .await
        .unwrap()
        .unwrap();
    let jobs = store.list_jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(jobs[0].status, Status::Interrupted);
    assert_eq!(jobs[0].stage.as_deref(), Some("render"));
}
