//! The checks before spending, through the binary: `doctor` shows them, `run` stops on
//! them before any job starts (so before any paid call, render or upload).

use std::path::Path;

use axum::Router;
use axum::http::{Method, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use tiktok_factory::providers::Host;
use tiktok_factory::providers::r2::R2;

use crate::fakes::telegram::{self, FakeTelegram};
use crate::fakes::tiktok::{self, FakeTikTok};
use crate::fakes::{self, Fake, Seen, Shared};
use crate::pipeline_real::{Fakes, REAL_RECIPE, run};
use crate::publish_r2::Moto;
use crate::support::{Factory, copy_samples, tmp_filters, write};

/// Speech requests an ElevenLabs fake has seen.
fn speeches(fake: &Fake<fakes::elevenlabs::Scenario>) -> usize {
    fake.seen()
        .iter()
        .filter(|s| s.path.ends_with("/with-timestamps"))
        .count()
}

/// A loopback address nothing listens on.
fn closed_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A recipe of offline parts that publishes: R2, a TikTok draft for `main`, a notice.
fn publishing_recipe(dir: &Path) {
    write(
        dir,
        "publish.yaml",
        &format!(
            "version: 1\nname: publish\nvoices:\n  a: {{ provider: espeak, voice: en-us, rate: 260 }}\ntemplates:\n  t:\n    script: {{ provider: offline, seconds: 3 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}} facts\"\n    hashtags: [facts]\nbatch:\n  template: t\n  matrix: {{ topic: [Alpha], voice: [a] }}\npublish: {{ host: r2, tiktok: {{ account: main }} }}\nnotify: {{ telegram: {{ chat: \"{}\" }} }}\n",
            telegram::CHAT
        ),
    );
}

fn check<'a>(report: &'a Value, service: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .find(|c| c["service"] == service)
        .unwrap_or_else(|| panic!("no `{service}` row in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_keys_and_quotas_without_spending() {
    let fakes = Fakes::start().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let recipes = copy_samples(tmp.path());
    write(&recipes, "space-facts.yaml", REAL_RECIPE);
    let state = tmp.path().join("state");

    let good = run(fakes.factory(&state, tmp.path()).args(["--json", "doctor"])).await;
    assert_eq!(good.code, 0, "{}\n{}", good.stdout, good.stderr);
    let report = good.json();
    assert_eq!(report["ok"], true);
    for service in ["openrouter", "pexels", "elevenlabs", "tools"] {
        let row = check(&report, service);
        assert_eq!(row["status"], "ok", "{row}");
        if service != "tools" {
            assert_eq!(
                row["needed_by"],
                serde_json::json!(["space-facts"]),
                "{row}"
            );
        }
    }
    assert!(
        check(&report, "elevenlabs")["detail"]
            .as_str()
            .unwrap()
            .contains("88000 of 100000 characters left"),
        "{report}"
    );
    // Only the free endpoints: the key status, the subscription, one search of one result.
    assert_eq!(fakes.openrouter.requests_to("/api/v1/key"), 1);
    assert_eq!(fakes.openrouter.requests(), 1);
    assert_eq!(fakes.elevenlabs.requests_to("/v1/user/subscription"), 1);
    let voice = format!("/v1/voices/{}", fakes::elevenlabs::VOICE_ID);
    assert_eq!(
        fakes.elevenlabs.requests_to(&voice),
        1,
        "the voice id is looked up"
    );
    assert_eq!(fakes.elevenlabs.requests(), 2);
    let searches = fakes.pexels.seen();
    assert_eq!(searches.len(), 1);
    assert_eq!(searches[0].query_param("per_page").as_deref(), Some("1"));

    // A refused key and a missing one: exit 3, each row says which.
    let bad = run(fakes
        .factory(&state, tmp.path())
        .env("ELEVENLABS_API_KEY", "sk_wrong_key_for_the_doctor")
        .env("PEXELS_API_KEY", "")
        .arg("doctor"))
    .await;
    assert_eq!(bad.code, 3, "{}\n{}", bad.stdout, bad.stderr);
    let line = |service: &str| {
        bad.stdout
            .lines()
            .find(|l| l.starts_with(service))
            .unwrap_or_else(|| panic!("no `{service}` line in\n{}", bad.stdout))
            .to_owned()
    };
    assert!(line("elevenlabs").contains("rejected"), "{}", bad.stdout);
    assert!(line("pexels").contains("missing"), "{}", bad.stdout);
    assert!(line("pexels").contains("PEXELS_API_KEY"), "{}", bad.stdout);
    assert!(line("openrouter").contains(" ok "), "{}", bad.stdout);
    for out in [&good, &bad] {
        for key in [
            fakes::openrouter::KEY,
            fakes::pexels::KEY,
            fakes::elevenlabs::KEY,
            "sk_wrong_key_for_the_doctor",
        ] {
            assert!(!out.stdout.contains(key) && !out.stderr.contains(key));
        }
    }
    assert!(!state.exists(), "doctor writes no state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_needing_more_characters_than_are_left_does_not_start() {
    let fakes = Fakes::start().await;
    fakes.elevenlabs.push(fakes::elevenlabs::Scenario::Quota {
        used: 99_990,
        limit: 100_000,
    });
    let tmp = tempfile::tempdir().expect("temp dir");
    let recipes = copy_samples(tmp.path());
    write(&recipes, "space-facts.yaml", REAL_RECIPE);
    let state = tmp.path().join("state");
    let out = run(fakes
        .factory(&state, tmp.path())
        .args(["run", "recipes/space-facts.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("has 10 characters left but this run needs about"),
        "{}",
        out.stderr
    );
    assert_eq!(fakes.elevenlabs.requests_to("/v1/user/subscription"), 1);
    assert_eq!(speeches(&fakes.elevenlabs), 0, "no speech was asked for");
    assert_eq!(
        fakes.openrouter.requests_to("/api/v1/chat/completions"),
        0,
        "no job started"
    );
    assert_eq!(
        fakes.openrouter.requests_to("/api/v1/key"),
        1,
        "the credit was checked"
    );
    assert_eq!(fakes.pexels.requests(), 0, "no job started");
}

/// R2 on moto, the fake TikTok with `main` connected through `TIKTOK_ACCOUNT_JSON`, the
/// fake Telegram: everything a publishing run needs, as its environment.
struct Publishing {
    moto: Moto,
    tiktok: FakeTikTok,
    telegram: FakeTelegram,
}

impl Publishing {
    async fn start() -> Self {
        Self {
            moto: Moto::start().await,
            tiktok: FakeTikTok::start().await,
            telegram: FakeTelegram::start().await,
        }
    }

    fn factory(&self, dir: &Path) -> Factory {
        let a = self.tiktok.connected_account();
        let account = json!({
            "open_id": a.open_id,
            "access_token": a.access_token.expose(),
            "refresh_token": a.refresh_token.expose(),
        });
        Factory::new()
            .current_dir(dir)
            .env("CI", "1")
            .env("R2_ENDPOINT", &self.moto.endpoint)
            .env("R2_ACCESS_KEY_ID", "AKIAFAKE")
            .env("R2_SECRET_ACCESS_KEY", "fake-secret-key")
            .env("R2_BUCKET", crate::publish_r2::BUCKET)
            .env("TIKTOK_CLIENT_KEY", tiktok::CLIENT_KEY)
            .env("TIKTOK_CLIENT_SECRET", tiktok::CLIENT_SECRET)
            .env("TIKTOK_API_BASE_URL", self.tiktok.url())
            .env("TIKTOK_AUTH_BASE_URL", self.tiktok.url())
            .env("TIKTOK_ACCOUNT_JSON", account.to_string())
            .env("TELEGRAM_API_BASE_URL", self.telegram.url())
            .env("TELEGRAM_BOT_TOKEN", telegram::TOKEN)
            .env(
                "FACTORY_SECRET_KEY",
                "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
            )
    }

    async fn hosted(&self) -> usize {
        R2::new(self.moto.config())
            .unwrap()
            .expired(i64::MAX)
            .await
            .unwrap()
            .len()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_renders_and_uploads_before_failing_on_a_missing_telegram_token() {
    let services = Publishing::start().await;
    let dir = tempfile::tempdir().unwrap();
    publishing_recipe(dir.path());

    let out = run(services
        .factory(dir.path())
        .env_remove("TELEGRAM_BOT_TOKEN")
        .args(["run", "publish.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("before any job started")
            && out
                .stderr
                .contains("telegram: `TELEGRAM_BOT_TOKEN` is not set"),
        "{}",
        out.stderr
    );
    assert!(services.tiktok.inbox().is_empty(), "no draft was uploaded");
    assert!(services.tiktok.inits().is_empty(), "no upload was started");
    assert_eq!(services.hosted().await, 0, "nothing was hosted");
    assert!(
        !dir.path().join(".factory/cache/render").exists(),
        "nothing was rendered"
    );

    // With the token, the same run publishes, after one check of it.
    let out = run(services.factory(dir.path()).args(["run", "publish.yaml"])).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(services.telegram.token_checks(), 1);
    assert_eq!(services.telegram.messages().len(), 1);
    assert_eq!(services.tiktok.inbox().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_tiktok_ok_with_no_account_connected() {
    let services = Publishing::start().await;
    let dir = tempfile::tempdir().unwrap();
    publishing_recipe(dir.path());

    let doctor = run(services
        .factory(dir.path())
        .env_remove("TIKTOK_ACCOUNT_JSON")
        .args(["--json", "doctor", "publish.yaml"]))
    .await;
    assert_eq!(doctor.code, 3, "{doctor:?}");
    let report = doctor.json();
    assert_eq!(report["ok"], false);
    let row = check(&report, "tiktok");
    assert_eq!(row["status"], "missing", "{row}");
    assert!(
        row["detail"].as_str().unwrap().contains(
            "no TikTok account `main` is connected: run `factory auth tiktok login --account main`"
        ),
        "{row}"
    );
    for service in ["r2", "telegram"] {
        assert_eq!(check(&report, service)["status"], "ok", "{report}");
    }
    assert!(
        !dir.path().join(".factory").exists(),
        "doctor writes no state"
    );

    // `run` stops on it too, before rendering or hosting anything.
    let out = run(services
        .factory(dir.path())
        .env_remove("TIKTOK_ACCOUNT_JSON")
        .args(["run", "publish.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains("tiktok: no TikTok account `main`"),
        "{}",
        out.stderr
    );
    assert_eq!(services.hosted().await, 0);
    assert_eq!(services.telegram.messages().len(), 0);

    // Connected by the secret, the same account is ready.
    let doctor = run(services
        .factory(dir.path())
        .args(["--json", "doctor", "publish.yaml"]))
    .await;
    assert_eq!(doctor.code, 0, "{doctor:?}");
    assert_eq!(check(&doctor.json(), "tiktok")["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_says_r2_ok_with_an_unreachable_endpoint() {
    let tmp = tempfile::tempdir().unwrap();
    publishing_recipe(tmp.path());
    let out = run(Factory::new()
        .current_dir(tmp.path())
        .env("R2_ENDPOINT", closed_endpoint())
        .env("R2_ACCESS_KEY_ID", "AKIAFAKE")
        .env("R2_SECRET_ACCESS_KEY", "fake-secret-key")
        .env("R2_BUCKET", "renders")
        .args(["--json", "doctor", "publish.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    let report = out.json();
    let row = check(&report, "r2");
    assert_eq!(row["status"], "rejected", "{row}");
    assert!(
        row["detail"].as_str().unwrap().contains("cannot reach"),
        "{row}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_checks_elevenlabs_characters_against_the_offline_scripts_own_text() {
    let fakes = Fakes::start().await;
    // 200 characters left: fewer than the offline script of a 20-second video says.
    fakes.elevenlabs.push(fakes::elevenlabs::Scenario::Quota {
        used: 99_800,
        limit: 100_000,
    });
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "eleven.yaml",
        &format!(
            "version: 1\nname: eleven\nvoices:\n  e: {{ provider: elevenlabs, voice_id: {} }}\ntemplates:\n  t:\n    script: {{ provider: offline, seconds: 20 }}\n    footage: {{ provider: generated, clips: 1 }}\n    title: facts\nbatch:\n  template: t\n  matrix: {{ topic: [Neutron stars], voice: [e] }}\n",
            fakes::elevenlabs::VOICE_ID
        ),
    );
    let state = tmp.path().join("state");
    let out = run(fakes
        .factory(&state, tmp.path())
        .args(["run", "eleven.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    let needed: u64 = out
        .stderr
        .split("this run needs about ")
        .nth(1)
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no estimate in {}", out.stderr));
    assert!(needed > 200, "the script's own characters: {needed}");
    assert_eq!(speeches(&fakes.elevenlabs), 0, "no speech was asked for");
}

/// A fake OpenRouter whose key has almost no credit left; it counts every other request.
async fn poor_openrouter() -> Fake<()> {
    async fn handle(
        axum::extract::State(shared): axum::extract::State<std::sync::Arc<Shared<()>>>,
        method: Method,
        uri: Uri,
    ) -> Response {
        shared.record(Seen::new(
            method.clone(),
            &uri,
            axum::http::HeaderMap::new(),
            axum::body::Bytes::new(),
        ));
        if method == Method::GET && uri.path() == "/api/v1/key" {
            return fakes::json(
                200,
                &json!({ "data": { "label": "sk-or-v1-poo...r", "limit": 1.0,
                                   "limit_remaining": 0.000_01, "usage": 0.999_99,
                                   "is_free_tier": false } }),
            );
        }
        fakes::json(
            500,
            &json!({ "error": { "code": 500, "message": "not in this fake" } }),
        )
    }
    Fake::start(fakes::openrouter::KEY, "/api/v1", |shared| {
        Router::new().fallback(handle).with_state(shared)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_does_not_check_openrouter_credit() {
    let openrouter = poor_openrouter().await;
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "llm.yaml",
        "version: 1\nname: llm\nvoices:\n  a: { provider: espeak, voice: en-us }\ntemplates:\n  t:\n    script: { provider: openrouter, model: openai/gpt-4o-mini, prompt: \"Facts about {{ topic }}.\", seconds: 20 }\n    footage: { provider: generated, clips: 1 }\n    title: facts\nbatch:\n  template: t\n  matrix: { topic: [Black holes, Neutron stars], voice: [a] }\n",
    );
    let out = run(Factory::new()
        .current_dir(tmp.path())
        .env("CI", "1")
        .env("OPENROUTER_BASE_URL", &openrouter.base_url)
        .env("OPENROUTER_API_KEY", fakes::openrouter::KEY)
        .args(["run", "llm.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains("the OpenRouter key has $0.0000 credit left but this run needs about $0.00"),
        "{}",
        out.stderr
    );
    let paths: Vec<String> = openrouter.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/api/v1/key"], "only the key was asked about");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_elevenlabs_voice_id_stops_the_run_at_its_recipe_line() {
    let fakes = Fakes::start().await;
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "eleven.yaml",
        "version: 1\nname: eleven\nvoices:\n  e: { provider: elevenlabs, voice_id: NoSuchVoice0000000000 }\ntemplates:\n  t:\n    script: { provider: offline, seconds: 3 }\n    footage: { provider: generated, clips: 1 }\n    title: facts\nbatch:\n  template: t\n  matrix: { topic: [Neutron stars], voice: [e] }\n",
    );
    let state = tmp.path().join("state");
    let out = run(fakes
        .factory(&state, tmp.path())
        .args(["run", "eleven.yaml"]))
    .await;
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr.contains(
            "eleven.yaml:4:40: voice `e` of recipe `eleven` names ElevenLabs voice id `NoSuchVoice0000000000`, which does not exist"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(speeches(&fakes.elevenlabs), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_prints_every_check_as_a_table_and_as_json() {
    let services = Publishing::start().await;
    let dir = tempfile::tempdir().unwrap();
    publishing_recipe(dir.path());
    let factory = || {
        services
            .factory(dir.path())
            .env_remove("TIKTOK_ACCOUNT_JSON")
            .env("R2_ENDPOINT", "http://127.0.0.1:9")
    };
    let human = run(factory().args(["doctor", "publish.yaml"])).await;
    let json_out = run(factory().args(["--json", "doctor", "publish.yaml"])).await;
    assert_eq!(human.code, 3, "{human:?}");
    assert_eq!(json_out.code, 3, "{json_out:?}");
    let mut settings = tmp_filters(dir.path());
    // The tools' paths differ between machines.
    settings.add_filter(
        r"`[^`\s]*ffmpeg`, `[^`\s]*ffprobe`, `[^`\s]*espeak[^`\s]*`",
        "[TOOLS]",
    );
    let pretty = serde_json::to_string_pretty(&json_out.json()).unwrap();
    settings.bind(|| {
        insta::assert_snapshot!("doctor_table", human.stdout);
        insta::assert_snapshot!("doctor_json", pretty);
    });
}
