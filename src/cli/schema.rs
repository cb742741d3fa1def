//! `factory schema`: the JSON Schema generated from the recipe types.

use super::{CmdResult, Outcome, out};
use crate::recipe::schema;

pub fn run(project: bool) -> CmdResult {
    let value = if project {
        schema::project_schema()
    } else {
        schema::recipe_schema()
    };
    out(&schema::to_pretty(&value));
    Ok(Outcome::Ok)
}
