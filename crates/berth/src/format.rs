//! Docker's output conventions: human sizes and durations, padded tables, and a
//! small Go-template subset for `--format` / `-f`.

use serde_json::Value;

/// Decimal sizes with three significant digits, like docker: `4.26MB`, `0B`.
pub fn human_size(n: u64) -> String {
    human_size_digits(n, 3)
}

/// Decimal sizes with `digits` significant digits (docker's `units.HumanSize` takes
/// four: `1.987MB`; its `HumanSizeWithPrecision(…, 3)` three).
pub fn human_size_digits(n: u64, digits: usize) -> String {
    let units = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut x = n as f64;
    let mut i = 0;
    while x >= 1000.0 && i < units.len() - 1 {
        x /= 1000.0;
        i += 1;
    }
    let whole = if x >= 100.0 {
        3
    } else if x >= 10.0 {
        2
    } else {
        1
    };
    let s = format!("{x:.prec$}", prec = digits.saturating_sub(whole));
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", units[i])
}

/// `2 months ago`, as docker prints it.
pub fn human_since(rfc3339: Option<&str>) -> String {
    let Some(t) = rfc3339.and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok()) else {
        return "N/A".into();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    format!("{} ago", human_duration(secs))
}

fn human_duration(s: i64) -> String {
    let plural = |n: i64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match s {
        s if s < 1 => "Less than a second".into(),
        s if s < 60 => plural(s, "second"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => plural(s / 60, "minute"),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => plural(s / 3600, "hour"),
        s if s < 14 * 86400 => plural(s / 86400, "day"),
        s if s < 90 * 86400 => plural(s / (7 * 86400), "week"),
        s if s < 730 * 86400 => plural(s / (30 * 86400), "month"),
        s => plural(s / (365 * 86400), "year"),
    }
}

/// Renders rows as columns the way docker's tabwriter does (minimum cell width 10,
/// padding 3).
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = (widths[i] + 3).max(10)));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Docker's loop over the names of an `inspect`: one request per name, the
/// documents found, and exit code 1 (the error on stderr) for each name that failed.
pub fn inspect_each<E: std::fmt::Display>(
    names: &[String],
    mut get: impl FnMut(&str) -> Result<Value, E>,
) -> (Vec<Value>, i32) {
    let mut docs = Vec::new();
    let mut code = 0;
    for n in names {
        match get(n) {
            Ok(v) => docs.push(v),
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    (docs, code)
}

/// Docker's loop over the names of an `rm`: each name printed once removed (`remove`
/// says whether it removed anything), each failure on stderr (the others still go),
/// exit code 1 when any failed.
pub fn remove_each(
    names: &[String],
    mut remove: impl FnMut(&str) -> berth_client::Result<bool>,
) -> i32 {
    let mut code = 0;
    for n in names {
        match remove(n) {
            Ok(true) => println!("{n}"),
            Ok(false) => {}
            Err(e) => {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    code
}

/// Print `inspect` documents: each through `--format` when given, else all as one
/// pretty JSON array (docker's output). Returns 1 on a template error, else `code`.
pub fn print_docs(docs: &[Value], format: Option<&str>, code: i32) -> i32 {
    match format {
        Some(f) => {
            for d in docs {
                match render(f, d) {
                    Ok(s) => println!("{s}"),
                    Err(err) => {
                        eprintln!("template: {err:#}");
                        return 1;
                    }
                }
            }
        }
        None => println!(
            "{}",
            serde_json::to_string_pretty(docs).unwrap_or_else(|_| "[]".into())
        ),
    }
    code
}

/// docker's `--format` for a list command: `table` (the default columns), `table
/// TEMPLATE` (columns with the headers that `headers` renders), `json` (one JSON
/// document a line) or a bare TEMPLATE (one line a row, no header).
pub fn format_rows(
    f: &str,
    default_table: &str,
    headers: &Value,
    rows: &[Value],
) -> anyhow::Result<String> {
    let f = f.trim_start();
    if f == "json" {
        return Ok(rows
            .iter()
            .map(|r| serde_json::to_string(r).unwrap_or_default() + "\n")
            .collect());
    }
    let (is_table, tpl) = match f.strip_prefix("table") {
        Some("") => (true, default_table),
        Some(rest) => (true, rest.trim_start()),
        None => (false, f),
    };
    let render = |v: &Value| render(tpl, v).map_err(|e| anyhow::anyhow!("template: {e:#}"));
    let mut lines = Vec::new();
    if is_table {
        lines.push(render(headers)?);
    }
    for r in rows {
        lines.push(render(r)?);
    }
    if !is_table {
        return Ok(lines.iter().map(|l| format!("{l}\n")).collect());
    }
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| l.split('\t').map(String::from).collect())
        .collect();
    Ok(table(&rows))
}

/// Renders a Go-template subset against `v`: `{{.A.B}}`, `{{json .A}}`, `{{json .}}`,
/// `\t` and `\n` escapes. Values print the way Go's templates print them.
pub fn render(template: &str, v: &Value) -> anyhow::Result<String> {
    let t = template.replace("\\t", "\t").replace("\\n", "\n");
    let mut out = String::new();
    let mut rest = t.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .ok_or_else(|| anyhow::anyhow!("template {template:?}: unclosed action"))?;
        let action = rest[start + 2..start + end].trim();
        out.push_str(&action_value(action, v, template)?);
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn action_value(action: &str, v: &Value, template: &str) -> anyhow::Result<String> {
    let (json, path) = match action.strip_prefix("json ") {
        Some(p) => (true, p.trim()),
        None => (false, action),
    };
    let path = path
        .strip_prefix('.')
        .ok_or_else(|| anyhow::anyhow!("template {template:?}: unsupported action {{{{{action}}}}}; use {{{{.Field}}}} or {{{{json .Field}}}}"))?;
    let mut cur = v;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        cur = lookup(cur, key).ok_or_else(|| {
            anyhow::anyhow!("template: can't evaluate field {key} in {template:?}")
        })?;
    }
    Ok(if json {
        serde_json::to_string(cur)?
    } else {
        go_print(cur)
    })
}

fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let o = v.as_object()?;
    o.get(key)
        .or_else(|| {
            o.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .or(Some(&Value::Null))
}

/// Go's `fmt` rendering of a decoded JSON value.
pub fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<no value>".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_print).collect::<Vec<_>>().join(" ")),
        Value::Object(o) => {
            let mut items: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect();
            items.sort();
            format!("map[{}]", items.join(" "))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(4_261_000), "4.26MB");
        assert_eq!(human_size(12_340_000), "12.3MB");
        assert_eq!(human_size(123_400_000), "123MB");
        assert_eq!(human_size(2_000_000_000), "2GB");
    }

    #[test]
    fn four_digit_sizes_like_units_human_size() {
        assert_eq!(human_size_digits(1_987_000, 4), "1.987MB");
        assert_eq!(human_size_digits(1_990_000, 4), "1.99MB");
        assert_eq!(human_size_digits(123_456, 4), "123.5kB");
        assert_eq!(human_size_digits(0, 4), "0B");
    }

    #[test]
    fn durations_like_docker() {
        assert_eq!(human_duration(30), "30 seconds");
        assert_eq!(human_duration(90), "About a minute");
        assert_eq!(human_duration(3 * 86400), "3 days");
        assert_eq!(human_duration(65 * 86400), "9 weeks");
        assert_eq!(human_duration(200 * 86400), "6 months");
    }

    #[test]
    fn templates() {
        let v = json!({"Id": "sha256:ab", "Config": {"Cmd": ["sh", "-c", "x"], "Env": null, "Labels": {"b": "2", "a": "1"}}});
        assert_eq!(render("{{.Id}}", &v).unwrap(), "sha256:ab");
        assert_eq!(render("{{.Config.Cmd}}", &v).unwrap(), "[sh -c x]");
        assert_eq!(
            render("{{json .Config.Cmd}}", &v).unwrap(),
            r#"["sh","-c","x"]"#
        );
        assert_eq!(
            render("{{.Config.Labels}}\\t{{.Config.Env}}", &v).unwrap(),
            "map[a:1 b:2]\t<no value>"
        );
        assert!(render("{{.Id", &v).is_err());
    }

    #[test]
    fn list_formats_follow_docker() {
        let head = json!({"A": "COL A", "B": "COL B"});
        let rows = [json!({"A": "x", "B": 1}), json!({"A": "yy", "B": 2})];
        let def = "{{.A}}\\t{{.B}}";
        assert_eq!(
            format_rows("table", def, &head, &rows).unwrap(),
            "COL A     COL B\nx         1\nyy        2\n"
        );
        assert_eq!(
            format_rows("table {{.B}}", def, &head, &rows).unwrap(),
            "COL B\n1\n2\n"
        );
        assert_eq!(
            format_rows("{{.A}}-{{.B}}", def, &head, &rows).unwrap(),
            "x-1\nyy-2\n"
        );
        assert_eq!(
            format_rows("json", def, &head, &rows[..1]).unwrap(),
            "{\"A\":\"x\",\"B\":1}\n"
        );
        assert!(format_rows("{{.A", def, &head, &rows).is_err());
    }

    #[test]
    fn tables_pad_with_three_spaces() {
        let t = table(&[
            vec!["A".into(), "BB".into()],
            vec!["CCC".into(), "D".into()],
        ]);
        assert_eq!(t, "A         BB\nCCC       D\n");
        let t = table(&[
            vec!["REPOSITORY".into(), "TAG".into(), "IMAGE ID".into()],
            vec!["busybox".into(), "latest".into(), "a416a98b71e2".into()],
        ]);
        assert_eq!(
            t,
            "REPOSITORY   TAG       IMAGE ID\nbusybox      latest    a416a98b71e2\n"
        );
    }
}
