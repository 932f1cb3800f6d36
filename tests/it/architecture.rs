//! The layout's rules, checked on the source: no module imports its way back to itself,
//! no route imports another, and no crate below the HTTP layer knows HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 6] = [
    "crates/tessera-core/src",
    "crates/tessera-flow/src",
    "crates/tessera-server/src",
    "crates/tessera-store/src",
    "crates/tessera-guard/src",
    "crates/tessera-demo/src",
];

/// Every `.rs` file under `dir`, with its module path (`routes::token`; `crate` for lib.rs).
fn modules(dir: &Path) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in std::fs::read_dir(&next).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(dir).unwrap().with_extension("");
                let name = relative.to_string_lossy().replace('/', "::");
                let name = name.trim_end_matches("::mod").to_owned();
                let name = if name == "lib" {
                    "crate".to_owned()
                } else {
                    name
                };
                // Test modules may import anything; only the code above them counts.
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text
                    .split("#[cfg(test)]")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                found.push((name, code));
            }
        }
    }
    found
}

/// The modules `code` names through `crate::`, resolved to the longest existing module.
fn imports(code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
        let resolved = (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|candidate| known.contains(candidate))
            .unwrap_or_else(|| "crate".to_owned());
        out.insert(resolved);
    }
    out
}

fn cycle_from(
    start: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in graph.get(start).into_iter().flatten() {
        if let Some(at) = path.iter().position(|p| p == next) {
            let mut cycle = path[at..].to_vec();
            cycle.push(next.clone());
            return Some(cycle);
        }
        path.push(next.clone());
        if let Some(cycle) = cycle_from(next, graph, path) {
            return Some(cycle);
        }
        path.pop();
    }
    None
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let mut cycles = Vec::new();
    for dir in CRATES {
        let found = modules(&root().join(dir));
        let known: BTreeSet<String> = found.iter().map(|(name, _)| name.clone()).collect();
        let graph: BTreeMap<String, BTreeSet<String>> = found
            .iter()
            .map(|(name, code)| {
                let mut targets = imports(code, &known);
                targets.remove(name);
                (name.clone(), targets)
            })
            .collect();
        for start in graph.keys() {
            if let Some(cycle) = cycle_from(start, &graph, &mut vec![start.clone()]) {
                cycles.push(format!("{dir}: {}", cycle.join(" -> ")));
                break;
            }
        }
    }
    assert!(cycles.is_empty(), "import loops:\n{}", cycles.join("\n"));
}

#[test]
fn no_route_imports_another() {
    let dir = root().join("crates/tessera-server/src");
    let mut offenders = Vec::new();
    for (name, code) in modules(&dir) {
        let Some(route) = name.strip_prefix("routes::") else {
            continue;
        };
        for import in imports(&code, &modules(&dir).into_iter().map(|(n, _)| n).collect()) {
            if import.starts_with("routes::") && import != name {
                offenders.push(format!("routes::{route} imports {import}"));
            }
        }
        if code.contains("super::") {
            offenders.push(format!("routes::{route} reaches into super::"));
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}

#[test]
fn only_the_server_knows_http_and_only_the_store_knows_sql() {
    let mut offenders = Vec::new();
    for (dir, forbidden) in [
        (
            "crates/tessera-core/src",
            &["axum", "sqlx", "tokio", "reqwest"][..],
        ),
        (
            "crates/tessera-flow/src",
            &["axum", "sqlx", "http::", "reqwest"][..],
        ),
    ] {
        for (name, code) in modules(&root().join(dir)) {
            for word in forbidden {
                if code
                    .lines()
                    .any(|l| l.trim_start().starts_with("use ") && l.contains(word))
                {
                    offenders.push(format!("{dir} {name} uses {word}"));
                }
            }
        }
    }
    assert!(offenders.is_empty(), "{offenders:?}");
}
