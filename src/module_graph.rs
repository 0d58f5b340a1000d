//! Test support: the graph of which modules of a folder (`src/engine`, `src/tui`) name which
//! others in their `use` lines, and a cycle finder — so "modules depend on each other in one
//! direction" is a rule the build enforces rather than a hope.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name (`verify`, `verify/boot`) → the modules of `folder` (under `src/`) its shipped
/// code names through `super::` or `crate::FOLDER::`.
pub fn dependencies(folder: &str) -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(folder);
    let crate_prefix = format!("crate::{folder}::");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let name = |path: &Path| {
        let relative = path.strip_prefix(&root).unwrap().with_extension("");
        let text = relative.display().to_string();
        text.strip_suffix("/mod").unwrap_or(&text).to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|f| name(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = name(file);
        let source = std::fs::read_to_string(file).unwrap();
        let code = shipped(&source);
        let parent = module.rsplit_once('/').map_or("", |(parent, _)| parent);
        let is_folder = file.ends_with("mod.rs");
        let mut uses = BTreeSet::new();
        for (prefix, base) in [
            (crate_prefix.as_str(), String::new()),
            (
                "super::",
                if is_folder {
                    parent_of(&module)
                } else {
                    parent.to_string()
                },
            ),
        ] {
            for (at, _) in code.match_indices(prefix) {
                let rest = &code[at + prefix.len()..];
                let word: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                let target = if base.is_empty() {
                    word
                } else {
                    format!("{base}/{word}")
                };
                if modules.contains(&target)
                    && target != module
                    && !module.starts_with(&format!("{target}/"))
                {
                    uses.insert(target);
                }
            }
        }
        graph.insert(module, uses);
    }
    graph
}

/// The source up to its inline test module: tests may reach anywhere, only the shipped code
/// has to keep the layering (a `#[cfg(test)] mod name;` declaration does not end it).
fn shipped(source: &str) -> &str {
    let mut from = 0;
    while let Some(at) = source[from..].find("#[cfg(test)]") {
        let start = from + at;
        let rest = source[start + "#[cfg(test)]".len()..].trim_start();
        let opens_a_module = rest
            .strip_prefix("mod ")
            .and_then(|after| after.find(['{', ';']).map(|end| &after[end..=end] == "{"))
            .unwrap_or(false);
        if opens_a_module {
            return &source[..start];
        }
        from = start + 1;
    }
    source
}

fn parent_of(module: &str) -> String {
    module
        .rsplit_once('/')
        .map_or(String::new(), |(p, _)| p.to_string())
}

/// A module that can reach itself again through the modules it uses.
pub fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        module: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|m| m == module) {
            return Some(path[start..].to_vec());
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_string());
        for next in graph.get(module).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(module.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn a_cycle_is_found() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(cycle(&graph), Some(vec!["a".to_string(), "b".to_string()]));
}
