//! The one integration-test binary. Each module covers one area; shared helpers live in
//! `support`.

mod job_id;
mod plan;
mod schema;
mod support;
mod validate;
