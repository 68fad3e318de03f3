//! ARCHITECTURE.md's dependency rules, checked against the source: fails
//! naming the file and the reference that breaks one. Reads `src/` only
//! (comments and `#[cfg(test)]` modules left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each module and what it may use besides itself, `limits` and `sync`.
const LAYERS: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("expr", &[]),
    ("plan", &["expr", "model"]),
    ("metric", &["plan", "expr", "model"]),
    ("ingest", &["model"]),
    ("telemetry", &["model"]),
    ("storage", &["metric", "plan", "expr", "model"]),
    (
        "service",
        &[
            "storage",
            "ingest",
            "telemetry",
            "metric",
            "plan",
            "expr",
            "model",
        ],
    ),
    (
        "server",
        &["service", "telemetry", "ingest", "model", "plan", "expr"],
    ),
];

/// Modules that may use any other: the library's own utilities and the
/// binary's composition root.
const FREE: &[&str] = &[
    "limits", "sync", "lib", "main", "cli", "serve", "import", "keys", "admin", "query",
];

/// Layers that do no IO and no async.
const PURE: &[&str] = &["model", "expr", "plan", "metric", "ingest", "telemetry"];

/// What a pure layer may not name.
const IMPURE: &[&str] = &["tokio", "warp", "fjall", "std::fs", "std::net", "async fn"];

/// The embedded backend's own formats.
const EMBEDDED_PRIVATE: &[&str] = &["keys", "blocks", "columns", "select", "cache"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file: without comments, and without its `#[cfg(test)]`
/// module (tests may reach across layers to check them).
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            // A `//` inside a string literal is rare in this code base and
            // only hides a reference, never invents one.
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `src/a/b.rs` → ["a", "b"]; `src/a/mod.rs` → ["a"]; `src/x.rs` → ["x"].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The `crate::a::b::c` paths a file names, including those in grouped
/// imports (`use crate::a::{b, c::d}` gives `a::b` and `a::c::d`).
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // e.g. `$crate::`
        }
        out.extend(expand(rest));
    }
    out
}

/// Expands the path at the start of `s` (after `crate::`).
fn expand(s: &str) -> Vec<String> {
    let head: String = s
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
        .collect();
    let head = head.trim_end_matches(':').to_owned();
    let after = &s[head.len()..];
    let after = after.trim_start_matches(':');
    if !after.starts_with('{') || !s[head.len()..].starts_with("::") {
        return vec![head];
    }
    // A group: split its top-level items.
    let mut depth = 0;
    let mut items = Vec::new();
    let mut item = String::new();
    for c in after[1..].chars() {
        match c {
            '{' => {
                depth += 1;
                item.push(c);
            }
            '}' if depth == 0 => break,
            '}' => {
                depth -= 1;
                item.push(c);
            }
            ',' if depth == 0 => items.push(std::mem::take(&mut item)),
            _ => item.push(c),
        }
    }
    items.push(item);
    let mut out = Vec::new();
    for it in items {
        let it = it.trim();
        if it.is_empty() {
            continue;
        }
        for sub in expand(it) {
            out.push(if sub.is_empty() || sub == "self" {
                head.clone()
            } else {
                format!("{head}::{sub}")
            });
        }
    }
    out
}

struct Source {
    module: Vec<String>,
    file: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    files
        .iter()
        .map(|f| Source {
            module: module_path(&src, f),
            file: f
                .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                .unwrap_or(f)
                .display()
                .to_string(),
            code: code(&std::fs::read_to_string(f).expect("read")),
        })
        .collect()
}

