//! `JobId` stability: formatting never changes an id, meaning always does — and only the
//! ids of the jobs whose meaning changed.

use std::collections::{BTreeMap, BTreeSet};

use tiktok_factory::{expand, recipe};

use crate::support::{Factory, write};

/// (topic, voice, template) → `JobId`.
type Ids = BTreeMap<(String, String, String), String>;

const RECIPE: &str = r#"version: 1
name: id-check
vars:
  cta: Follow for more.
voices:
  narrator:
    provider: espeak
    voice: en-us
    rate: 165
  warm:
    provider: elevenlabs
    voice_id: 21m00Tcm4TlvDq8N00
    model: eleven_multilingual_v2
    stability: 0.5
templates:
  fact:
    script:
      provider: offline
      seconds: 20
    footage: { provider: generated, clips: 3 }
    title: "{{ topic }} — did you know?"
    hashtags: [facts, "{{ topic | replace(' ', '') | lower }}"]
  story:
    script:
      provider: openrouter
      model: openai/gpt-4o-mini
      prompt: |
        Write a {{ seconds }}-second voice-over about {{ topic }}.
        End with "{{ cta }}".
    captions: { style: bold-lower, max_words: 2 }
    title: "The story of {{ topic }}"
batch:
  matrix:
    topic: [Black holes, Neutron stars, Dark matter]
    voice: [narrator, warm]
    template: [fact, story]
"#;

/// Loads and expands `recipe.yaml` among `files`, written to a fresh folder.
fn ids(files: &[(&str, &str)]) -> Ids {
    let tmp = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        write(tmp.path(), name, text);
    }
    let path = tmp.path().join("recipe.yaml");
    let render = |diags: Vec<recipe::Diagnostic>| -> String {
        diags.iter().map(recipe::Diagnostic::render).collect()
    };
    let resolved = recipe::load(&path).unwrap_or_else(|d| panic!("invalid:\n{}", render(d)));
    let jobs = expand::expand(&resolved).unwrap_or_else(|d| panic!("invalid:\n{}", render(d)));
    jobs.into_iter()
        .map(|j| {
            let s = j.spec;
            ((s.topic, s.voice_name, s.template), j.id.to_string())
        })
        .collect()
}

fn base() -> Ids {
    let ids = ids(&[("recipe.yaml", RECIPE)]);
    assert_eq!(ids.len(), 12, "3 topics × 2 voices × 2 templates");
    let distinct: BTreeSet<&String> = ids.values().collect();
    assert_eq!(distinct.len(), ids.len(), "every job has its own id");
    ids
}

/// The cells whose id differs, including cells only one side has.
fn changed(before: &Ids, after: &Ids) -> BTreeSet<(String, String, String)> {
    before
        .keys()
        .chain(after.keys())
        .filter(|cell| before.get(*cell) != after.get(*cell))
        .cloned()
        .collect()
}

fn assert_same_ids(variant: &str, files: &[(&str, &str)]) {
    let before = base();
    let after = ids(files);
    assert_eq!(
        changed(&before, &after),
        BTreeSet::new(),
        "{variant} changed job ids"
    );
}

#[test]
fn reordered_keys_keep_every_id() {
    assert_same_ids(
        "reordering keys",
        &[(
            "recipe.yaml",
            r#"batch:
  matrix:
    template: [fact, story]
    voice: [narrator, warm]
    topic: [Black holes, Neutron stars, Dark matter]
templates:
  story:
    title: "The story of {{ topic }}"
    captions: { max_words: 2, style: bold-lower }
    script:
      prompt: |
        Write a {{ seconds }}-second voice-over about {{ topic }}.
        End with "{{ cta }}".
      model: openai/gpt-4o-mini
      provider: openrouter
  fact:
    hashtags: [facts, "{{ topic | replace(' ', '') | lower }}"]
    title: "{{ topic }} — did you know?"
    footage: { clips: 3, provider: generated }
    script:
      seconds: 20
      provider: offline
voices:
  warm:
    stability: 0.5
    model: eleven_multilingual_v2
    voice_id: 21m00Tcm4TlvDq8N00
    provider: elevenlabs
  narrator:
    rate: 165
    voice: en-us
    provider: espeak
vars:
  cta: Follow for more.
name: id-check
version: 1
"#,
        )],
    );
}

#[test]
fn other_indentation_keeps_every_id() {
    let four: String = RECIPE
        .lines()
        .map(|l| {
            let indent = l.len() - l.trim_start().len();
            format!("{}{}\n", " ".repeat(indent * 2), l.trim_start())
        })
        .collect();
    assert_ne!(four, RECIPE);
    assert_same_ids("four-space indentation", &[("recipe.yaml", &four)]);
}

