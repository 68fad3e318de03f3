//! `cubed stats` and `cubed retention`: the admin API of a running server
//! (`/admin/stats`, `/admin/retention`), printed as tables.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::{AdminArgs, RetentionCommand};

pub fn done(r: Result<String, String>) -> ExitCode {
    match r {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One call; the JSON answer, or the server's error as text.
fn call(args: &AdminArgs, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into();
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let resp = match (method, body) {
        ("PUT", Some(b)) => with(args, agent.put(&url))
            .header("content-type", "application/json")
            .send(b.to_string().as_bytes()),
        _ => with(args, agent.get(&url)).call(),
    };
    let mut resp = resp.map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status != 200 {
        let error = answer["error"].as_str().unwrap_or("error");
        let message = answer["message"].as_str().unwrap_or_default();
        return Err(format!("{url}: {status} {error}: {message}"));
    }
    Ok(answer)
}

/// The key and service headers.
fn with<B>(args: &AdminArgs, mut req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
    if let Some(key) = &args.key {
        req = req.header("authorization", &format!("Bearer {key}"));
    }
    if let Some(s) = args.service.as_deref().filter(|s| *s != "default-service") {
        req = req.header("fiware-service", s);
    }
    req
}

/// Columns padded to their widest cell, the first left-aligned, the rest right-aligned.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

pub fn stats(args: &AdminArgs) -> Result<String, String> {
    let answer = call(args, "GET", "/admin/stats", None)?;
    if args.json {
        return Ok(format!("{answer}\n"));
    }
    let mut rows = vec![vec![
        "type".to_owned(),
        "events".to_owned(),
        "bytes".to_owned(),
        "oldest".to_owned(),
        "retention".to_owned(),
    ]];
    for t in answer["types"].as_array().into_iter().flatten() {
        rows.push(
            ["type", "events", "bytes", "oldest", "retention"]
                .iter()
                .map(|k| text(&t[*k]))
                .collect(),
        );
    }
    rows.push(vec![
        "total".to_owned(),
        text(&answer["events"]),
        text(&answer["bytes"]),
        String::new(),
        String::new(),
    ]);
    Ok(format!(
        "service {}\n{}",
        text(&answer["service"]),
        table(&rows)
    ))
}

pub fn retention(args: &AdminArgs, command: Option<RetentionCommand>) -> Result<String, String> {
    let answer = match command.unwrap_or(RetentionCommand::Show) {
        RetentionCommand::Show => call(args, "GET", "/admin/retention", None)?,
        RetentionCommand::Set {
            event_type,
            horizon,
        } => call(
            args,
            "PUT",
            "/admin/retention",
            Some(json!({"type": event_type, "retention": horizon})),
        )?,
        RetentionCommand::Unset { event_type } => call(
            args,
            "PUT",
            "/admin/retention",
            Some(json!({"type": event_type, "retention": null})),
        )?,
    };
    if args.json {
        return Ok(format!("{answer}\n"));
    }
    let mut rows = vec![vec![
        "type".to_owned(),
        "retention".to_owned(),
        "from".to_owned(),
    ]];
    for t in answer["types"].as_array().into_iter().flatten() {
        rows.push(
            ["type", "retention", "from"]
                .iter()
                .map(|k| text(&t[*k]))
                .collect(),
        );
    }
    let overrides = answer["overrides"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Ok(format!(
        "service {}: --retention {}, --self-retention {}, overrides: {}\n{}",
        text(&answer["service"]),
        text(&answer["retention"]),
        text(&answer["self_retention"]),
        if overrides.is_empty() {
            "none".to_owned()
        } else {
            overrides
        },
        table(&rows)
    ))
}
