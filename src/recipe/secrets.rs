//! Secrets never live in recipes. This spots values shaped like the keys and tokens of
//! the services we use (and long random-looking tokens in general).

/// Why `value` looks like a credential, if it does.
pub fn looks_like_secret(value: &str) -> Option<&'static str> {
    let v = value.trim();
    if v.contains(char::is_whitespace) {
        return None;
    }
    let alnum = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if v.starts_with("sk-or-") && v.len() > 20 {
        return Some("an OpenRouter API key");
    }
    if (v.starts_with("sk_") || v.starts_with("sk-")) && v.len() >= 30 && alnum(v) {
        return Some("an API key");
    }
    if v.len() == 20
        && v.starts_with("AKIA")
        && v[4..]
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Some("an access key id");
    }
    if let Some((bot, token)) = v.split_once(':')
        && (6..=12).contains(&bot.len())
        && bot.chars().all(|c| c.is_ascii_digit())
        && token.len() >= 30
        && alnum(token)
    {
        return Some("a Telegram bot token");
    }
    if ["act.", "rft.", "ghp_", "xoxb-", "github_pat_"]
        .iter()
        .any(|p| v.starts_with(p))
        && v.len() > 24
    {
        return Some("an access token");
    }
    if v.len() >= 32 && alnum(v) && is_random_looking(v) {
        return Some("a long random token");
    }
    None
}

/// The first credential anywhere in `text` (inside a sentence, after `Bearer `, a JWT,
/// a PEM private key): what it looks like and its byte range in `text`.
pub fn find_secret(text: &str) -> Option<(&'static str, std::ops::Range<usize>)> {
    if let Some(start) = text.find("-----BEGIN")
        && let Some(rel) = text[start..].find("PRIVATE KEY-----")
    {
        let end = text[start + rel..]
            .find("-----END")
            .and_then(|e| {
                let from = start + rel + e;
                text[from + 8..].find("-----").map(|k| from + 8 + k + 5)
            })
            .unwrap_or(text.len());
        return Some(("a PEM private key", start..end));
    }
    let is_sep = |c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '"' | '\'' | '`' | ',' | ';' | '(' | ')' | '<' | '>' | '[' | ']' | '{' | '}' | '='
            )
    };
    let mut start = None;
    for (i, c) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
    {
        match (start, is_sep(c)) {
            (None, false) => start = Some(i),
            (Some(s), true) => {
                let token = text[s..i].trim_end_matches(['.', ':', '!', '?']);
                if let Some(what) = looks_like_secret(token).or_else(|| is_jwt(token)) {
                    return Some((what, s..s + token.len()));
                }
                start = None;
            }
            _ => {}
        }
    }
    None
}

/// A JSON Web Token: three base64url parts, the first a JSON object (`eyJ`).
fn is_jwt(token: &str) -> Option<&'static str> {
    let parts: Vec<&str> = token.split('.').collect();
    let b64 = |p: &str| {
        !p.is_empty()
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    (parts.len() == 3
        && parts[0].starts_with("eyJ")
        && parts[1].len() >= 8
        && parts[2].len() >= 16
        && parts.iter().all(|p| b64(p)))
    .then_some("a JSON Web Token")
}

/// Var names that announce a credential.
pub fn is_secret_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "api_key", "apikey", "api-key", "secret", "token", "password", "passwd",
    ]
    .iter()
    .any(|w| n.contains(w))
}

fn is_random_looking(v: &str) -> bool {
    let has_digit = v.chars().any(|c| c.is_ascii_digit());
    let has_alpha = v.chars().any(|c| c.is_ascii_alphabetic());
    if !(has_digit && has_alpha) {
        return false;
    }
    let mut counts = [0u32; 128];
    for b in v.bytes() {
        counts[usize::from(b & 0x7f)] += 1;
    }
    #[allow(clippy::cast_precision_loss)]
    let n = v.len() as f64;
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    entropy > 3.5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spots_service_keys() {
        assert!(looks_like_secret("sk-or-v1-0123456789abcdef0123456789abcdef").is_some());
        assert!(looks_like_secret("sk_3f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e").is_some());
        assert!(looks_like_secret("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw").is_some());
        assert!(looks_like_secret("AKIAIOSFODNN7EXAMPLE").is_some());
        assert!(looks_like_secret("563492ad6f91700001000001a1b2c3d4e5f6a7b8c9d0e1f2").is_some());
    }

    #[test]
    fn finds_keys_inside_sentences_after_bearer_jwts_and_pem_keys() {
        let key = "sk-or-v1-0123456789abcdef0123456789abcdef";
        for text in [
            format!("my key is {key}, keep it"),
            format!("Authorization: Bearer {key}"),
            format!("\"{key}\""),
        ] {
            let (_, range) = find_secret(&text).unwrap_or_else(|| panic!("{text}"));
            assert_eq!(&text[range], key);
        }
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(
            find_secret(&format!("token {jwt}.")).map(|(w, _)| w),
            Some("a JSON Web Token")
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            find_secret(&format!("x {pem} y")).map(|(w, r)| (w, r.len())),
            Some(("a PEM private key", pem.len()))
        );
        assert_eq!(
            find_secret("Black holes — did you know? version 1.2.3 #space"),
            None
        );
    }

    #[test]
    fn leaves_ordinary_values_alone() {
        for v in [
            "21m00Tcm4TlvDq8N00",
            "eleven_multilingual_v2",
            "openai/gpt-4o-mini",
            "Black holes — did you know? #space",
            "@my_alerts",
            "assets/lofi.mp3",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ] {
            assert_eq!(looks_like_secret(v), None, "{v}");
        }
    }
}