#[test]
fn flow_and_block_style_keep_every_id() {
    assert_same_ids(
        "flow style instead of block style and back",
        &[(
            "recipe.yaml",
            r#"version: 1
name: id-check
vars: { cta: Follow for more. }
voices:
  narrator: { provider: espeak, voice: en-us, rate: 165 }
  warm: { provider: elevenlabs, voice_id: 21m00Tcm4TlvDq8N00, model: eleven_multilingual_v2, stability: 0.5 }
templates:
  fact:
    script: { provider: offline, seconds: 20 }
    footage:
      provider: generated
      clips: 3
    title: "{{ topic }} — did you know?"
    hashtags:
      - facts
      - "{{ topic | replace(' ', '') | lower }}"
  story:
    script: { provider: openrouter, model: openai/gpt-4o-mini, prompt: "Write a {{ seconds }}-second voice-over about {{ topic }}.\nEnd with \"{{ cta }}\".\n" }
    captions:
      style: bold-lower
      max_words: 2
    title: "The story of {{ topic }}"
batch: { matrix: { topic: [Black holes, Neutron stars, Dark matter], voice: [narrator, warm], template: [fact, story] } }
"#,
        )],
    );
}

#[test]
fn comments_keep_every_id() {
    let commented: String = RECIPE
        .lines()
        .enumerate()
        .map(|(i, l)| {
            // Block scalars take `#` literally; leave the prompt's lines alone.
            if l.starts_with("        ") {
                format!("{l}\n")
            } else if i % 2 == 0 {
                format!("# note {i}\n{l}\n")
            } else {
                format!("{l}  # note {i}\n")
            }
        })
        .collect();
    assert_same_ids(
        "adding comments",
        &[(
            "recipe.yaml",
            &format!("# A recipe.\n{commented}# The end.\n"),
        )],
    );
}

#[test]
fn quoting_style_keeps_every_id() {
    let mut requoted = RECIPE.to_owned();
    for (plain, quoted) in [
        ("name: id-check", "name: 'id-check'"),
        ("cta: Follow for more.", "cta: \"Follow for more.\""),
        ("voice: en-us", "voice: 'en-us'"),
        (
            "title: \"{{ topic }} — did you know?\"",
            "title: '{{ topic }} — did you know?'",
        ),
        ("[facts,", "[\"facts\","),
        (
            "topic: [Black holes, Neutron stars, Dark matter]",
            "topic: ['Black holes', \"Neutron stars\", Dark matter]",
        ),
    ] {
        assert!(requoted.contains(plain), "`{plain}` is not in the recipe");
        requoted = requoted.replace(plain, quoted);
    }
    assert_same_ids("changing quotes", &[("recipe.yaml", &requoted)]);
}

#[test]
fn moving_a_voice_into_the_project_file_keeps_every_id() {
    let warm = "  warm:
    provider: elevenlabs
    voice_id: 21m00Tcm4TlvDq8N00
    model: eleven_multilingual_v2
    stability: 0.5
";
    assert!(RECIPE.contains(warm));
    let recipe = RECIPE
        .replace(warm, "")
        .replace("vars:\n  cta: Follow for more.\n", "");
    let project = format!("version: 1\nvars:\n  cta: Follow for more.\nvoices:\n{warm}");
    assert_same_ids(
        "moving a voice and a var into `factory.yaml`",
        &[("recipe.yaml", &recipe), ("factory.yaml", &project)],
    );
}

fn cells_where(
    ids: &Ids,
    pick: impl Fn(&(String, String, String)) -> bool,
) -> BTreeSet<(String, String, String)> {
    ids.keys().filter(|c| pick(c)).cloned().collect()
}

#[test]
fn editing_one_topic_changes_only_its_jobs() {
    let before = base();
    let after = ids(&[(
        "recipe.yaml",
        &RECIPE.replace("Dark matter]", "Dark energy]"),
    )]);
    let expected: BTreeSet<_> = cells_where(&before, |c| c.0 == "Dark matter")
        .into_iter()
        .chain(cells_where(&after, |c| c.0 == "Dark energy"))
        .collect();
    assert_eq!(expected.len(), 8);
    assert_eq!(changed(&before, &after), expected);
    let old: BTreeSet<&String> = before.values().collect();
    for (cell, id) in &after {
        if cell.0 == "Dark energy" {
            assert!(!old.contains(id), "{cell:?} reuses an old id");
        }
    }
}

#[test]
fn changing_a_voice_setting_changes_exactly_the_jobs_of_that_voice() {
    let before = base();
    let after = ids(&[(
        "recipe.yaml",
        &RECIPE.replace("stability: 0.5", "stability: 0.6"),
    )]);
    assert_eq!(
        changed(&before, &after),
        cells_where(&before, |c| c.1 == "warm")
    );
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
}

#[test]
fn changing_a_title_template_changes_every_job_of_that_template() {
    let before = base();
    let after = ids(&[(
        "recipe.yaml",
        &RECIPE.replace("The story of {{ topic }}", "The true story of {{ topic }}"),
    )]);
    assert_eq!(
        changed(&before, &after),
        cells_where(&before, |c| c.2 == "story")
    );
}

#[test]
fn plan_prints_the_same_ids_as_the_library() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(tmp.path(), "recipe.yaml", RECIPE);
    let out = Factory::new()
        .args(["--json", "plan", "recipe.yaml"])
        .current_dir(tmp.path())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let json = out.json();
    let from_plan: Ids = json["recipes"][0]["jobs"]
        .as_array()
        .expect("a job list")
        .iter()
        .map(|j| {
            let text = |k: &str| j[k].as_str().expect("a string").to_owned();
            ((text("topic"), text("voice"), text("template")), text("id"))
        })
        .collect();
    assert_eq!(from_plan, base());
}
