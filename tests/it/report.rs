//! `factory report`: a static page that headless Chromium opens offline, with every
//! contact-sheet thumbnail decoding.

use std::path::Path;
use std::process::Command;

use crate::support::{Factory, write};

fn recipe() -> &'static str {
    "version: 1\nname: tiny-report\nvoices:\n  narrator: { provider: espeak, voice: en-us }\n\
     templates:\n  fact:\n    script: { provider: offline, seconds: 3 }\n    \
     footage: { provider: generated, clips: 1 }\n    title: \"{{ topic }}\"\n\
     batch:\n  template: fact\n  matrix:\n    topic: [Black holes, Comets]\n    voice: [narrator]\n"
}

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs (see `.ci/setup-test-deps.sh`)")
}

#[test]
fn the_report_opens_offline_with_decoded_thumbnails() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(tmp.path(), "recipes/tiny.yaml", recipe());
    let ran = Factory::new()
        .current_dir(tmp.path())
        .args(["run", "recipes"])
        .run();
    assert_eq!(ran.code, 0, "{ran:?}");
    let out = Factory::new()
        .current_dir(tmp.path())
        .args(["report", "--out", "report.html"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    let html = std::fs::read_to_string(tmp.path().join("report.html")).expect("report written");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external asset"
    );
    assert_eq!(html.matches("src=\"data:image/jpeg;base64,").count(), 2);
    assert!(html.contains("Black holes") && html.contains("Comets"));

    // A copy with a probe script: it marks the page once every image has decoded.
    let probe = html.replace(
        "</body>",
        "<script>window.addEventListener('load', () => { const imgs = [...document.images]; \
         document.body.dataset.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length \
         + '/' + imgs.length; });</script></body>",
    );
    write(tmp.path(), "probe.html", &probe);
    let dom = chromium(
        &tmp.path().join("profile-dom"),
        &[
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("file://{}", tmp.path().join("probe.html").display()),
        ],
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(dom.contains("data-decoded=\"2/2\""), "{dom}");

    let png = tmp.path().join("report.png");
    let shot = chromium(
        &tmp.path().join("profile-shot"),
        &[
            &format!("--screenshot={}", png.display()),
            &format!("file://{}", tmp.path().join("report.html").display()),
        ],
    );
    assert!(png.is_file(), "{}", String::from_utf8_lossy(&shot.stderr));
    let bytes = std::fs::read(&png).expect("screenshot");
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
    // A blank 1200x1600 page compresses to a few kilobytes; thumbnails make it far larger.
    assert!(
        bytes.len() > 40_000,
        "screenshot is only {} bytes",
        bytes.len()
    );
    if let Ok(keep) = std::env::var("FACTORY_KEEP_SCREENSHOT") {
        let _ = std::fs::copy(&png, keep);
    }
}
