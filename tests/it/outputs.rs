//! What a user reads: the human and `--json` output of `run`, `jobs`, `gc`, `export`,
//! `purge` and `auth tiktok status`, and the `--help` of every command, snapshotted.

use std::path::Path;

use clap::CommandFactory;
use tiktok_factory::cli::Cli;
use tiktok_factory::privacy::accounts::SealedAccounts;
use tiktok_factory::privacy::crypto::Key;
use tiktok_factory::providers::tiktok::{Account, AccountStore};
use tiktok_factory::secret::Secret;
use tiktok_factory::store::Store;

use crate::support::{Factory, Output, tmp_filters, write};

/// The clock every command here reads, so dates and expiries are the same on every run.
const T0: i64 = 1_800_000_000;
const DAY: i64 = 86_400;

/// One offline job, a few seconds to render.
fn recipe(dir: &Path) {
    write(
        dir,
        "tiny.yaml",
        "version: 1\nname: tiny\nvoices:\n  a: { provider: espeak, voice: en-us, rate: 260 }\n\
         templates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: generated, clips: 1 }\n\
         \x20   captions: { style: none }\n    title: \"{{ topic }}\"\n\
         batch:\n  template: t\n  matrix: { topic: [Owls], voice: [a] }\n",
    );
}

fn factory(dir: &Path, now: i64, args: &[&str]) -> Output {
    Factory::new()
        .args(["--state-dir", "state"])
        .args(args)
        .current_dir(dir)
        .env("FACTORY_NOW", now.to_string())
        .run()
}

/// Both streams and the exit code, as one text to snapshot.
fn shown(out: &Output) -> String {
    format!(
        "exit: {}\n--- stdout\n{}--- stderr\n{}",
        out.code, out.stdout, out.stderr
    )
}

