//! `cubed import --format emetrics FILE`: sends a dump to a running
//! collector's `POST /1.0/emetrics` in batches, with a progress bar (drawn
//! only on a terminal). A batch the collector refuses stops the import; the
//! error names the file's lines, and says how much was imported before.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::cli::{ImportArgs, ImportFormat};

/// One batch: the request body and the file line of each item.
struct Batch {
    body: String,
    lines: Vec<usize>,
    /// What `lines` count: "line" (NDJSON) or "element" (JSON array).
    unit: &'static str,
}

pub fn run(args: &ImportArgs) -> Result<String, String> {
    let ImportFormat::Emetrics = args.format;
    let batch = args.batch.max(1);
    let path = args.file.display().to_string();
    let mut file = File::open(&args.file).map_err(|e| format!("{path}: {e}"))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/1.0/emetrics", args.collector.trim_end_matches('/'));
    let started = Instant::now();
    let (mut items, mut events) = (0usize, 0u64);
    let mut send = |b: Batch, done_bytes: u64| -> Result<(), String> {
        let mut req = agent.post(&url).header("content-type", "application/json");
        if let Some(key) = &args.key {
            req = req.header("authorization", &format!("Bearer {key}"));
        }
        if let Some(s) = &args.service {
            req = req.header("fiware-service", s);
        }
        let mut resp = req
            .send(b.body.as_bytes())
            .map_err(|e| format!("{url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let answer: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status != 200 {
            bar.abandon();
            return Err(refused(&answer, &b, items, status));
        }
        items += b.lines.len();
        events += answer["events"].as_u64().unwrap_or(0);
        bar.set_position(done_bytes);
        bar.set_message(format!("{items} items"));
        Ok(())
    };

    let mut first = [0u8; 1];
    let mut reader = BufReader::new(&mut file);
    let starts_array = loop {
        let buf = reader.fill_buf().map_err(|e| format!("{path}: {e}"))?;
        match buf.iter().position(|b| !b.is_ascii_whitespace()) {
            Some(i) => {
                first[0] = buf[i];
                break first[0] == b'[';
            }
            None if buf.is_empty() => break false,
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    };
    if starts_array {
        // A JSON array: read it whole, send its elements in batches.
        let mut text = String::new();
        reader
            .read_to_string(&mut text)
            .map_err(|e| format!("{path}: {e}"))?;
        let elements: Vec<Box<RawValue>> =
            serde_json::from_str(&text).map_err(|e| format!("{path}: invalid JSON array: {e}"))?;
        let n = elements.len();
        for (k, chunk) in elements.chunks(batch).enumerate() {
            let body = format!(
                "[{}]",
                chunk.iter().map(|r| r.get()).collect::<Vec<_>>().join(",")
            );
            // Array elements have no lines; number them from 1.
            let lines = (k * batch + 1..=k * batch + chunk.len()).collect();
            let done = total * ((k * batch + chunk.len()) as u64) / (n.max(1) as u64);
            send(
                Batch {
                    body,
                    lines,
                    unit: "element",
                },
                done,
            )?;
        }
    } else {
        // Newline-delimited JSON: stream it.
        let mut current = Batch {
            body: String::new(),
            lines: Vec::new(),
            unit: "line",
        };
        let mut read = 0u64;
        let mut line = String::new();
        let mut number = 0usize;
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                break;
            }
            read += n as u64;
            number += 1;
            if line.trim().is_empty() {
                continue;
            }
            current.body.push_str(line.trim_end());
            current.body.push('\n');
            current.lines.push(number);
            if current.lines.len() >= batch {
                let full = std::mem::replace(
                    &mut current,
                    Batch {
                        body: String::new(),
                        lines: Vec::new(),
                        unit: "line",
                    },
                );
                send(full, read)?;
            }
        }
        if !current.lines.is_empty() {
            send(current, read)?;
        }
    }
    bar.finish();
    Ok(format!(
        "imported {items} items as {events} events from {path} in {:.1} s",
        started.elapsed().as_secs_f64()
    ))
}

/// The error of a refused batch, with the collector's reasons by file line.
fn refused(answer: &Value, batch: &Batch, imported: usize, status: u16) -> String {
    let mut out = format!(
        "the collector refused a batch ({status}): {}",
        answer["message"]
            .as_str()
            .or(answer["error"].as_str())
            .unwrap_or("no reason given")
    );
    for e in answer["errors"].as_array().into_iter().flatten() {
        let index = e["index"].as_u64().unwrap_or(0) as usize;
        let line = batch.lines.get(index).copied().unwrap_or(0);
        out.push_str(&format!(
            "\n  {} {line}: {}",
            batch.unit,
            e["error"].as_str().unwrap_or("invalid")
        ));
    }
    out.push_str(&format!(
        "\n{imported} items before this batch were imported; nothing of this batch was"
    ));
    out
}
