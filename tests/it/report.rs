//! `factory report`: a static page that headless Chromium opens offline — a summary, the
//! failures first, current jobs with a player, a contact sheet and the words that were
//! sent, older versions behind a toggle — checked in its DOM at desktop and phone width.

use std::path::Path;
use std::process::Command;

use crate::support::{Factory, write};

/// Two jobs that render and one whose only clip is not a video.
fn recipe(caption: &str) -> String {
    format!(
        "version: 1\nname: tiny-report\nvoices:\n  narrator: {{ provider: espeak, voice: en-us }}\n\
         templates:\n  fact:\n    script: {{ provider: offline, seconds: 3 }}\n    \
         footage: {{ provider: generated, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\n    \
         caption: \"{caption} {{{{ topic | lower }}}}.\"\n    hashtags: [space, tiny]\n  \
         broken:\n    script: {{ provider: offline, seconds: 3 }}\n    \
         footage: {{ provider: local, dir: clips, clips: 1 }}\n    title: \"{{{{ topic }}}}\"\n\
         batch:\n  matrix:\n    topic: [Black holes, \"Salt & <pepper>\"]\n    voice: [narrator]\n    \
         template: [fact]\n    include:\n      - {{ topic: Comets, voice: narrator, template: broken }}\n"
    )
}

fn chromium(profile: &Path, size: &str, args: &[&str]) -> std::process::Output {
    Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--window-size={size}"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("chromium runs (see `.ci/setup-test-deps.sh`)")
}

/// What the page says about itself once loaded, as `data-*` attributes of `<body>`.
const PROBE: &str = "<script>window.addEventListener('load', () => {
  const q = s => [...document.querySelectorAll(s)];
  const imgs = [...document.images];
  const d = document.body.dataset;
  d.decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length + '/' + imgs.length;
  d.current = q('#current .job').map(j => j.dataset.status).join(',');
  d.superseded = q('#superseded .job').length;
  d.open = document.querySelector('#superseded').open;
  d.videos = q('#current video').filter(v => v.src.startsWith('file:///')).length;
  d.captions = q('#current .caption').map(c => c.textContent).join('|');
  d.hashtags = q('#current .hashtags').map(c => c.textContent).join('|');
  d.voices = q('#current .voice').map(c => c.textContent).join('|');
  d.timings = q('#current .stages').length;
  d.pepper = q('pepper').length;
  d.summary = q('#summary li b').map(b => b.textContent).join(',');
  d.viewport = !!document.querySelector('meta[name=viewport]');
  d.overflow = document.documentElement.scrollWidth > window.innerWidth;
});</script></body>";

fn attribute<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = format!("data-{name}=\"");
    let at = dom
        .find(&start)
        .unwrap_or_else(|| panic!("no `data-{name}` in {dom}"))
        + start.len();
    &dom[at..at + dom[at..].find('"').unwrap()]
}

#[test]
fn the_report_shows_failures_first_current_jobs_and_older_versions_behind_a_toggle() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    write(dir, "recipes/tiny.yaml", &recipe("All about"));
    write(dir, "recipes/clips/bad.mp4", "not a video");
    let ran = Factory::new()
        .current_dir(dir)
        .args(["run", "recipes"])
        .run();
    assert_eq!(ran.code, 1, "one job fails: {ran:?}");
    // A new caption is a new version of both rendering jobs; their renders are reused.
    write(dir, "recipes/tiny.yaml", &recipe("Everything about"));
    let again = Factory::new()
        .current_dir(dir)
        .args(["run", "recipes"])
        .run();
    assert_eq!(again.code, 1, "{again:?}");

    let out = Factory::new()
        .current_dir(dir)
        .args(["report", "--out", "report.html", "recipes"])
        .run();
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("report of 3 jobs (2 superseded)"),
        "{out:?}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report written");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "external asset"
    );
    assert_eq!(html.matches("src=\"data:image/jpeg;base64,").count(), 4);
    assert!(html.contains("Salt &amp; &lt;pepper&gt;"), "escaped topic");
    // Spend with no paid stage is `$0.0000`, never a float sum's `-0`.
    assert!(html.contains("$0.0000") && !html.contains("$-0"), "spend");

    // Contact sheets are kept by render key: a second report makes none.
    let sheets = dir.join(".factory/sheets");
    let kept = || {
        let mut found: Vec<_> = std::fs::read_dir(&sheets)
            .expect("sheets kept")
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), e.metadata().unwrap().modified().unwrap())
            })
            .collect();
        found.sort();
        found
    };
    let before = kept();
    assert_eq!(before.len(), 2, "one sheet per render: {before:?}");
    let second = Factory::new()
        .current_dir(dir)
        .args(["report", "--out", "report.html", "recipes"])
        .run();
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(kept(), before);

    write(dir, "probe.html", &html.replace("</body>", PROBE));
    let url = format!("file://{}", dir.join("probe.html").display());
    for (size, name) in [("1280,1400", "desktop"), ("390,844", "phone")] {
        let dom = chromium(
            &dir.join(format!("profile-dom-{name}")),
            size,
            &["--virtual-time-budget=5000", "--dump-dom", &url],
        );
        let dom = String::from_utf8_lossy(&dom.stdout);
        assert_eq!(attribute(&dom, "decoded"), "4/4", "{name}");
        assert_eq!(attribute(&dom, "current"), "failed,done,done", "{name}");
        assert_eq!(attribute(&dom, "superseded"), "2");
        assert_eq!(attribute(&dom, "open"), "false");
        assert_eq!(attribute(&dom, "videos"), "2");
        // The caption the sidecar has, as sent; the older caption only behind the toggle.
        let captions = attribute(&dom, "captions");
        assert!(
            captions.contains("Everything about black holes."),
            "{captions}"
        );
        assert!(!captions.contains("All about"), "{captions}");
        assert_eq!(attribute(&dom, "hashtags"), "#space #tiny|#space #tiny");
        assert_eq!(attribute(&dom, "voices"), "narrator|narrator|narrator");
        assert_eq!(attribute(&dom, "timings"), "3");
        assert_eq!(attribute(&dom, "pepper"), "0", "no element from a topic");
        let summary = attribute(&dom, "summary");
        assert!(summary.starts_with("2,1,0,$0.0000,"), "{name}: {summary}");
        assert_eq!(attribute(&dom, "viewport"), "true");
        assert_eq!(
            attribute(&dom, "overflow"),
            "false",
            "{name}: wider than the screen"
        );
    }

    for (size, name, least) in [
        ("1280,1400", "desktop", 60_000),
        ("390,844", "phone", 20_000),
    ] {
        let png = dir.join(format!("report-{name}.png"));
        let shot = chromium(
            &dir.join(format!("profile-shot-{name}")),
            size,
            &[
                &format!("--screenshot={}", png.display()),
                &format!("file://{}", dir.join("report.html").display()),
            ],
        );
        assert!(png.is_file(), "{}", String::from_utf8_lossy(&shot.stderr));
        let bytes = std::fs::read(&png).expect("screenshot");
        assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
        // A blank page compresses to a few kilobytes; thumbnails make it far larger.
        assert!(bytes.len() > least, "{name}: only {} bytes", bytes.len());
        // `FACTORY_KEEP_SCREENSHOTS=docs/images` refreshes the README's pictures.
        if let Ok(keep) = std::env::var("FACTORY_KEEP_SCREENSHOTS") {
            std::fs::copy(&png, Path::new(&keep).join(format!("report-{name}.png")))
                .expect("keep the screenshot");
        }
    }
}
