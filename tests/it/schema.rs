//! The committed JSON Schemas: they match what `factory schema` generates from the types,
//! and an independent validator (boon, not the `jsonschema` crate the product uses)
//! accepts every sample recipe and rejects broken ones.

use std::path::Path;

use serde_json::Value;
use tiktok_factory::recipe::yaml;

use crate::support::{Factory, repo};

/// Fails with the first differing line and the command that regenerates the file.
fn assert_committed(args: &[&str], committed: &str) {
    let out = Factory::new().args(args).current_dir(repo()).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let on_disk = std::fs::read_to_string(repo().join(committed)).expect("read schema");
    if out.stdout != on_disk {
        let line = out
            .stdout
            .lines()
            .zip(on_disk.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "the end".to_owned(), |i| format!("line {}", i + 1));
        panic!(
            "`{committed}` is out of date with the recipe types (first difference at {line}); \
             run `cargo run -- {} > {committed}`",
            args.join(" ")
        );
    }
}

#[test]
fn committed_recipe_schema_matches_the_types() {
    assert_committed(&["schema"], "schemas/recipe.schema.json");
}

#[test]
fn committed_project_schema_matches_the_types() {
    assert_committed(&["schema", "--project"], "schemas/project.schema.json");
}

/// A compiled committed schema and the means to validate with it.
struct Validator {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Validator {
    fn committed(file: &str) -> Self {
        let text = std::fs::read_to_string(repo().join("schemas").join(file)).expect("read");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        let url = format!("file:///schemas/{file}");
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V7);
        compiler.add_resource(&url, schema).expect("add the schema");
        let index = compiler
            .compile(&url, &mut schemas)
            .unwrap_or_else(|e| panic!("`{file}` does not compile: {e:#}"));
        Self { schemas, index }
    }

    fn check(&self, instance: &Value) -> Result<(), String> {
        self.schemas
            .validate(instance, self.index)
            .map_err(|e| format!("{e}"))
    }
}

/// A YAML file as the JSON value editors validate, read by the crate's own parser.
fn as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("read recipe");
    yaml::parse(&text)
        .unwrap_or_else(|e| panic!("`{}` is not YAML: {e:?}", path.display()))
        .value
}

fn sample_recipes() -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(repo().join("recipes"))
        .expect("read recipes")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "yaml")
                && p.file_name().is_some_and(|n| n != "factory.yaml")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn sample_recipes_validate_against_the_committed_schema() {
    let validator = Validator::committed("recipe.schema.json");
    let recipes = sample_recipes();
    assert!(!recipes.is_empty(), "no sample recipes found");
    for path in recipes {
        if let Err(e) = validator.check(&as_json(&path)) {
            panic!("`{}` does not validate:\n{e}", path.display());
        }
    }
}

#[test]
fn sample_project_file_validates_against_the_committed_schema() {
    let validator = Validator::committed("project.schema.json");
    let path = repo().join("recipes/factory.yaml");
    if let Err(e) = validator.check(&as_json(&path)) {
        panic!("`{}` does not validate:\n{e}", path.display());
    }
}

/// Breaks a valid recipe in one way.
fn broken(edit: impl FnOnce(&mut Value)) -> Value {
    let mut recipe = as_json(&repo().join("recipes/history-shorts.yaml"));
    edit(&mut recipe);
    recipe
}

#[test]
fn broken_recipes_do_not_validate() {
    let validator = Validator::committed("recipe.schema.json");
    let cases: [(&str, Value); 6] = [
        (
            "unknown top-level key",
            broken(|r| {
                r["voises"] = Value::Object(serde_json::Map::new());
            }),
        ),
        (
            "provider typo",
            broken(|r| r["templates"]["quick"]["script"]["provider"] = "ofline".into()),
        ),
        (
            "string for an integer",
            broken(|r| r["templates"]["quick"]["footage"]["clips"] = "two".into()),
        ),
        (
            "missing batch",
            broken(|r| {
                r.as_object_mut().expect("a mapping").remove("batch");
            }),
        ),
        (
            "missing title",
            broken(|r| {
                r["templates"]["story"]
                    .as_object_mut()
                    .expect("a mapping")
                    .remove("title");
            }),
        ),
        (
            "mapping for the voice list",
            broken(|r| r["batch"]["matrix"]["voice"] = serde_json::json!({ "narrator": true })),
        ),
    ];
    for (what, recipe) in cases {
        assert!(
            validator.check(&recipe).is_err(),
            "a recipe with a {what} validates"
        );
    }
}

#[test]
fn values_validate_rejects_fail_the_schema_too() {
    // Each of these used to pass the schema and fail only in `validate`: an editor now
    // underlines them as they are typed.
    let validator = Validator::committed("recipe.schema.json");
    let cases: [(&str, Value); 8] = [
        ("version 7", broken(|r| r["version"] = 7.into())),
        (
            "a landscape size",
            broken(|r| {
                r["templates"]["quick"]["video"] = serde_json::json!({ "size": "640x480" });
            }),
        ),
        (
            "an espeak rate of 10000",
            broken(|r| {
                r["voices"] =
                    serde_json::json!({ "fast": { "provider": "espeak", "rate": 10000 } });
            }),
        ),
        (
            "nine words on screen",
            broken(|r| r["templates"]["story"]["captions"]["max_words"] = 9.into()),
        ),
        (
            "an upper-case name",
            broken(|r| r["name"] = "History Shorts".into()),
        ),
        (
            "no clips",
            broken(|r| r["templates"]["quick"]["footage"]["clips"] = 0.into()),
        ),
        (
            "120 frames per second",
            broken(|r| r["templates"]["quick"]["video"] = serde_json::json!({ "fps": 120 })),
        ),
        (
            "a temperature of 3",
            broken(|r| r["templates"]["quick"]["script"]["temperature"] = 3.0.into()),
        ),
    ];
    for (what, recipe) in cases {
        assert!(
            validator.check(&recipe).is_err(),
            "a recipe with {what} validates"
        );
    }
}

#[test]
fn the_schemas_name_themselves_state_defaults_and_give_examples() {
    for (file, id) in [
        ("recipe.schema.json", "urn:tiktok-factory:schema:recipe:1"),
        ("project.schema.json", "urn:tiktok-factory:schema:project:1"),
    ] {
        let text = std::fs::read_to_string(repo().join("schemas").join(file)).expect("read");
        let schema: Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(schema["$id"], id, "{file}");
        assert_eq!(schema["properties"]["version"]["const"], 1, "{file}");
        let video = &schema["definitions"]["VideoDef"]["properties"];
        assert_eq!(video["size"]["default"], "1080x1920", "{file}");
        assert_eq!(video["size"]["pattern"], "^1080x1920$", "{file}");
        assert_eq!(video["fps"]["minimum"], 23, "{file}");
        assert_eq!(video["fps"]["maximum"], 60, "{file}");
        let voice = &schema["definitions"]["VoiceDef"]["properties"];
        assert_eq!(voice["voice"]["examples"][0], "en-us", "{file}");
        assert_eq!(voice["rate"]["maximum"], 450, "{file}");
    }
    let recipe: Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("schemas/recipe.schema.json")).expect("read"),
    )
    .expect("JSON");
    assert_eq!(
        recipe["properties"]["name"]["pattern"],
        "^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"
    );
}
