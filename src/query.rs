//! `cubed query`: a metric from a running evaluator (`GET /1.0/metric`),
//! printed as a table with a sparkline per series, as CSV or as JSON; and
//! `cubed tail`: the events of an event expression as they arrive (a live
//! WebSocket `/1.0/event/get`). Expressions are parsed here first, so a bad
//! one is shown with a caret under where it went wrong, without a request.

use std::io::Write;

use serde_json::{Value, json};

use crate::cli::{QueryArgs, QueryFormat, TailArgs, TailFormat};

/// The step in milliseconds: `10s`, `1m`, `5m`, `1h`, `1d` or a number.
fn step_ms(step: &str) -> Result<i64, String> {
    let s = step.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("invalid step {step:?}: use 10s, 1m, 5m, 1h, 1d or milliseconds"))?;
    let unit_ms = match unit {
        "" | "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "invalid step {step:?}: use 10s, 1m, 5m, 1h, 1d or milliseconds"
            ));
        }
    };
    n.checked_mul(unit_ms)
        .ok_or_else(|| format!("invalid step {step:?}"))
}

/// The expression with a caret under character `offset`.
fn caret(expr: &str, offset: usize) -> String {
    let pad: String = expr
        .chars()
        .take(offset)
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!("  {expr}\n  {pad}^")
}

const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// One character per value, scaled between the series' least and largest
/// finite values; a space where a value is undefined.
fn sparkline(values: &[Option<f64>]) -> String {
    let finite: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|x| x.is_finite())
        .collect();
    let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    values
        .iter()
        .map(|v| match v {
            Some(x) if x.is_finite() => {
                let i = if hi > lo {
                    ((x - lo) / (hi - lo) * 7.0).round() as usize
                } else {
                    0
                };
                BARS[i.min(7)]
            }
            _ => ' ',
        })
        .collect()
}

fn number(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

/// A refused expression, with a caret where the parser stopped.
fn refused(expr: &str, e: &cubed::plan::PlanError) -> String {
    match e {
        cubed::plan::PlanError::Parse(p) => {
            format!("invalid expression: {e}\n{}", caret(expr, p.offset()))
        }
        _ => format!("invalid expression: {e}"),
    }
}

pub fn run(args: &QueryArgs) -> Result<String, String> {
    if let Err(e) = cubed::plan::compile_metric(&args.expr) {
        return Err(refused(&args.expr, &e));
    }
    let step = step_ms(&args.step)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(600)))
        .build()
        .into();
    let url = format!("{}/1.0/metric", args.url.trim_end_matches('/'));
    let mut req = agent
        .get(&url)
        .query("expression", &args.expr)
        .query("step", step.to_string())
        .query("limit", args.limit.to_string())
        // Without a start, Cube's rule gives the latest `limit` bins of
        // a range from 0.
        .query("start", args.start.as_deref().unwrap_or("0"));
    if let Some(s) = &args.stop {
        req = req.query("stop", s);
    }
    if let Some(key) = &args.key {
        req = req.header("authorization", &format!("Bearer {key}"));
    }
    if let Some(s) = &args.service {
        req = req.header("fiware-service", s);
    }
    let mut resp = req.call().map_err(|e| format!("{url}: {e}"))?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("{url}: {e}"))?;
    let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status != 200 {
        let error = answer["error"].as_str().unwrap_or("error");
        let message = answer["message"].as_str().unwrap_or_default();
        return Err(format!("{status} {error}: {message}"));
    }
    let bins = answer.as_array().cloned().unwrap_or_default();
    Ok(match args.format {
        QueryFormat::Json => format!("{answer}\n"),
        QueryFormat::Csv => csv(&bins),
        QueryFormat::Table => table(&bins),
    })
}

