//! `factory doctor`: whether the services and tools the recipes need are ready, checked
//! without spending anything. Paid services are asked about their key and quota; the
//! publishing services only for their variables (calling them could publish or notify).
//! Keys are never printed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Serialize;

use super::{CmdResult, Outcome, load_all, out, out_json, report};
use crate::media::Tools;
use crate::providers::ProviderError;
use crate::providers::SetupError;
use crate::providers::elevenlabs::{ElevenLabs, ElevenLabsVoice, PlanTier};
use crate::providers::openrouter::OpenRouter;
use crate::providers::pexels::Pexels;
use crate::providers::r2::R2Config;
use crate::providers::telegram::Telegram;
use crate::providers::tiktok::TikTokConfig;
use crate::recipe::{FootageProvider, HostProvider, ScriptProvider, VoiceProvider};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Ready: the key works (or the variables are set) and there is quota left.
    Ok,
    /// Not configured: a key or variable is not set.
    Missing,
    /// Configured, but the service refused it or the setting is unusable.
    Rejected,
    /// The service did not answer usefully; try again later.
    Unreachable,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Missing => "missing",
            Self::Rejected => "rejected",
            Self::Unreachable => "unreachable",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub service: &'static str,
    /// Recipes that use it; empty when it is configured but no recipe needs it.
    pub needed_by: Vec<String>,
    pub status: Status,
    pub detail: String,
}

impl Check {
    fn blocks(&self) -> bool {
        !self.needed_by.is_empty() && self.status != Status::Ok
    }
}

const SERVICES: [(&str, &str); 6] = [
    ("openrouter", "OPENROUTER_API_KEY"),
    ("pexels", "PEXELS_API_KEY"),
    ("elevenlabs", "ELEVENLABS_API_KEY"),
    ("r2", "R2_ACCESS_KEY_ID"),
    ("tiktok", "TIKTOK_CLIENT_KEY"),
    ("telegram", "TELEGRAM_BOT_TOKEN"),
];

pub async fn run(paths: &[PathBuf], json: bool, ci: bool) -> CmdResult {
    let (ok, diags) = load_all(paths);
    if report(&diags, ci) {
        return Ok(Outcome::Invalid);
    }
    let mut needs: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for e in &ok {
        let name = &e.recipe.name;
        needs.entry("tools").or_default().insert(name.clone());
        for job in &e.jobs {
            let s = &job.spec;
            let mut need = |service| {
                needs.entry(service).or_default().insert(name.clone());
            };
            if s.script.provider == ScriptProvider::Openrouter {
                need("openrouter");
            }
            if s.footage.provider == FootageProvider::Pexels {
                need("pexels");
            }
            if s.voice.provider == VoiceProvider::Elevenlabs {
                need("elevenlabs");
            }
            if s.publish.host == HostProvider::R2 {
                need("r2");
            }
            if s.publish.tiktok.is_some() {
                need("tiktok");
            }
            if s.notify.as_ref().is_some_and(|n| n.telegram.is_some()) {
                need("telegram");
            }
        }
    }
    let needed_by = |service: &str| -> Vec<String> {
        needs
            .get(service)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    };
    let mut checks = vec![tools(needed_by("tools"))];
    for (service, key) in SERVICES {
        let needed = needed_by(service);
        // A service no recipe uses is checked only when it is configured.
        if needed.is_empty() && crate::secret::Secret::from_env(key).is_none() {
            continue;
        }
        let (status, detail) = match service {
            "openrouter" => openrouter().await,
            "pexels" => pexels().await,
            "elevenlabs" => elevenlabs().await,
            "r2" => presence(R2Config::from_env().map(drop)),
            "tiktok" => presence(TikTokConfig::from_env().map(drop)),
            _ => presence(Telegram::from_env().map(drop)),
        };
        checks.push(Check {
            service,
            needed_by: needed,
            status,
            detail,
        });
    }
    let blocked = checks.iter().any(Check::blocks);
    if json {
        out_json(&serde_json::json!({ "ok": !blocked, "checks": checks }));
    } else {
        out(&render(&checks));
    }
    Ok(if blocked {
        Outcome::Environment
    } else {
        Outcome::Ok
    })
}

