//! The layers of the host crate hold: a module imports only modules of lower
//! layers (`docs/architecture.md`, "Layers of the host crate"), and no two
//! modules import each other. Read from the sources, so a `use crate::` that
//! goes up fails here, with the file and the line, instead of being noticed
//! in a review.
//!
//! A test rather than crates of their own: the layers are folders of one crate
//! that share `pub(crate)` items and one `Cargo.toml`; splitting `model/` into
//! a crate (as hickory-dns splits its protocol) would check only the bottom
//! layer, while this checks every boundary, in the time of one file walk.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of `host/src` and its layer: a module may use
/// modules of a lower layer only, except the wiring (layer 4), whose modules
/// may use each other one way. The SIP plane and the two directory sources
/// (PostgreSQL, LDAP) share layer 3 and use none of each other: what they
/// share (the live tenant set, TLS client set-up) is below them.
const LAYERS: &[(&str, u8)] = &[
    ("model", 0),
    ("control", 1),
    ("metrics", 1),
    ("pki", 1),
    ("notify", 1),
    ("release", 1),
    ("spans", 1),
    ("policy", 2),
    ("hep", 2),
    ("telemetry", 2),
    ("sip", 3),
    ("db", 3),
    ("ldap", 3),
    ("tools", 4),
    ("scaffold", 4),
    ("watch", 4),
    ("logging", 4),
    ("admin", 4),
    ("server", 5),
    ("cli", 6),
];

/// The wiring layer, whose modules may use each other one way; above it the
/// server, which wires the planes, and the command line, which uses it all.
const WIRING: u8 = 4;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read host/src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src` belongs to (`lib`, `main` for the roots).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component").as_os_str().to_string_lossy().into_owned();
    first.strip_suffix(".rs").map_or(first.clone(), str::to_owned)
}

/// The modules a file's code (comments left out) names as `crate::<module>`,
/// with the first line naming each.
fn uses(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let name: String = rest[at + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            out.entry(name).or_insert(n + 1);
            rest = &rest[at + 7..];
        }
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer_and_none_import_each_other() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut problems = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        if from == "lib" || from == "main" {
            continue;
        }
        let Some(&from_layer) = layer.get(from.as_str()) else {
            problems.push(format!("{}: module `{from}` has no layer in this test's LAYERS", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).expect("read");
        for (to, line) in uses(&text) {
            if to == from {
                continue;
            }
            let Some(&to_layer) = layer.get(to.as_str()) else { continue };
            let at = format!("{}:{line}", file.strip_prefix(&src).unwrap_or(file).display());
            if to_layer > from_layer || (to_layer == from_layer && from_layer != WIRING) {
                problems.push(format!("{at}: `{from}` (layer {from_layer}) uses `{to}` (layer {to_layer})"));
            }
            edges.entry((from.clone(), to)).or_insert(at);
        }
    }
    for ((from, to), at) in &edges {
        if from < to
            && let Some(back) = edges.get(&(to.clone(), from.clone()))
        {
            problems.push(format!("`{from}` and `{to}` use each other: {at} and {back}"));
        }
    }
    let modules: BTreeSet<&str> = edges.keys().map(|(f, _)| f.as_str()).collect();
    assert!(modules.len() >= 8, "the walk found the modules: {modules:?}");
    assert!(problems.is_empty(), "layers broken:\n{}", problems.join("\n"));
}

#[test]
fn the_check_sees_an_upward_use_and_ignores_comments() {
    let found = uses("use crate::policy::x;\n// crate::server is only named\nlet a = crate::sip::y(); // crate::db\n");
    assert_eq!(found.into_iter().collect::<Vec<_>>(), [("policy".to_owned(), 1), ("sip".to_owned(), 3)]);
}
