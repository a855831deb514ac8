//! Image routes: list (filters), inspect, history, tag, remove, prune; the transfers
//! (pull, push, import, load, save) live in [`super::transfer`].
//!
//! Image names may hold slashes (`127.0.0.1:5000/team/app:1`), which clients do not
//! escape: `/images/127.0.0.1:5000/team/app:1/json` names the image by everything
//! between `images/` and the last segment.

use super::events::{label_matches, parse_filters};
use super::{flag, transfer, unix, Conn, Ctx, Reply};
use crate::http::Request;
use berth_image::{Images, Reference};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What this module serves (transfers included); `{id}` stands for an image name.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/images/json"),
    ("POST", "/images/create"),
    ("GET", "/images/{id}/json"),
    ("GET", "/images/{id}/history"),
    ("POST", "/images/{id}/tag"),
    ("DELETE", "/images/{id}"),
    ("POST", "/images/{id}/push"),
    ("GET", "/images/{id}/get"),
    ("GET", "/images/get"),
    ("POST", "/images/load"),
    ("POST", "/images/prune"),
];

/// Whether `req` uploads a body of any size (load, import).
pub fn streams_body(req: &Request) -> bool {
    let p = req.path.trim_end_matches('/');
    req.method == "POST"
        && (p == "/images/load" || (p == "/images/create" && req.query.contains_key("fromSrc")))
}