fn tools(needed_by: Vec<String>) -> Check {
    let (status, detail) = match Tools::detect() {
        Ok(t) => (
            Status::Ok,
            format!(
                "`{}`, `{}`, `{}`",
                t.ffmpeg.display(),
                t.ffprobe.display(),
                t.espeak.display()
            ),
        ),
        Err(missing) => (Status::Missing, missing.to_string()),
    };
    Check {
        service: "tools",
        needed_by,
        status,
        detail,
    }
}

fn setup(e: &SetupError) -> (Status, String) {
    match e {
        SetupError::MissingKey(_) => (Status::Missing, e.to_string()),
        _ => (Status::Rejected, e.to_string()),
    }
}

fn failed(e: &ProviderError) -> (Status, String) {
    if e.is_retryable() {
        (Status::Unreachable, e.to_string())
    } else {
        (Status::Rejected, e.to_string())
    }
}

async fn openrouter() -> (Status, String) {
    let client = match OpenRouter::from_env() {
        Ok(c) => c,
        Err(e) => return setup(&e),
    };
    match client.key_status().await {
        Ok(k) => {
            let credit = match (k.remaining, k.limit) {
                (Some(left), Some(limit)) => format!("${left:.2} of ${limit:.2} credit left"),
                (Some(left), None) => format!("${left:.2} credit left"),
                _ => "no credit limit on the key".to_owned(),
            };
            let tier = if k.is_free_tier { "; free tier" } else { "" };
            match k.remaining {
                Some(left) if left <= 0.0 => (
                    Status::Rejected,
                    format!("key accepted but no credit left{tier}"),
                ),
                _ => (Status::Ok, format!("key accepted; {credit}{tier}")),
            }
        }
        Err(e) => failed(&e),
    }
}

async fn pexels() -> (Status, String) {
    let client = match Pexels::from_env() {
        Ok(c) => c,
        Err(e) => return setup(&e),
    };
    match client.probe_key().await {
        Ok(rate) => match (rate.remaining, rate.limit) {
            (Some(0), _) => (
                Status::Ok,
                "key accepted; no requests left this period (runs wait for the reset)".into(),
            ),
            (Some(left), Some(limit)) => (
                Status::Ok,
                format!("key accepted; {left} of {limit} requests left this period"),
            ),
            _ => (Status::Ok, "key accepted".into()),
        },
        Err(e) => failed(&e),
    }
}

async fn elevenlabs() -> (Status, String) {
    let client = match ElevenLabs::from_env(ElevenLabsVoice::new(""), PlanTier::Free.permits()) {
        Ok(c) => c,
        Err(e) => return setup(&e),
    };
    match client.subscription().await {
        Ok(sub) if sub.remaining == 0 => (
            Status::Rejected,
            format!(
                "key accepted but no characters left on the `{}` plan",
                sub.tier
            ),
        ),
        Ok(sub) => (
            Status::Ok,
            format!(
                "key accepted; {} of {} characters left on the `{}` plan",
                sub.remaining, sub.character_limit, sub.tier
            ),
        ),
        Err(e) => failed(&e),
    }
}

/// Publishing services are only checked for their settings: calling them would act.
fn presence<E: std::fmt::Display>(config: Result<(), E>) -> (Status, String) {
    match config {
        Ok(()) => (Status::Ok, "variables set (not called)".into()),
        Err(e) => (Status::Missing, e.to_string()),
    }
}

fn render(checks: &[Check]) -> String {
    let needed: Vec<String> = checks
        .iter()
        .map(|c| {
            if c.needed_by.is_empty() {
                "-".to_owned()
            } else {
                c.needed_by.join(", ")
            }
        })
        .collect();
    let width = needed.iter().map(String::len).max().unwrap_or(0).max(9);
    let mut out = format!(
        "{:<11} {:<width$} {:<12} detail\n",
        "service", "needed by", "status"
    );
    for (c, n) in checks.iter().zip(&needed) {
        out.push_str(&format!(
            "{:<11} {:<width$} {:<12} {}\n",
            c.service,
            n,
            c.status.as_str(),
            c.detail
        ));
    }
    out
}
