//! `factory validate` on malformed recipes: one mistake class per fixture in
//! `tests/fixtures/invalid/`, each exiting 2 with every mistake at `path:line:col`. The
//! snapshots hold the whole stderr, so a change in wording or position shows in review.

use std::path::{Path, PathBuf};

use crate::support::{Factory, Output, copy_samples, repo};

fn invalid_dir() -> PathBuf {
    repo().join("tests/fixtures/invalid")
}

/// Runs `factory validate <fixture>` from the fixtures folder, so paths print short.
fn validate(fixture: &str) -> Output {
    Factory::new()
        .arg("validate")
        .arg(fixture)
        .current_dir(invalid_dir())
        .run()
}

/// `(line, column)` of every diagnostic headline: `error[code]: path:line:col: message`.
fn positions(stderr: &str, fixture: &str) -> Vec<(usize, usize)> {
    stderr
        .lines()
        .filter(|l| l.starts_with("error["))
        .map(|l| {
            let rest = l
                .split_once("]: ")
                .and_then(|(_, rest)| rest.strip_prefix(fixture))
                .and_then(|rest| rest.strip_prefix(':'))
                .unwrap_or_else(|| panic!("headline does not start with `{fixture}:`: {l}"));
            let mut parts = rest.splitn(3, ':');
            let mut number = || -> usize {
                parts
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("headline has no line:col: {l}"))
            };
            (number(), number())
        })
        .collect()
}

/// Fixtures that show several kinds of mistake on purpose; every other one shows one.
const SEVERAL_CLASSES: [&str; 2] = [
    "many-mistakes.yaml",
    "several-mistakes-types-and-templates.yaml",
];

fn check_invalid(name: &str, fixture: &str) {
    let out = validate(fixture);
    assert_eq!(out.code, 2, "`{fixture}` must be rejected:\n{}", out.stderr);
    assert_eq!(out.stdout, "", "validate prints diagnostics to stderr only");
    let text = std::fs::read_to_string(invalid_dir().join(fixture)).expect("read fixture");
    let lines = text.lines().count().max(1);
    let found = positions(&out.stderr, fixture);
    assert!(!found.is_empty(), "no diagnostic for `{fixture}`");
    for (line, col) in found {
        assert!(
            (1..=lines).contains(&line) && col >= 1,
            "`{fixture}:{line}:{col}` is outside the file"
        );
    }
    if !SEVERAL_CLASSES.contains(&fixture) {
        let codes = codes(&out.stderr);
        assert_eq!(
            codes.len(),
            1,
            "`{fixture}` should show one kind of mistake, not {codes:?}"
        );
    }
    let mut settings = insta::Settings::clone_current();
    settings.set_description(format!("factory validate {fixture}"));
    settings.set_omit_expression(true);
    settings.bind(|| insta::assert_snapshot!(name, out.stderr));
}

macro_rules! invalid {
    ($($test:ident => $fixture:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_invalid(stringify!($test), $fixture);
            }
        )*
        /// Every fixture above, so none is left without a test.
        const FIXTURES: &[&str] = &[$($fixture),*];
    };
}

