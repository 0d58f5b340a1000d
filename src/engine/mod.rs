//! The engine: every step of an image's life, with no user-interface code. The TUI and the
//! headless CLI both drive it through [`workflow::Workflow`], which hands back one
//! [`task::Task`] per step and the events it reports. Modules depend on each other in one
//! direction only (a test below walks the `use` lines): `task`, `check` and `units` at the
//! bottom, the steps above them, `workflow` on top.

pub mod build;
pub mod check;
pub mod config;
pub mod configure;
pub mod console;
pub mod driver;

pub mod host;
pub mod image;
pub mod install;
pub mod iso;
pub mod keys;
pub mod machine;
pub mod process;
pub mod provision;
pub mod publish;
pub mod qcow2_header;
pub mod qmp;
pub mod recipe;
pub mod screen;
pub mod session;
pub mod ssh;
pub mod task;
pub mod temp_file;
#[cfg(test)]
mod test_images;
pub mod units;
pub mod vcpus;
pub mod verify;
pub mod workflow;

/// The steps of the workflow, in the order a person walks them.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Create,
    Install,
    Configure,
    Verify,
    Publish,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::Create,
        Step::Install,
        Step::Configure,
        Step::Verify,
        Step::Publish,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Step::Create => "Create",
            Step::Install => "Install",
            Step::Configure => "Configure",
            Step::Verify => "Verify",
            Step::Publish => "Publish",
        }
    }

    /// The lowercase name used on the command line, in session files and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::Install => "install",
            Step::Configure => "configure",
            Step::Verify => "verify",
            Step::Publish => "publish",
        }
    }

    /// One line on what the step does, for the step list and help.
    pub fn purpose(self) -> &'static str {
        match self {
            Step::Create => "a new, empty qcow2 v3 disk",
            Step::Install => "boot an installer ISO with the disk attached",
            Step::Configure => "passwordless root and the reference sshd_config",
            Step::Verify => "boot it exactly as the CI driver does and log in",
            Step::Publish => "upload to Djinn or install for the offline runner",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    /// Module name (`verify`, `verify/boot`) → the engine modules its code names.
    fn dependencies() -> BTreeMap<String, BTreeSet<String>> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
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
            // Tests may reach anywhere; only the shipped code has to keep the layering.
            let code = source.split("#[cfg(test)]").next().unwrap_or_default();
            let parent = module.rsplit_once('/').map_or("", |(parent, _)| parent);
            let is_folder = file.ends_with("mod.rs");
            let mut uses = BTreeSet::new();
            for (prefix, base) in [
                ("crate::engine::", String::new()),
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

    fn parent_of(module: &str) -> String {
        module
            .rsplit_once('/')
            .map_or(String::new(), |(p, _)| p.to_string())
    }

    /// A module that can reach itself again through the modules it uses.
    fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
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
    fn engine_modules_depend_on_each_other_in_one_direction() {
        let graph = dependencies();
        assert!(
            graph["verify/boot"].contains("machine"),
            "the walk sees uses: {graph:?}"
        );
        assert_eq!(cycle(&graph), None);
        // The events every step reports know no step.
        for step in [
            "image",
            "install",
            "configure",
            "verify",
            "publish",
            "workflow",
        ] {
            assert!(!graph["task"].contains(step), "task uses {step}");
        }
    }

    #[test]
    fn a_cycle_is_found() {
        let mut graph = BTreeMap::new();
        graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
        graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
        assert_eq!(cycle(&graph), Some(vec!["a".to_string(), "b".to_string()]));
    }
}
