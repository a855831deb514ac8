//! Events: a small in-memory bus that route modules publish to with one line
//! (`ctx.events.publish("image", "tag", id, attrs)`), and `GET /events`, which replays
//! what happened since `since` and then follows new events until `until` (or until
//! the client goes away), as docker's JSON lines.

use super::{Conn, Ctx, Reply};
use crate::http::Request;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What this module serves.
pub const ROUTES: &[(&str, &str)] = &[("GET", "/events")];

/// How many past events are kept for `since`.
const KEEP: usize = 1024;

/// One event, as docker reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// container, image, volume, network, daemon, ...
    pub kind: String,
    /// create, start, die, pull, tag, delete, ...
    pub action: String,
    /// the object's id (or name, for volumes)
    pub id: String,
    /// `Actor.Attributes` (name, image, ...)
    pub attributes: BTreeMap<String, String>,
    /// nanoseconds since the epoch
    pub time_nano: i64,
}

impl Event {
    /// docker's JSON message for this event.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "Type": self.kind, "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local", "time": self.time_nano / 1_000_000_000, "timeNano": self.time_nano,
        });
        // The old fields, which docker still sends for containers and images.
        if self.kind == "container" || self.kind == "image" {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(img) = self.attributes.get("image") {
                v["from"] = json!(img);
            }
        }
        v
    }
}

/// The bus: the last [`KEEP`] events and a condition variable for followers.
#[derive(Default)]
pub struct Events {
    log: Mutex<(u64, VecDeque<Event>)>,
    cond: Condvar,
}

fn now_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Events {
    /// Record an event and wake the followers.
    pub fn publish<I, K, V>(&self, kind: &str, action: &str, id: &str, attributes: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let e = Event {
            kind: kind.into(),
            action: action.into(),
            id: id.into(),
            attributes: attributes
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            time_nano: now_nano(),
        };
        let mut log = super::lock(&self.log);
        log.0 += 1;
        log.1.push_back(e);
        if log.1.len() > KEEP {
            log.1.pop_front();
        }
        self.cond.notify_all();
    }

    /// Events after sequence number `after` (and the number of the last one), waiting
    /// up to `wait` for one to arrive when there is none.
    fn after(&self, after: u64, wait: Duration) -> (u64, Vec<Event>) {
        let mut log = super::lock(&self.log);
        if log.0 == after {
            log = self
                .cond
                .wait_timeout(log, wait)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let (seq, q) = (&log.0, &log.1);
        let new = usize::try_from(seq - after)
            .unwrap_or(usize::MAX)
            .min(q.len());
        (*seq, q.iter().skip(q.len() - new).cloned().collect())
    }

    /// Every kept event (and the sequence number of the last).
    pub fn snapshot(&self) -> (u64, Vec<Event>) {
        let log = super::lock(&self.log);
        (log.0, log.1.iter().cloned().collect())
    }
}

/// Dispatch within this module; `None` when the route is not ours.
pub fn route(ctx: &Ctx, req: &Request, parts: &[&str], conn: &mut Conn) -> Option<Option<Reply>> {
    match (req.method.as_str(), parts) {
        ("GET", ["events"]) => Some(stream(ctx, req, conn)),
        _ => None,
    }
}

/// A docker timestamp: `1700000000`, `1700000000.123456789`, or RFC 3339; in ns.
pub fn parse_time(s: &str) -> Option<i64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt();
    }
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    if !frac.is_empty() {
        if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        nanos = format!("{frac:0<9}").parse().ok()?;
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// A Go duration (`90s`, `1h30m`, `1.5h`, `300ms`) in nanoseconds (the engine's
/// parser, shared with `--health-*`).
pub fn parse_duration(s: &str) -> Option<i64> {
    berth_engine::health::parse_duration(s)
        .ok()
        .and_then(|n| i64::try_from(n).ok())
}

/// `until`/`since` of a prune: a time ([`parse_time`]) or a Go duration before now.
pub fn parse_time_or_ago(s: &str) -> Option<i64> {
    parse_time(s).or_else(|| parse_duration(s).map(|d| now_nano() - d))
}

/// docker's `filters` query value: `{"type":["image"]}` (or the old
/// `{"type":{"image":true}}`) as name → values.
pub fn parse_filters(req: &Request) -> Result<BTreeMap<String, Vec<String>>, String> {
    let Some(raw) = req.query.get("filters").filter(|f| !f.is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: Map<String, Value> = serde_json::from_str(raw).map_err(|e| {
        format!("invalid filters {raw:?}: {e}; use JSON like {{\"label\":[\"k=v\"]}}")
    })?;
    let mut out = BTreeMap::new();
    for (k, vals) in v {
        let list = match vals {
            Value::Array(a) => a
                .into_iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s),
                    other => Err(format!("invalid filter {k:?}: {other} is not a string")),
                })
                .collect::<Result<Vec<_>, _>>()?,
            Value::Object(o) => o.keys().cloned().collect(),
            other => return Err(format!("invalid filter {k:?}: {other} is not a list")),
        };
        out.insert(k, list);
    }
    Ok(out)
}

/// Whether a `label` filter value (`k` or `k=v`) matches `labels`.
pub fn label_matches(f: &str, labels: &BTreeMap<String, String>) -> bool {
    match f.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(f),
    }
}