invalid! {
    yaml_unclosed_flow_list => "yaml-unclosed-flow-list.yaml",
    yaml_bad_indentation => "yaml-bad-indentation.yaml",
    yaml_tab_indentation => "yaml-tab-indentation.yaml",
    empty_file => "empty.yaml",
    duplicate_key_top_level => "duplicate-key-top-level.yaml",
    duplicate_key_nested => "duplicate-key-nested.yaml",
    duplicate_keys_two_in_one_file => "duplicate-keys-two.yaml",
    unknown_key_top_level => "unknown-key-top-level.yaml",
    unknown_key_in_script => "unknown-key-script.yaml",
    unknown_key_in_footage => "unknown-key-footage.yaml",
    unknown_key_in_voice => "unknown-key-voice.yaml",
    wrong_type_string_for_integer => "wrong-type-string-for-integer.yaml",
    wrong_type_list_for_string => "wrong-type-list-for-string.yaml",
    wrong_type_mapping_for_list => "wrong-type-mapping-for-list.yaml",
    bad_enum_provider_typo => "bad-enum-provider-typo.yaml",
    bad_enum_inside_optional_section => "bad-enum-inside-optional-section.yaml",
    missing_version => "missing-version.yaml",
    missing_name => "missing-name.yaml",
    missing_batch => "missing-batch.yaml",
    missing_matrix_voice => "missing-matrix-voice.yaml",
    missing_title => "missing-title.yaml",
    unsupported_version => "unsupported-version.yaml",
    invalid_recipe_name => "invalid-name.yaml",
    undefined_voice => "undefined-voice.yaml",
    undefined_template => "undefined-template.yaml",
    template_syntax_single_line => "template-syntax-single-line.yaml",
    template_syntax_block_scalar => "template-syntax-block-scalar.yaml",
    undefined_template_variable => "undefined-template-variable.yaml",
    unknown_filter_once_with_a_hint => "unknown-filter.yaml",
    reserved_var_topic => "reserved-var.yaml",
    topics_file_missing => "topics-file-missing/recipe.yaml",
    topics_file_outside_recipe_dir => "topics-file-outside/recipe.yaml",
    topics_file_absolute => "topics-file-absolute.yaml",
    topics_file_empty => "topics-file-empty/recipe.yaml",
    secret_openrouter_key => "secret-openrouter-key.yaml",
    secret_telegram_token => "secret-telegram-token.yaml",
    secret_var_named_api_key => "secret-var-name.yaml",
    empty_batch => "empty-batch.yaml",
    exclude_removes_every_job => "exclude-removes-every-job.yaml",
    duplicate_job_same_topic_twice => "duplicate-job.yaml",
    espeak_voice_with_voice_id => "espeak-voice-with-voice-id.yaml",
    elevenlabs_voice_without_voice_id => "elevenlabs-without-voice-id.yaml",
    openrouter_script_without_model_or_prompt => "openrouter-without-model-or-prompt.yaml",
    fps_out_of_range => "fps-out-of-range.yaml",
    max_words_out_of_range => "max-words-out-of-range.yaml",
    clips_zero => "clips-zero.yaml",
    seconds_over_max_seconds => "seconds-over-max-seconds.yaml",
    video_size_not_vertical => "video-size-landscape.yaml",
    music_outside_recipe_dir => "music-outside/recipe.yaml",
    alias_bomb => "alias-bomb.yaml",
    deeply_nested => "deeply-nested.yaml",
    many_mistakes => "many-mistakes.yaml",
    several_mistakes_types_and_templates => "several-mistakes-types-and-templates.yaml",
}

fn yaml_files(dir: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).expect("read fixtures") {
        let path = entry.expect("fixture entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml") {
            let relative = path.strip_prefix(invalid_dir()).expect("inside fixtures");
            out.push(relative.to_string_lossy().into_owned());
        }
    }
}

#[test]
fn every_fixture_has_a_test() {
    let mut on_disk = Vec::new();
    yaml_files(&invalid_dir(), &mut on_disk);
    on_disk.sort();
    let mut listed: Vec<String> = FIXTURES.iter().map(|f| (*f).to_owned()).collect();
    listed.sort();
    assert_eq!(on_disk, listed, "fixtures on disk and tests disagree");
    assert!(listed.len() >= 35, "only {} fixtures", listed.len());
}

/// The mistake classes a fixture shows, by diagnostic code.
fn codes(stderr: &str) -> Vec<&str> {
    let mut codes: Vec<&str> = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("error[")?.split_once(']').map(|(c, _)| c))
        .collect();
    codes.sort_unstable();
    codes.dedup();
    codes
}

#[test]
fn a_file_with_many_mistakes_reports_them_all() {
    let out = validate("many-mistakes.yaml");
    let found = positions(&out.stderr, "many-mistakes.yaml");
    let codes = codes(&out.stderr);
    assert!(codes.len() >= 5, "only {codes:?}:\n{}", out.stderr);
    assert!(
        found.len() >= 8,
        "only {} problems:\n{}",
        found.len(),
        out.stderr
    );
    let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
    let mut sorted = lines.clone();
    sorted.sort_unstable();
    assert_eq!(lines, sorted, "diagnostics come in file order");
    assert!(
        out.stderr
            .ends_with(&format!("error: {} problems in 1 file\n", found.len())),
        "{}",
        out.stderr
    );
}

