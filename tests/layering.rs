//! The modules of `src/` form layers in the order data flows through them: a top-level module may use the ones
//! below it, never one that (directly or through others) uses it back. This test reads the `crate::` paths of
//! every module's product code (its `#[cfg(test)]` module left out) and fails on any cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

#[test]
fn top_level_modules_have_no_import_cycle() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert!(graph.len() > 10, "expected the crate's modules, found {graph:?}");
    assert_eq!(find_cycle(&graph), None, "modules of src/ import each other in a cycle");
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph = graph_of(&[("intake", "model"), ("batch", "intake"), ("ack", "batch"), ("intake", "ack")]);
    assert_eq!(find_cycle(&graph), Some(vec!["ack".into(), "batch".into(), "intake".into(), "ack".into()]));
    let layered = graph_of(&[("intake", "model"), ("batch", "intake"), ("ack", "batch"), ("ack", "model")]);
    assert_eq!(find_cycle(&layered), None);
}

#[test]
fn dependencies_are_read_from_use_lines_and_paths_but_not_comments_or_tests() {
    let source = "//! Uses [`crate::ack`] in a doc comment only.\n\
                  use crate::{batch::Batch, model::{self, path}};\n\
                  use crate::held::InFlight;\n\
                  fn f() { crate::telemetry::log_allowed(\"x\"); } // crate::worker\n\
                  #[cfg(test)]\n\
                  mod tests { use crate::fake::FakeCdn; }\n";
    let modules = ["ack", "batch", "fake", "held", "model", "telemetry", "worker"].map(String::from).into();
    let found = dependencies(source, &modules);
    assert_eq!(found, ["batch", "held", "model", "telemetry"].map(String::from).into());
}

/// Top-level modules declared in `lib.rs`, each with the other top-level modules its files name.
fn module_graph(src: &Path) -> Graph {
    let lib = fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: BTreeSet<String> = lib
        .lines()
        .filter_map(|line| line.trim().strip_prefix("pub mod")?.trim().strip_suffix(';').map(str::to_owned))
        .collect();
    modules
        .iter()
        .map(|module| {
            let mut uses = BTreeSet::new();
            for file in rust_files(src, module) {
                uses.extend(dependencies(&fs::read_to_string(&file).unwrap(), &modules));
            }
            uses.remove(module);
            (module.clone(), uses)
        })
        .collect()
}

/// `src/<module>.rs` and everything under `src/<module>/` but the `tests.rs` files of `#[cfg(test)] mod tests;`.
fn rust_files(src: &Path, module: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let single = src.join(format!("{module}.rs"));
    if single.exists() {
        files.push(single);
    }
    let mut dirs = vec![src.join(module)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("tests.rs") {
                files.push(path);
            }
        }
    }
    files
}

/// The top-level modules a file's product code names through `crate::`, in paths and in `use crate::{…}` groups.
fn dependencies(source: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let product = source.split("#[cfg(test)]\nmod tests").next().unwrap_or(source);
    let code: String = product.lines().map(|line| line.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let named: Vec<&str> = match rest.strip_prefix('{') {
            // A group: its top-level items are the names at brace depth 0.
            Some(group) => top_level_names(group),
            None => vec![leading_identifier(rest)],
        };
        found.extend(named.into_iter().filter(|name| modules.contains(*name)).map(str::to_owned));
    }
    found
}

fn top_level_names(group: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let (mut depth, mut expect_name) = (0usize, true);
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => expect_name = true,
            c if expect_name && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                names.push(leading_identifier(&group[i..]));
                expect_name = false;
            }
            _ => {}
        }
    }
    names
}

fn leading_identifier(text: &str) -> &str {
    let end = text.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(text.len());
    &text[..end]
}

/// A cycle as the list of modules along it, first and last the same; `None` when the graph is layered.
fn find_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &Graph, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut cycle = path[start..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (from, to) in edges {
        graph.entry((*from).to_owned()).or_default().insert((*to).to_owned());
        graph.entry((*to).to_owned()).or_default();
    }
    graph
}