/// Dispatch within this module; `None` when the route is not ours, `Some(None)` when
/// the route answered on the connection.
pub fn route(
    ctx: &Arc<Ctx>,
    req: &Request,
    parts: &[&str],
    conn: &mut Conn,
) -> Option<Option<Reply>> {
    let m = req.method.as_str();
    // every image route but load (its body streams in) and pull (which checks its own)
    if !streams_body(req) && parts != ["images", "create"] {
        if let Err(r) = platform_ok(req) {
            return Some(Some(r));
        }
    }
    let reply = match (m, parts) {
        ("GET", ["images", "json"]) => list(ctx, req),
        ("POST", ["images", "create"]) => return Some(transfer::create(ctx, req, conn)),
        ("POST", ["images", "load"]) => return Some(transfer::load(ctx, req, conn)),
        ("POST", ["images", "prune"]) => prune(ctx, req),
        ("GET", ["images", "get"]) => {
            let names = req.query_all("names");
            return Some(transfer::save(ctx, &names, conn));
        }
        ("DELETE", ["images", rest @ ..]) if !rest.is_empty() => remove(ctx, req, &rest.join("/")),
        (_, ["images", rest @ .., last]) if !rest.is_empty() => {
            let name = rest.join("/");
            match (m, *last) {
                ("GET", "json") => inspect(ctx, &name),
                ("GET", "history") => history(ctx, &name),
                ("POST", "tag") => tag(ctx, req, &name),
                ("POST", "push") => return Some(transfer::push(ctx, req, &name, conn)),
                ("GET", "get") => return Some(transfer::save(ctx, &[name], conn)),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(Some(reply))
}

/// The `platform`/`platforms` query of docker 28's image routes (`linux/amd64`, or
/// the OCI platform as JSON: `{"os":"linux","architecture":"amd64"}`): berth stores
/// linux/amd64 images only, so any other platform is a clear 400.
fn platform_ok(req: &Request) -> Result<(), Reply> {
    for (k, v) in &req.query_list {
        if (k != "platform" && k != "platforms") || v.is_empty() {
            continue;
        }
        let (os, arch) = match serde_json::from_str::<Value>(v) {
            Ok(p) if p.is_object() => (
                p["os"].as_str().unwrap_or("linux").to_string(),
                p["architecture"].as_str().unwrap_or("amd64").to_string(),
            ),
            _ => {
                let mut it = v.split('/');
                (
                    it.next().unwrap_or("").to_string(),
                    it.next().unwrap_or("amd64").to_string(),
                )
            }
        };
        if os != "linux" || !matches!(arch.as_str(), "amd64" | "x86_64") {
            return Err(Reply::error(
                400,
                format!(
                    "platform {os}/{arch} is not supported: berth stores linux/amd64 images only"
                ),
            ));
        }
    }
    Ok(())
}

/// `name` parsed, or docker's 400 for a malformed reference.
pub(crate) fn reference(name: &str) -> Result<Reference, Reply> {
    Reference::parse(name)
        .map_err(|e| Reply::error(400, format!("invalid reference format {name:?}: {e}")))
}

/// The image store, or a 500 that says where it is.
pub(crate) fn store(ctx: &Ctx) -> Result<Images, Reply> {
    Images::open(&ctx.data_root).map_err(|e| {
        Reply::error(
            500,
            format!(
                "cannot open the image store under {}: {e}",
                ctx.data_root.display()
            ),
        )
    })
}

/// An image-library error as docker's status and message.
pub(crate) fn image_error(e: berth_image::Error) -> Reply {
    use berth_image::Error as E;
    let status = match &e {
        E::NotFound(_) => 404,
        E::Conflict(_) => 409,
        E::Invalid(_) | E::Reference(_) | E::Apply(_) | E::Manifest(_) | E::Json { .. } => 400,
        _ => 500,
    };
    Reply::error(status, e)
}

/// `*` and `?` glob over one string (`*` does not cross `/`), as docker's reference filter.
pub(crate) fn glob(pattern: &str, s: &str) -> bool {
    fn go(p: &[char], s: &[char]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some(('*', rest)) => (0..=s.len())
                .take_while(|&i| i == 0 || s[i - 1] != '/')
                .any(|i| go(rest, &s[i..])),
            Some(('?', rest)) => s.first().is_some_and(|c| *c != '/') && go(rest, &s[1..]),
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = s.chars().collect();
    go(&p, &s)
}

fn reference_matches(pattern: &str, tags: &[String]) -> bool {
    tags.iter().any(|t| {
        let repo = t
            .rsplit_once(':')
            .filter(|(_, tag)| !tag.contains('/'))
            .map_or(t.as_str(), |(r, _)| r);
        glob(pattern, t) || glob(pattern, repo)
    })
}

fn labels_of(images: &Images, id: &str) -> BTreeMap<String, String> {
    images
        .inspect(id)
        .ok()
        .and_then(|v| serde_json::from_value(v["Config"]["Labels"].clone()).ok())
        .unwrap_or_default()
}

fn list(ctx: &Ctx, req: &Request) -> Reply {
    let filters = match parse_filters(req) {
        Ok(f) => f,
        Err(e) => return Reply::error(400, e),
    };
    for k in filters.keys() {
        if !["reference", "dangling", "label", "before", "since"].contains(&k.as_str()) {
            return Reply::error(
                400,
                format!("invalid filter {k:?}: use reference, dangling, label, before or since"),
            );
        }
    }
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let all = match images.list() {
        Ok(l) => l,
        Err(e) => return image_error(e),
    };
    // before/since name an image: keep those created before/after it.
    let mut bounds = Vec::new();
    for (k, newer) in [("before", false), ("since", true)] {
        for name in filters.get(k).into_iter().flatten() {
            match all
                .iter()
                .find(|i| images.resolve(name).is_ok_and(|r| r.id == i.id))
            {
                Some(i) => bounds.push((i.created.clone(), newer)),
                None => return Reply::error(404, format!("no such image: {name}")),
            }
        }
    }
    let mut rows = Vec::new();
    for i in &all {
        let labels = labels_of(&images, &i.id);
        let keep = filters
            .get("reference")
            .is_none_or(|ps| ps.iter().any(|p| reference_matches(p, &i.tags)))
            && filters.get("dangling").is_none_or(|d| {
                d.iter()
                    .all(|d| matches!(d.as_str(), "true" | "1") == i.tags.is_empty())
            })
            && filters
                .get("label")
                .is_none_or(|ls| ls.iter().all(|l| label_matches(l, &labels)))
            && bounds.iter().all(|(t, newer)| {
                if *newer {
                    i.created > *t
                } else {
                    i.created < *t
                }
            });
        if !keep {
            continue;
        }
        // With a reference filter, only the names that match (as dockerd).
        let tags: Vec<&String> = match filters.get("reference") {
            Some(ps) => i
                .tags
                .iter()
                .filter(|t| {
                    ps.iter()
                        .any(|p| reference_matches(p, std::slice::from_ref(t)))
                })
                .collect(),
            None => i.tags.iter().collect(),
        };
        rows.push(json!({
            "Id": i.id, "ParentId": "", "RepoTags": tags, "RepoDigests": i.repo_digests,
            "Created": i.created.as_deref().map(unix).unwrap_or(0), "Size": i.size,
            "VirtualSize": i.size, "SharedSize": -1, "Labels": labels, "Containers": i.containers
        }));
    }
    Reply::json(200, &Value::Array(rows))
}

fn inspect(ctx: &Ctx, name: &str) -> Reply {
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match images.inspect(name) {
        Ok(v) => Reply::json(200, &v),
        Err(e) => image_error(e),
    }
}

fn history(ctx: &Ctx, name: &str) -> Reply {
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let (rows, tags) = match images
        .history(name)
        .and_then(|h| Ok((h, images.inspect(name)?)))
    {
        Ok((h, v)) => (h, v["RepoTags"].clone()),
        Err(e) => return image_error(e),
    };
    let out: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(n, r)| {
            json!({
                "Id": r.id, "Created": r.created.as_deref().map(unix).unwrap_or(0),
                "CreatedBy": r.created_by, "Tags": if n == 0 { tags.clone() } else { Value::Null },
                "Size": r.size, "Comment": r.comment,
            })
        })
        .collect();
    Reply::json(200, &Value::Array(out))
}

fn tag(ctx: &Ctx, req: &Request, name: &str) -> Reply {
    let Some(repo) = req.query.get("repo").filter(|r| !r.is_empty()) else {
        return Reply::error(
            400,
            "repo is required: POST /images/{name}/tag?repo=REPO&tag=TAG",
        );
    };
    let target = match req.query.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    };
    if let Err(reply) = reference(&target) {
        return reply;
    }
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    match images.tag(name, &target) {
        Ok(()) => {
            let id = images.resolve(&target).map(|i| i.id).unwrap_or_default();
            let r = Reference::parse(&target)
                .map(|r| r.familiar())
                .unwrap_or(target);
            ctx.events.publish("image", "tag", &id, [("name", r)]);
            Reply::empty(201)
        }
        Err(e) => image_error(e),
    }
}

fn remove(ctx: &Ctx, req: &Request, name: &str) -> Reply {
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let id = images.resolve(name).map(|i| i.id).unwrap_or_default();
    let lines = match images.remove(name, flag(req, "force")) {
        Ok(l) => l,
        Err(e) => return image_error(e),
    };
    let out: Vec<Value> = lines
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once(": ")?;
            let action = if k == "Untagged" { "untag" } else { "delete" };
            ctx.events.publish("image", action, &id, [("name", v)]);
            Some(json!({ k: v }))
        })
        .collect();
    Reply::json(200, &Value::Array(out))
}