/// The column a template error names must land on the offending token inside the
/// string, not on the start of the string or the key. Returns the line and column.
fn assert_points_at(fixture: &str, token: &str) -> (String, usize) {
    let out = validate(fixture);
    let found = positions(&out.stderr, fixture);
    assert_eq!(found.len(), 1, "{}", out.stderr);
    let (line, col) = found[0];
    let text = std::fs::read_to_string(invalid_dir().join(fixture)).expect("read fixture");
    let source_line = text.lines().nth(line - 1).expect("line exists").to_owned();
    let at: String = source_line.chars().skip(col - 1).collect();
    assert!(
        at.starts_with(token),
        "`{fixture}:{line}:{col}` points at `{at}`, not at `{token}`"
    );
    (source_line, col)
}

#[test]
fn template_syntax_error_in_a_string_points_inside_it() {
    let (line, col) = assert_points_at("template-syntax-single-line.yaml", "}\"");
    let opening_quote = line.find('"').expect("a quoted title") + 1;
    assert!(col > opening_quote, "column {col} is not inside the string");
}

#[test]
fn template_syntax_error_in_a_block_scalar_points_inside_it() {
    assert_points_at("template-syntax-block-scalar.yaml", "endfi");
}

#[test]
fn undefined_template_variable_points_at_the_variable() {
    assert_points_at("undefined-template-variable.yaml", "ctaa");
}

#[test]
fn hostile_yaml_is_refused_with_plain_words() {
    // Time and memory are bounded by the parser's budgets (`recipe::yaml::MAX_*`), not
    // measured here: an unchecked alias bomb would expand to 10^9 values and never return.
    for fixture in ["alias-bomb.yaml", "deeply-nested.yaml"] {
        let out = validate(fixture);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            !out.stderr.contains("budget") && !out.stderr.contains('{'),
            "the message should be plain words: {}",
            out.stderr
        );
    }
}

#[test]
fn json_output_lists_every_diagnostic_with_its_position() {
    let fixture = "many-mistakes.yaml";
    let out = Factory::new()
        .args(["--json", "validate", fixture])
        .current_dir(invalid_dir())
        .run();
    assert_eq!(out.code, 2);
    let json = out.json();
    assert_eq!(json["valid"], false);
    let diags = json["diagnostics"].as_array().expect("a diagnostics list");
    let mut from_json = Vec::new();
    for d in diags {
        assert_eq!(d["path"], fixture, "{d}");
        assert!(d["code"].is_string() && d["message"].is_string(), "{d}");
        let line = d["line"].as_u64().expect("line is a number");
        let column = d["column"].as_u64().expect("column is a number");
        from_json.push((
            usize::try_from(line).expect("small"),
            usize::try_from(column).expect("small"),
        ));
    }
    // The same mistakes, at the same places, as the human output.
    let human = validate(fixture);
    assert_eq!(from_json, positions(&human.stderr, fixture));
}

#[test]
fn sample_recipes_are_valid() {
    let out = Factory::new()
        .args(["validate", "recipes/"])
        .current_dir(repo())
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stderr, "");
    let recipes = std::fs::read_dir(repo().join("recipes"))
        .expect("read recipes")
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.ends_with(".yaml") && name != "factory.yaml"
        })
        .count();
    assert!(
        out.stdout.starts_with(&format!("ok: {recipes} recipes, ")),
        "{}",
        out.stdout
    );
}

#[test]
fn validate_never_creates_the_state_dir() {
    let tmp = tempfile::tempdir().expect("temp dir");
    copy_samples(tmp.path());
    let flag_dir = tmp.path().join("state-by-flag");
    let env_dir = tmp.path().join("state-by-env");
    let runs = [
        Factory::new().args(["validate", "recipes"]),
        Factory::new()
            .arg("--state-dir")
            .arg(&flag_dir)
            .arg("validate"),
        Factory::new()
            .env("FACTORY_STATE_DIR", &env_dir)
            .args(["--json", "validate"]),
        Factory::new().args(["validate", "recipes/space-facts.yaml"]),
    ];
    for run in runs {
        let out = run.current_dir(tmp.path()).run();
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let invalid = Factory::new()
        .arg("validate")
        .arg(invalid_dir().join("many-mistakes.yaml"))
        .current_dir(tmp.path())
        .run();
    assert_eq!(invalid.code, 2);
    for dir in [tmp.path().join(".factory"), flag_dir, env_dir] {
        assert!(!dir.exists(), "validate created `{}`", dir.display());
    }
    assert!(!tmp.path().join("recipes/.factory").exists());
}