#[test]
fn layers_point_down() {
    let layers: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for s in sources() {
        let top = s.module[0].as_str();
        seen.insert(top.to_owned());
        if FREE.contains(&top) {
            continue;
        }
        let Some(allowed) = layers.get(top) else {
            broken.push(format!(
                "{}: module `{top}` has no place in LAYERS (add it here and to ARCHITECTURE.md)",
                s.file
            ));
            continue;
        };
        for path in crate_paths(&s.code) {
            let used = path.split("::").next().unwrap_or("");
            if used == top || FREE.contains(&used) || allowed.contains(&used) {
                continue;
            }
            broken.push(format!("{}: `{top}` may not use crate::{path}", s.file));
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    // The table covers what is there (a sanity check of the reader itself).
    for m in [
        "model", "expr", "plan", "metric", "storage", "service", "server",
    ] {
        assert!(seen.contains(m), "no source files found for {m}");
    }
}

#[test]
fn transport_never_touches_storage() {
    let mut broken = Vec::new();
    for s in sources().into_iter().filter(|s| s.module[0] == "server") {
        for path in crate_paths(&s.code) {
            if path.starts_with("storage") {
                broken.push(format!("{}: crate::{path}", s.file));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn the_embedded_backends_formats_are_its_own() {
    let mut broken = Vec::new();
    for s in sources() {
        if s.module
            .starts_with(&["storage".to_owned(), "embedded".to_owned()])
        {
            continue;
        }
        for path in crate_paths(&s.code) {
            for private in EMBEDDED_PRIVATE {
                if path.starts_with(&format!("storage::embedded::{private}")) {
                    broken.push(format!("{}: crate::{path}", s.file));
                }
            }
        }
        // The binary reaches the library as `cubed::`.
        for private in EMBEDDED_PRIVATE {
            if s.code
                .contains(&format!("cubed::storage::embedded::{private}"))
            {
                broken.push(format!("{}: cubed::storage::embedded::{private}", s.file));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn pure_layers_do_no_io() {
    let mut broken = Vec::new();
    for s in sources() {
        if !PURE.contains(&s.module[0].as_str()) {
            continue;
        }
        for word in IMPURE {
            if s.code.contains(word) {
                broken.push(format!("{}: names `{word}`", s.file));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

#[test]
fn sibling_files_do_not_import_each_other() {
    let all = sources();
    // (parent module, file) → siblings it names.
    let mut edges: BTreeMap<(Vec<String>, String), BTreeSet<String>> = BTreeMap::new();
    let files: BTreeSet<Vec<String>> = all.iter().map(|s| s.module.clone()).collect();
    for s in &all {
        let Some((name, parent)) = s.module.split_last() else {
            continue;
        };
        let mut named = BTreeSet::new();
        // `super::x` from a file names its sibling `x`.
        let mut rest = s.code.as_str();
        while let Some(i) = rest.find("super::") {
            rest = &rest[i + "super::".len()..];
            for p in expand(rest) {
                named.insert(p.split("::").next().unwrap_or("").to_owned());
            }
        }
        for path in crate_paths(&s.code) {
            let parts: Vec<&str> = path.split("::").collect();
            if parts.len() > parent.len() && parts[..parent.len()] == *parent {
                named.insert(parts[parent.len()].to_owned());
            }
        }
        named.remove(name);
        named.retain(|sib| {
            let mut m = parent.to_vec();
            m.push(sib.clone());
            files.contains(&m)
        });
        edges.insert((parent.to_vec(), name.clone()), named);
    }
    let mut broken = Vec::new();
    for ((parent, a), named) in &edges {
        for b in named {
            let back = edges
                .get(&(parent.clone(), b.clone()))
                .is_some_and(|n| n.contains(a));
            if back && a < b {
                broken.push(format!(
                    "{}: `{a}` and `{b}` import each other",
                    if parent.is_empty() {
                        "src".to_owned()
                    } else {
                        format!("src/{}", parent.join("/"))
                    }
                ));
            }
        }
    }
    assert!(broken.is_empty(), "{}", broken.join("\n"));
}

/// The reader itself: grouped imports, nested groups, `self`.
#[test]
fn crate_paths_reads_grouped_imports() {
    let got = crate_paths(
        "use crate::a::{b, c::{d, e}, self};\nlet x = crate::f::g(1); $crate::h;\nuse crate::storage::{\n    EventStore,\n    Order,\n};",
    );
    assert_eq!(
        got,
        [
            "a::b",
            "a::c::d",
            "a::c::e",
            "a",
            "f::g",
            "storage::EventStore",
            "storage::Order"
        ]
    );
}
