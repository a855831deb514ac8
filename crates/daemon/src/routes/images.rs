//! Image routes: list.

use super::{unix, Ctx, Reply};
use crate::http::Request;
use serde_json::{json, Value};

/// What this module serves.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/images/json")];

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(ctx: &Ctx, req: &Request, parts: &[&str]) -> Option<Reply> {
    Some(match (req.method.as_str(), parts) {
        ("GET", ["images", "json"]) => images(ctx),
        _ => return None,
    })
}

fn images(ctx: &Ctx) -> Reply {
    let list = match berth_image::Images::open(&ctx.data_root).and_then(|i| i.list()) {
        Ok(l) => l,
        Err(e) => return Reply::error(500, e),
    };
    let rows: Vec<Value> = list
        .iter()
        .map(|i| json!({
            "Id": i.id, "ParentId": "", "RepoTags": i.tags, "RepoDigests": i.repo_digests,
            "Created": i.created.as_deref().map(unix).unwrap_or(0), "Size": i.size, "VirtualSize": i.size,
            "SharedSize": -1, "Labels": {}, "Containers": i.containers
        }))
        .collect();
    Reply::json(200, &Value::Array(rows))
}