fn matches(e: &Event, f: &BTreeMap<String, Vec<String>>) -> bool {
    let any =
        |k: &str, pred: &dyn Fn(&str) -> bool| f.get(k).is_none_or(|vs| vs.iter().any(|v| pred(v)));
    let name = e.attributes.get("name").map(String::as_str).unwrap_or("");
    let obj = |kind: &'static str| {
        move |v: &str| e.kind == kind && (e.id == v || e.id.starts_with(v) || name == v)
    };
    any("type", &|v| e.kind == v)
        && any("event", &|v| {
            e.action == v || e.action.starts_with(&format!("{v}:"))
        })
        && any("container", &obj("container"))
        && any("volume", &obj("volume"))
        && any("network", &obj("network"))
        && any("image", &|v| {
            (e.kind == "image" && (e.id == v || name == v))
                || e.attributes.get("image").is_some_and(|i| i == v)
        })
        && any("label", &|v| label_matches(v, &e.attributes))
}

fn stream(ctx: &Ctx, req: &Request, conn: &mut Conn) -> Option<Reply> {
    let time = |k: &str| -> Result<Option<i64>, String> {
        match req.query.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(s) => parse_time(s).map(Some).ok_or_else(|| {
                format!("invalid {k} {s:?}: give a unix timestamp (seconds[.nanoseconds]) or an RFC 3339 time")
            }),
        }
    };
    let (since, until, filters) = match (time("since"), time("until"), parse_filters(req)) {
        (Ok(s), Ok(u), Ok(f)) => (s, u, f),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return Some(Reply::error(400, e)),
    };
    let w = &mut *conn.writer;
    if crate::http::start_chunked(w, 200, "application/json").is_err() {
        return None;
    }
    let send = |w: &mut std::os::unix::net::UnixStream, e: &Event| {
        crate::http::write_chunk(w, format!("{}\n", e.to_json()).as_bytes())
    };
    let (mut seq, past) = ctx.events.snapshot();
    if let Some(s) = since {
        for e in past
            .iter()
            .filter(|e| e.time_nano >= s && until.is_none_or(|u| e.time_nano <= u))
        {
            if matches(e, &filters) && send(w, e).is_err() {
                return None;
            }
        }
    }
    // Without since/until, only new events; stop at until (or when the client leaves).
    loop {
        let now = now_nano();
        if until.is_some_and(|u| now > u) {
            break;
        }
        let wait = until.map_or(Duration::from_secs(1), |u| {
            Duration::from_nanos(u64::try_from(u - now).unwrap_or(0)).min(Duration::from_secs(1))
        });
        let (s, new) = ctx.events.after(seq, wait);
        seq = s;
        for e in new
            .iter()
            .filter(|e| until.is_none_or(|u| e.time_nano <= u))
        {
            if matches(e, &filters) && send(w, e).is_err() {
                return None;
            }
        }
        if new.is_empty() && crate::http::peer_closed(conn.reader) {
            return None;
        }
    }
    let _ = crate::http::end_chunked(w);
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_docker_forms() {
        assert_eq!(parse_time("12"), Some(12_000_000_000));
        assert_eq!(parse_time("12.5"), Some(12_500_000_000));
        assert_eq!(parse_time("1.000000001"), Some(1_000_000_001));
        assert_eq!(parse_time("1970-01-01T00:00:02Z"), Some(2_000_000_000));
        assert_eq!(parse_time("soon"), None);
        assert_eq!(parse_time("1.x"), None);
        assert_eq!(parse_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_duration("300ms"), Some(300_000_000));
        assert_eq!(parse_duration("3 days"), None);
        assert_eq!(parse_duration(""), None);
        assert!(parse_time_or_ago("24h").is_some_and(|t| t < now_nano()));
    }

    #[test]
    fn filters_by_type_event_and_label() {
        let e = Event {
            kind: "image".into(),
            action: "tag".into(),
            id: "sha256:ab".into(),
            attributes: [("name".to_string(), "app:1".to_string())].into(),
            time_nano: 1,
        };
        let f = |s: &str| -> BTreeMap<String, Vec<String>> {
            serde_json::from_str(s).expect("test input")
        };
        assert!(matches(&e, &f(r#"{"type":["image"],"event":["tag"]}"#)));
        assert!(!matches(&e, &f(r#"{"type":["container"]}"#)));
        assert!(matches(&e, &f(r#"{"image":["app:1"]}"#)));
        assert!(matches(&e, &f(r#"{"label":["name=app:1"]}"#)));
        assert!(!matches(&e, &f(r#"{"label":["name=other"]}"#)));
        assert_eq!(e.to_json()["status"], "tag");
    }

    #[test]
    fn the_bus_keeps_the_last_events_and_wakes_followers() {
        let bus = Events::default();
        for i in 0..(KEEP + 5) {
            bus.publish("volume", "create", &i.to_string(), [("driver", "local")]);
        }
        let (seq, all) = bus.snapshot();
        assert_eq!(seq as usize, KEEP + 5);
        assert_eq!(all.len(), KEEP);
        assert_eq!(all[0].id, "5");
        let (s2, new) = bus.after(seq - 2, Duration::ZERO);
        assert_eq!((s2, new.len()), (seq, 2));
        let (_, none) = bus.after(seq, Duration::from_millis(1));
        assert!(none.is_empty());
    }
}