/// A bin's group: `Some(name)` (`other` for the rest row), `None` ungrouped.
fn group_of(bin: &Value) -> Option<String> {
    match bin.get("group")? {
        Value::String(g) => Some(g.clone()),
        _ => Some("other".to_owned()),
    }
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv(bins: &[Value]) -> String {
    let grouped = bins.iter().any(|b| b.get("group").is_some());
    let mut out = String::from(if grouped {
        "time,group,value\n"
    } else {
        "time,value\n"
    });
    for b in bins {
        let time = b["time"].as_str().unwrap_or_default();
        let value = b.get("value").map(number).unwrap_or_default();
        match group_of(b) {
            Some(g) if grouped => out.push_str(&format!("{time},{},{value}\n", csv_cell(&g))),
            _ => out.push_str(&format!("{time},{value}\n")),
        }
    }
    out
}

/// A column per series (one, or one per group), then a sparkline each.
fn table(bins: &[Value]) -> String {
    let mut series: Vec<String> = Vec::new();
    let mut times: Vec<String> = Vec::new();
    let mut cells: std::collections::HashMap<(String, String), Option<f64>> = Default::default();
    for b in bins {
        let time = b["time"].as_str().unwrap_or_default().to_owned();
        let name = group_of(b).unwrap_or_else(|| "value".to_owned());
        if !series.contains(&name) {
            series.push(name.clone());
        }
        if times.last() != Some(&time) && !times.contains(&time) {
            times.push(time.clone());
        }
        cells.insert((time, name), b.get("value").and_then(Value::as_f64));
    }
    if times.is_empty() {
        return "no bins\n".to_owned();
    }
    let mut rows = vec![
        std::iter::once("time".to_owned())
            .chain(series.iter().cloned())
            .collect::<Vec<_>>(),
    ];
    for t in &times {
        let mut row = vec![t.clone()];
        for s in &series {
            let v = cells.get(&(t.clone(), s.clone())).copied().flatten();
            row.push(v.map_or("-".to_owned(), cubed::model::js::number_string));
        }
        rows.push(row);
    }
    let mut out = crate::admin::table(&rows);
    out.push('\n');
    let width = series.iter().map(|s| s.chars().count()).max().unwrap_or(0);
    for s in &series {
        let values: Vec<Option<f64>> = times
            .iter()
            .map(|t| cells.get(&(t.clone(), s.clone())).copied().flatten())
            .collect();
        out.push_str(&format!("{s:<width$}  {}\n", sparkline(&values)));
    }
    out
}

/// `cubed tail`: follows a live event stream until interrupted, the
/// socket closes, or `--count` events were printed.
pub fn tail(args: &TailArgs) -> Result<(), String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    if let Err(e) = cubed::plan::compile_event(&args.expr) {
        return Err(refused(&args.expr, &e));
    }
    let base = args.url.trim_end_matches('/');
    let url = match base.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}/1.0/event/get"),
        Some((_, rest)) => format!("ws://{rest}/1.0/event/get"),
        None => format!("ws://{base}/1.0/event/get"),
    };
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| format!("{url}: {e}"))?;
    let header = |v: &str| {
        v.parse::<tokio_tungstenite::tungstenite::http::HeaderValue>()
            .map_err(|e| format!("invalid header value: {e}"))
    };
    if let Some(key) = &args.key {
        request
            .headers_mut()
            .insert("authorization", header(&format!("Bearer {key}"))?);
    }
    if let Some(s) = &args.service {
        request.headers_mut().insert("fiware-service", header(s)?);
    }
    let mut ask = json!({ "expression": args.expr });
    if let Some(s) = &args.start {
        ask["start"] = json!(s);
    }
    if let Some(d) = args.delay {
        ask["delay"] = json!(d);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let (mut ws, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        ws.send(Message::text(ask.to_string()))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let mut printed = 0u64;
        let mut out = std::io::stdout().lock();
        while args.count.is_none_or(|n| printed < n) {
            let Some(msg) = ws.next().await else { break };
            let msg = msg.map_err(|e| format!("{url}: {e}"))?;
            let text = match msg {
                Message::Text(t) => t,
                Message::Close(frame) => {
                    return match frame {
                        Some(f) if !f.reason.is_empty() => {
                            Err(format!("the server closed the stream: {}", f.reason))
                        }
                        _ => Ok(()),
                    };
                }
                _ => continue,
            };
            let event: Value = serde_json::from_str(&text)
                .map_err(|e| format!("not JSON from the server: {e}"))?;
            if let Some(error) = event.get("error").and_then(Value::as_str) {
                let message = event["message"].as_str().unwrap_or_default();
                return Err(format!("{error}: {message}"));
            }
            let line = match args.format {
                TailFormat::Json => text.to_string(),
                TailFormat::Text => {
                    let time = event["time"].as_str().unwrap_or_default();
                    match event.get("data") {
                        Some(d) => format!("{time}  {d}"),
                        None => time.to_owned(),
                    }
                }
            };
            // A closed pipe (`cubed tail … | head`) ends the tail quietly.
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(());
            }
            printed += 1;
        }
        let _ = ws.close(None).await;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(step_ms("10s"), Ok(10_000));
        assert_eq!(step_ms("1m"), Ok(60_000));
        assert_eq!(step_ms("1d"), Ok(86_400_000));
        assert_eq!(step_ms("300000"), Ok(300_000));
        assert!(step_ms("1w").is_err());
        assert!(step_ms("m").is_err());
    }

    #[test]
    fn sparklines_scale_between_least_and_largest() {
        assert_eq!(sparkline(&[Some(0.0), Some(7.0), None, Some(3.5)]), "▁█ ▅");
        assert_eq!(sparkline(&[Some(2.0), Some(2.0)]), "▁▁");
    }

    #[test]
    fn the_caret_points_at_the_offset() {
        assert_eq!(caret("sum(x", 5), "  sum(x\n       ^");
    }
}