/// [`tmp_filters`] plus the durations, sizes and digests that differ from run to run.
fn filters(dir: &Path) -> insta::Settings {
    let mut settings = tmp_filters(dir);
    // "in 4.2s", "took 850ms", "(3.1 s)": wall-clock times.
    settings.add_filter(r"\b\d+(\.\d+)? ?(ms|s|min)\b", "[TIME]");
    settings.add_filter(r#""(wall_seconds|\w+_ms)": ?[0-9.e-]+"#, r#""$1": [TIME]"#);
    // Rendered files differ by encoder build: their sizes and digests are not pinned here.
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[SHA256]");
    // Durations and word timings measured from the narration depend on the espeak-ng build.
    settings.add_filter(r#"": -?\d+\.\d+"#, r#"": [FLOAT]"#);
    // Stage keys hold the versions of ffmpeg, espeak-ng and the caption font.
    settings.add_filter(r"\b[0-9a-f]{32}\b", "[KEY]");
    settings.add_filter(r#""bytes": ?\d+"#, r#""bytes": [BYTES]"#);
    settings.add_filter(r"\b\d+(\.\d+)? ?(B|KB|KiB|MB|MiB)\b", "[SIZE]");
    settings.add_filter(r"pid \d+", "pid [PID]");
    // The offline notifier names a notice by a digest of its text, which holds temp paths.
    settings.add_filter(r"log:[0-9a-f]{16}", "log:[DIGEST]");
    settings
}

#[test]
fn outputs_of_one_job_from_run_to_purge() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe(d);
    let settings = filters(d);
    let _bound = settings.bind_to_scope();

    let run = factory(d, T0, &["run", "tiny.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    insta::assert_snapshot!("run", shown(&run));
    let again = factory(d, T0, &["--json", "run", "tiny.yaml"]);
    assert_eq!(again.code, 0, "{again:?}");
    insta::assert_snapshot!("run_json_all_cached", shown(&again));

    let list = factory(d, T0, &["jobs", "list"]);
    insta::assert_snapshot!("jobs_list_human", shown(&list));
    insta::assert_snapshot!(
        "jobs_list_json",
        shown(&factory(d, T0, &["--json", "jobs", "list"]))
    );
    let id = factory(d, T0, &["--json", "jobs", "list"]).json()["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    insta::assert_snapshot!(
        "jobs_show_human",
        shown(&factory(d, T0, &["jobs", "show", &id]))
    );
    insta::assert_snapshot!(
        "jobs_show_json",
        shown(&factory(d, T0, &["--json", "jobs", "show", &id]))
    );

    // Nothing is due on the day of the run; after the default 14 days the video is.
    insta::assert_snapshot!(
        "gc_nothing_due",
        shown(&factory(d, T0, &["gc", "--dry-run"]))
    );
    let later = T0 + 15 * DAY;
    insta::assert_snapshot!(
        "gc_dry_run_human",
        shown(&factory(d, later, &["gc", "--dry-run"]))
    );
    insta::assert_snapshot!(
        "gc_dry_run_json",
        shown(&factory(d, later, &["--json", "gc", "--dry-run"]))
    );
    let gc = factory(d, later, &["--json", "gc"]);
    assert_eq!(gc.code, 0, "{gc:?}");
    insta::assert_snapshot!("gc_json", shown(&gc));
    insta::assert_snapshot!("gc_again_human", shown(&factory(d, later, &["gc"])));

    insta::assert_snapshot!("export", shown(&factory(d, later, &["export"])));
    let to_file = factory(d, later, &["export", "--out", "export.json"]);
    assert_eq!(to_file.code, 0, "{to_file:?}");
    insta::assert_snapshot!("export_to_a_file", shown(&to_file));

    insta::assert_snapshot!(
        "purge_unknown_job",
        shown(&factory(d, later, &["purge", "--job", "ffffffff", "--yes"]))
    );
    insta::assert_snapshot!(
        "purge_human",
        shown(&factory(d, later, &["purge", "--all", "--yes"]))
    );
    insta::assert_snapshot!(
        "purge_json_of_an_empty_store",
        shown(&factory(d, later, &["--json", "purge", "--all", "--yes"]))
    );
}

#[test]
fn outputs_without_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let settings = filters(d);
    let _bound = settings.bind_to_scope();
    insta::assert_snapshot!("no_store_gc", shown(&factory(d, T0, &["gc"])));
    insta::assert_snapshot!("no_store_export", shown(&factory(d, T0, &["export"])));
    insta::assert_snapshot!(
        "no_store_purge",
        shown(&factory(d, T0, &["purge", "--all", "--yes"]))
    );
    insta::assert_snapshot!(
        "no_store_jobs_list",
        shown(&factory(d, T0, &["jobs", "list"]))
    );
    insta::assert_snapshot!(
        "no_store_auth_status",
        shown(&factory(d, T0, &["auth", "tiktok", "status"]))
    );
    insta::assert_snapshot!(
        "no_store_auth_status_json",
        shown(&factory(d, T0, &["--json", "auth", "tiktok", "status"]))
    );
}

#[tokio::test]
async fn auth_tiktok_status_of_connected_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = Store::open(&d.join("state")).await.unwrap();
    let key = Key::load_or_create(&d.join("key")).unwrap();
    let accounts = SealedAccounts::new(store.clone(), key);
    let account = |open_id: &str, access: i64, refresh: i64| Account {
        open_id: open_id.to_owned(),
        access_token: Secret::new("act.never-shown"),
        refresh_token: Secret::new("rft.never-shown"),
        scopes: vec!["user.info.basic".to_owned(), "video.upload".to_owned()],
        access_expires_at: access,
        refresh_expires_at: refresh,
    };
    accounts
        .save(
            "main",
            &account("open-main", T0 + 5 * 3_600, T0 + 300 * DAY),
        )
        .await
        .unwrap();
    accounts
        .save("old", &account("open-old", T0 - DAY, T0 - 1))
        .await
        .unwrap();
    store.close().await;

    let mut settings = filters(d);
    // The rows were written here, by the real clock; only the binary runs at `T0`.
    settings.add_filter(r#""(created_at|updated_at)": \d+"#, r#""$1": [NOW]"#);
    let _bound = settings.bind_to_scope();
    let human = factory(d, T0, &["auth", "tiktok", "status"]);
    let json = factory(d, T0, &["--json", "auth", "tiktok", "status"]);
    for out in [&human, &json] {
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            !out.stdout.contains("never-shown"),
            "a token was printed: {out:?}"
        );
    }
    insta::assert_snapshot!("auth_status_human", shown(&human));
    insta::assert_snapshot!("auth_status_json", shown(&json));
}

/// Every command and subcommand, found in the clap tree so a new one cannot be missed.
fn command_paths(cmd: &clap::Command, prefix: &[String], out: &mut Vec<Vec<String>>) {
    for sub in cmd.get_subcommands() {
        let mut path = prefix.to_vec();
        path.push(sub.get_name().to_owned());
        out.push(path.clone());
        command_paths(sub, &path, out);
    }
}

#[test]
fn help_of_every_command() {
    let mut paths = vec![Vec::new()];
    command_paths(&Cli::command(), &[], &mut paths);
    assert!(paths.len() > 20, "{paths:?}");
    let mut text = String::new();
    for path in &paths {
        let out = Factory::new().args(path).arg("--help").run();
        assert_eq!(out.code, 0, "factory {path:?} --help: {out:?}");
        assert!(out.stderr.is_empty(), "{out:?}");
        let words: Vec<&str> = std::iter::once("factory")
            .chain(path.iter().map(String::as_str))
            .chain(["--help"])
            .collect();
        text.push_str(&format!("===== {}\n", words.join(" ")));
        text.push_str(&out.stdout);
    }
    insta::assert_snapshot!("help", text);
}

/// The `.mp4` files in a drafts folder.
fn videos(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .map(|r| r.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    found.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|e| e == "mp4"));
    found.sort();
    found
}

#[test]
fn a_draft_has_a_readable_name_one_copy_on_disk_and_goes_when_its_replacement_is_delivered() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    recipe(d);
    let run = factory(d, T0, &["run", "tiny.yaml"]);
    assert_eq!(run.code, 0, "{run:?}");
    let drafts = d.join("state/drafts/tiny");
    let first = videos(&drafts);
    assert_eq!(first.len(), 1, "{first:?}");
    let name = first[0].file_name().unwrap().to_str().unwrap().to_owned();
    let id = factory(d, T0, &["--json", "jobs", "list"]).json()["jobs"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(name, format!("owls-a-{}.mp4", &id[..8]));
    assert!(first[0].with_extension("json").is_file());

    // The render, its hosted copy and the draft are one file on disk.
    let hosted: Vec<_> = walk(&d.join("state/hosted"));
    assert_eq!(hosted.len(), 1, "{hosted:?}");
    let draft_meta = std::fs::metadata(&first[0]).unwrap();
    assert_eq!(
        std::fs::metadata(&hosted[0]).unwrap().ino(),
        draft_meta.ino()
    );
    assert_eq!(draft_meta.nlink(), 3, "render, hosted copy and draft");

    // The notice says when the files go: 14 days after the run.
    let notices = std::fs::read_to_string(d.join("state/notices.log")).unwrap();
    assert!(
        notices.contains("deleted on 2027-01-29 08:00 UTC"),
        "{notices}"
    );

    // `jobs show` says where the video went; `jobs retry` of a done job does nothing.
    let show = factory(d, T0, &["jobs", "show", &id]);
    assert!(
        show.stdout.contains(&format!(
            "  draft    {}",
            first[0].canonicalize().unwrap().display()
        )),
        "{show:?}"
    );
    assert!(show.stdout.contains("  hosted   file://"), "{show:?}");
    let retry = factory(d, T0, &["jobs", "retry", &id[..6]]);
    assert_eq!(retry.code, 0, "{retry:?}");
    assert_eq!(
        retry.stdout,
        format!("job {id} is done; nothing to retry (finished 2027-01-15 08:00 UTC)\n")
    );

    // A new title is a new version of the job: its draft replaces the old one.
    let text = std::fs::read_to_string(d.join("tiny.yaml")).unwrap();
    std::fs::write(
        d.join("tiny.yaml"),
        text.replace("title: \"{{ topic }}\"", "title: \"{{ topic }} at night\""),
    )
    .unwrap();
    let second = factory(d, T0 + 60, &["run", "tiny.yaml"]);
    assert_eq!(second.code, 0, "{second:?}");
    let now = videos(&drafts);
    assert_eq!(now.len(), 1, "{now:?}\n{second:?}");
    assert_ne!(now, first);
    assert!(!first[0].with_extension("json").exists());
    assert!(
        second
            .stderr
            .contains("removed 1 draft of older versions of 1 job: a newer version was delivered"),
        "{second:?}"
    );

    // A superseded draft left over (from before this rule) goes with `gc --superseded`.
    std::fs::copy(&now[0], &first[0]).unwrap();
    std::fs::copy(
        now[0].with_extension("json"),
        first[0].with_extension("json"),
    )
    .unwrap();
    let settings = filters(d);
    let _bound = settings.bind_to_scope();
    insta::assert_snapshot!(
        "gc_superseded_dry_run",
        shown(&factory(d, T0 + 120, &["gc", "--superseded", "--dry-run"]))
    );
    assert!(first[0].exists());
    insta::assert_snapshot!(
        "gc_superseded",
        shown(&factory(d, T0 + 120, &["gc", "--superseded"]))
    );
    assert!(!first[0].exists() && !first[0].with_extension("json").exists());
    assert_eq!(videos(&drafts), now);
    insta::assert_snapshot!(
        "jobs_list_two_versions",
        shown(&factory(d, T0 + 120, &["jobs", "list"]))
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found
}
