//! Workers on the shared queue against the engine alone: throughput in videos per hour
//! with 1, 2 and 4 `factory worker` processes, and with the same jobs run one after
//! another by a plain `factory run`; and the queue's coordination per job (claim, lease,
//! fenced writes, hand-over) in milliseconds and as a share of the job's render.
//!
//! Each configuration starts from an empty artifact store and database, so every render
//! really runs. `BENCH_JOBS` (default 4) jobs of `BENCH_SECONDS` (default 20) seconds.
//! Run with `cargo bench --bench workers`.

#![allow(clippy::print_stdout)]

#[allow(dead_code)]
#[path = "../tests/it/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_factory"))
}

fn recipe(dir: &Path, jobs: usize, seconds: usize) {
    let topics: Vec<String> = (1..=jobs).map(|i| format!("Bench {i:02}")).collect();
    std::fs::write(
        dir.join("bench.yaml"),
        format!(
            "version: 1\nname: bench\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 165 }}\n\
             templates:\n  t:\n    script: {{ provider: offline, seconds: {seconds} }}\n    footage: {{ provider: generated, clips: 3 }}\n\
             \x20   title: \"{{{{ topic }}}}\"\n\
             batch:\n  template: t\n  matrix: {{ topic: [{}], voice: [a] }}\n",
            topics.join(", ")
        ),
    )
    .expect("write the recipe");
}

fn factory(dir: &Path, queue: &str) -> Command {
    let mut c = Command::new(binary());
    c.args(["--state-dir", "state", "--cache-dir", "artifacts"])
        .current_dir(dir)
        .env("CI", "1")
        .env("FACTORY_QUEUE", queue)
        .env_remove("FACTORY_NOW");
    c
}

fn done(dir: &Path, queue: &str) -> usize {
    let out = factory(dir, queue)
        .args(["--json", "status"])
        .output()
        .expect("run `factory status`");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    usize::try_from(v["counts"]["done"].as_u64().unwrap_or(0)).unwrap_or(0)
}

/// Render seconds per job, from the store.
fn render_seconds(dir: &Path) -> f64 {
    let db = dir.join("state/factory.db");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .expect("open the store");
        let avg: Option<f64> = sqlx::query_scalar(
            "SELECT AVG(finished_at - started_at) FROM stages WHERE stage = 'render' AND status = 'done'",
        )
        .fetch_one(&pool)
        .await
        .expect("read render times");
        pool.close().await;
        avg.unwrap_or(f64::NAN)
    })
}

/// Milliseconds of queue coordination per job, from the workers' per-phase lines.
fn coordination_ms(dir: &Path, jobs: usize) -> f64 {
    let mut total = 0.0;
    for entry in std::fs::read_dir(dir).expect("bench dir").flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "log") {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                if let Some(rest) = line.split("(queue: ").nth(1)
                    && let Some(ms) = rest.split(" ms").next()
                    && let Ok(ms) = ms.parse::<f64>()
                {
                    total += ms;
                }
            }
        }
    }
    total / jobs as f64
}

struct Measured {
    label: String,
    wall: Duration,
    per_hour: f64,
    render_s: f64,
    coordination_ms: Option<f64>,
}

fn sequential(jobs: usize, seconds: usize) -> Measured {
    let dir = tempfile::tempdir().expect("temp dir");
    recipe(dir.path(), jobs, seconds);
    let started = Instant::now();
    let out = Command::new(binary())
        .args([
            "--state-dir",
            "state",
            "--cache-dir",
            "artifacts",
            "run",
            "bench.yaml",
        ])
        .current_dir(dir.path())
        .env("CI", "1")
        .env_remove("FACTORY_NOW")
        .output()
        .expect("run `factory run`");
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Measured {
        label: "factory run, one job after another".to_owned(),
        wall,
        per_hour: jobs as f64 * 3600.0 / wall.as_secs_f64(),
        render_s: render_seconds(dir.path()),
        coordination_ms: None,
    }
}

fn with_workers(server: &pg::Postgres, workers: usize, jobs: usize, seconds: usize) -> Measured {
    let queue = server.url();
    let dir = tempfile::tempdir().expect("temp dir");
    recipe(dir.path(), jobs, seconds);
    let started = Instant::now();
    let out = factory(dir.path(), &queue)
        .args(["run", "--enqueue", "bench.yaml"])
        .output()
        .expect("run `factory run --enqueue`");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let children: Vec<Child> = (0..workers)
        .map(|i| {
            let log = std::fs::File::create(dir.path().join(format!("w{i}.log"))).expect("log");
            factory(dir.path(), &queue)
                .args(["worker", "--renders", "1", "--network", "4", "--name"])
                .arg(format!("w{i}"))
                .stdout(log.try_clone().expect("log"))
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .expect("start `factory worker`")
        })
        .collect();
    while done(dir.path(), &queue) < jobs {
        std::thread::sleep(Duration::from_millis(250));
    }
    let wall = started.elapsed();
    for mut child in children {
        // SAFETY: the pid of a child this bench started and has not reaped.
        unsafe { libc::kill(i32::try_from(child.id()).unwrap_or(0), libc::SIGTERM) };
        child.wait().ok();
    }
    Measured {
        label: format!("{workers} worker{}", if workers == 1 { "" } else { "s" }),
        wall,
        per_hour: jobs as f64 * 3600.0 / wall.as_secs_f64(),
        render_s: render_seconds(dir.path()),
        coordination_ms: Some(coordination_ms(dir.path(), jobs)),
    }
}

fn main() {
    let jobs = env_usize("BENCH_JOBS", 4);
    let seconds = env_usize("BENCH_SECONDS", 20);
    println!(
        "{jobs} jobs of {seconds}-second videos each, on {} cores",
        num_cores()
    );
    let server = pg::Postgres::start();
    let mut rows = vec![sequential(jobs, seconds)];
    for workers in [1, 2, 4] {
        rows.push(with_workers(&server, workers, jobs, seconds));
    }
    let base = rows[0].per_hour;
    println!(
        "{:<36} {:>8} {:>12} {:>8} {:>10} {:>14} {:>10}",
        "", "wall s", "videos/hour", "vs run", "render s", "queue ms/job", "of render"
    );
    for r in &rows {
        let (ms, share) = match r.coordination_ms {
            Some(ms) => (
                format!("{ms:.1}"),
                format!("{:.3} %", ms / (r.render_s * 1000.0) * 100.0),
            ),
            None => ("-".to_owned(), "-".to_owned()),
        };
        println!(
            "{:<36} {:>8.1} {:>12.1} {:>7.2}x {:>10.1} {:>14} {:>10}",
            r.label,
            r.wall.as_secs_f64(),
            r.per_hour,
            r.per_hour / base,
            r.render_s,
            ms,
            share
        );
    }
}

fn num_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}
