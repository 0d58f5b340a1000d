//! The graph of which modules of a folder (`src/engine`, `src/tui`) name which
//! others in their `use` lines, and a cycle finder — so "modules depend on each other in one
//! direction" is a rule the build enforces rather than a hope.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module name (`verify`, `verify/boot`) → the modules of `folder` (under `src/`) its shipped
/// code names through `super::`, `self::` or `crate::FOLDER::`. A path names the deepest
/// module it reaches (`crate::engine::guest::machine::Machine` → `guest/machine`), and each
/// path of a `{…}` group counts.
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
        let mut uses = BTreeSet::new();
        for prefix in [crate_prefix.as_str(), "super::", "self::"] {
            for (at, _) in code.match_indices(prefix) {
                // The second `super::` of `super::super::` continues a path already read.
                let continues = code[..at].ends_with("::")
                    || code[..at]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if continues {
                    continue;
                }
                let mut rest = &code[at + prefix.len()..];
                let mut base = match prefix {
                    "super::" => parent_of(&module),
                    "self::" => module.clone(),
                    _ => String::new(),
                };
                while let Some(after) = rest.strip_prefix("super::") {
                    base = parent_of(&base);
                    rest = after;
                }
                let mut paths = Vec::new();
                use_tree(rest, &mut 0, &base, &mut paths);
                for path in paths {
                    let Some(target) = deepest_module(&path, &modules) else {
                        continue;
                    };
                    if target != module && !module.starts_with(&format!("{target}/")) {
                        uses.insert(target);
                    }
                }
            }
        }
        graph.insert(module, uses);
    }
    graph
}

/// The paths (`a/b/c`) a use tree names, read from `text[*at..]` and put after `path`:
/// `b::{c, d::e, self}` → `a/b/c`, `a/b/d/e`, `a/b`. A path ends at anything else (`*`,
/// `as name`, a call's parenthesis).
fn use_tree(text: &str, at: &mut usize, path: &str, paths: &mut Vec<String>) {
    let skip_space = |at: &mut usize| {
        *at += text[*at..].len() - text[*at..].trim_start().len();
    };
    if text[*at..].starts_with('{') {
        *at += 1;
        loop {
            skip_space(at);
            match text[*at..].chars().next() {
                None => return,
                Some('}') => {
                    *at += 1;
                    return;
                }
                Some(',') => *at += 1,
                Some(_) => {
                    use_tree(text, at, path, paths);
                    while let Some(c) = text[*at..].chars().next().filter(|c| !",}".contains(*c)) {
                        *at += c.len_utf8();
                    }
                }
            }
        }
    }
    let word: String = text[*at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    if word.is_empty() {
        return;
    }
    *at += word.len();
    let named = match (path, word.as_str()) {
        (_, "self") => path.to_string(),
        ("", _) => word,
        _ => format!("{path}/{word}"),
    };
    if text[*at..].starts_with("::") {
        *at += 2;
        use_tree(text, at, &named, paths);
    } else {
        paths.push(named);
    }
}

/// The longest leading part of `path` that is one of `modules`.
fn deepest_module(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let mut candidate = path;
    loop {
        if modules.contains(candidate) {
            return Some(candidate.to_string());
        }
        candidate = candidate.rsplit_once('/')?.0;
    }
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

#[test]
fn a_path_names_its_deepest_module_and_a_group_each_of_its_paths() {
    let modules = BTreeSet::from(["guest".to_string(), "guest/machine".to_string()]);
    let mut paths = Vec::new();
    use_tree(
        "guest::{machine::{self, Machine}, Qmp as _, *};",
        &mut 0,
        "",
        &mut paths,
    );
    assert_eq!(
        paths,
        ["guest/machine", "guest/machine/Machine", "guest/Qmp"]
    );
    let reached: Vec<_> = paths
        .iter()
        .filter_map(|path| deepest_module(path, &modules))
        .collect();
    assert_eq!(reached, ["guest/machine", "guest/machine", "guest"]);
    assert_eq!(deepest_module("steps/image", &modules), None);
}

/// The engine's modules use each other in one direction, and the events every step reports
/// know no step.
#[test]
fn engine_modules_depend_on_each_other_in_one_direction() {
    let graph = dependencies("engine");
    assert!(
        graph["steps/verify/boot"].contains("guest/machine"),
        "the walk sees uses: {graph:?}"
    );
    assert_eq!(cycle(&graph), None);
    for step in [
        "steps/image",
        "steps/install",
        "steps/configure",
        "steps/verify",
        "steps/publish",
        "workflow",
    ] {
        let inside = format!("{step}/");
        assert!(
            !graph["task"]
                .iter()
                .any(|used| *used == step || used.starts_with(&inside)),
            "task uses {step}"
        );
    }
}

/// The workbench's modules use each other in one direction: the theme and widgets know
/// nothing of the app's state, the screens draw it, the app drives the engine.
#[test]
fn tui_modules_depend_on_each_other_in_one_direction() {
    let graph = dependencies("tui");
    assert!(
        graph["screens/steps"].contains("app"),
        "the walk sees uses: {graph:?}"
    );
    assert_eq!(cycle(&graph), None);
    for below in ["theme", "widgets"] {
        assert!(!graph[below].contains("app"), "{below} uses app");
    }
}
