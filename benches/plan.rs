//! validate + expand + plan of a recipe that expands to 10,000 jobs, against a store that
//! already holds them all (so plan has real rows to diff). Prints wall time and peak
//! memory of the measured part, which runs in a child process so setup does not count.
//!
//! `cargo bench --bench plan`

// A benchmark reports its measurements on the terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use tiktok_factory::store::{NewJob, Status, Store};
use tiktok_factory::{expand, plan, recipe};

const TOPICS: usize = 100;
const VOICES: usize = 10;
const TEMPLATES: usize = 10;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(Path::new(&args[i + 1]));
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let recipe_path = dir.path().join("big.yaml");
    std::fs::write(&recipe_path, big_recipe()).expect("write recipe");
    let state = dir.path().join(".factory");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let r = recipe::load(&recipe_path).expect("valid");
        let jobs = expand::expand(&r).expect("expands");
        let store = Store::open(&state).await.expect("store");
        let mut tx = store.pool().begin().await.expect("tx");
        for job in &jobs {
            let spec = serde_json::to_string(&job.spec).expect("spec");
            sqlx::query("INSERT INTO jobs (id, recipe, cell, spec, topic, voice, status, attempts, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'done', 1, 0, 0)")
                .bind(job.id.to_string()).bind("big").bind(&job.cell).bind(spec)
                .bind(&job.spec.topic).bind(&job.spec.voice_name)
                .execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
        // One job through the public API too, so the bench notices if it breaks.
        let job = &jobs[0];
        let spec = serde_json::to_string(&job.spec).expect("spec");
        store
            .upsert_job(&NewJob { id: &job.id.to_string(), recipe: "big", recipe_path: "big.yaml", cell: &job.cell, spec: &spec, topic: &job.spec.topic, voice: &job.spec.voice_name, status: Status::Done })
            .await
            .expect("upsert");
        store.close().await;
    });
    let exe = std::env::current_exe().expect("exe");
    let out = Command::new(exe)
        .arg("--child")
        .arg(dir.path())
        .output()
        .expect("child");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}

fn child(dir: &Path) {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (jobs, counts) = runtime.block_on(async {
        let r = recipe::load(&dir.join("big.yaml")).expect("valid");
        let jobs = expand::expand(&r).expect("expands");
        let store = Store::open_read_only(&dir.join(".factory"))
            .await
            .expect("store")
            .expect("exists");
        let stored = store.jobs_of_recipe(&r.name).await.expect("rows");
        let p = plan::plan(&r.name, "big.yaml", &jobs, &stored);
        (jobs.len(), p.counts)
    });
    let took = started.elapsed();
    let peak_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0);
    let mut line = String::new();
    let _ = write!(
        line,
        "plan bench: {jobs} jobs ({} done) validated + expanded + planned in {:.3} s, peak memory {:.1} MiB (targets: < 0.5 s, < 200 MiB)",
        counts.done,
        took.as_secs_f64(),
        peak_kib as f64 / 1024.0
    );
    println!("{line}");
}

fn big_recipe() -> String {
    let mut s = String::from("version: 1\nname: big\nvoices:\n");
    for v in 0..VOICES {
        let _ = writeln!(
            s,
            "  v{v}: {{ provider: espeak, voice: en-us, rate: {} }}",
            120 + v
        );
    }
    s.push_str("templates:\n");
    for t in 0..TEMPLATES {
        let _ = writeln!(
            s,
            "  t{t}:\n    script: {{ provider: offline, seconds: 30 }}\n    title: \"{{{{ topic }}}} #{t}\"\n    caption: \"All about {{{{ topic | lower }}}} in {{{{ seconds }}}} seconds\"\n    hashtags: [\"{{{{ topic | replace(' ', '') }}}}\", facts]"
        );
    }
    s.push_str("batch:\n  matrix:\n    topic:\n");
    for i in 0..TOPICS {
        let _ = writeln!(s, "      - Topic number {i}");
    }
    s.push_str("    voice: [");
    s.push_str(
        &(0..VOICES)
            .map(|v| format!("v{v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str("]\n    template: [");
    s.push_str(
        &(0..TEMPLATES)
            .map(|t| format!("t{t}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push_str("]\n");
    s
}