/// `POST /images/prune`: dangling images (every unused one with `dangling=false`),
/// narrowed by the `until`, `label` and `label!` filters.
fn prune(ctx: &Ctx, req: &Request) -> Reply {
    let f = match super::system::PruneFilter::parse(req, &["until", "dangling"]) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let all = f
        .rest
        .get("dangling")
        .is_some_and(|d| d.iter().any(|d| matches!(d.as_str(), "false" | "0")));
    let images = match store(ctx) {
        Ok(i) => i,
        Err(r) => return r,
    };
    let selective = f.until.is_some() || f.has_labels();
    let (deleted, bytes) = if !selective {
        match images.prune(all) {
            Ok(r) => r,
            Err(e) => return image_error(e),
        }
    } else {
        let list = match images.list() {
            Ok(l) => l,
            Err(e) => return image_error(e),
        };
        let (mut ids, mut bytes) = (Vec::new(), 0);
        for i in list {
            let labels = labels_of(&images, &i.id);
            if (all || i.tags.is_empty())
                && i.containers == 0
                && f.matches(i.created.as_deref().map(unix), &labels)
                && images.remove(&i.id, true).is_ok()
            {
                bytes += i.size;
                ids.push(i.id);
            }
        }
        (ids, bytes)
    };
    for id in &deleted {
        ctx.events
            .publish("image", "delete", id, [("name", id.as_str())]);
    }
    ctx.events
        .publish("image", "prune", "", [("reclaimed", bytes.to_string())]);
    let rows: Vec<Value> = deleted.iter().map(|d| json!({ "Deleted": d })).collect();
    Reply::json(
        200,
        &json!({"ImagesDeleted": rows, "SpaceReclaimed": bytes}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_as_docker_reference_filters() {
        assert!(glob("busy*", "busybox"));
        assert!(glob("app:1.?", "app:1.0"));
        assert!(!glob("*", "127.0.0.1:5000/app"));
        assert!(glob("*/app", "127.0.0.1:5000/app"));
        assert!(reference_matches("app", &["app:1.0".into()]));
        assert!(reference_matches(
            "127.0.0.1:5000/app",
            &["127.0.0.1:5000/app:2".into()]
        ));
        assert!(!reference_matches("ap", &["app:1.0".into()]));
    }
}
