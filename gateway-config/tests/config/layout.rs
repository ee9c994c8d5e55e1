//! The crate's module graph has no circle: reading `src/`, every path to another module of the
//! crate (`crate::`, `super::`, `self::` and a module's own children, in `use` lines and in code)
//! is an edge, and no module reaches itself again. Items of the crate root (`lib.rs`) are only
//! re-exports for users: no module names one through `crate::Item`, so the root is no hub.
//!
//! Declaring a child (`mod x;`) is not a use of it; comments, strings and `#[cfg(test)] mod
//! tests` (which uses its parent by design) are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (`crate`, `crate::k8s`, ...) -> its source.
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    files
        .into_iter()
        .map(|file| {
            let relative = file.strip_prefix(src).expect("under src").with_extension("");
            let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
                parts.pop();
            }
            let name = std::iter::once("crate".to_string()).chain(parts).collect::<Vec<_>>().join("::");
            (name, code_only(&std::fs::read_to_string(&file).expect("read module")))
        })
        .collect()
}

/// The source without comments, string and char literals, and without its unit tests.
fn code_only(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    };
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !chars.get(i.wrapping_sub(1)).is_some_and(|p| p.is_alphanumeric())
        {
            // r"..." or r#"..."#
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|h| chars.get(j + h) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('a', '\n', '\u{1F600}'), else a lifetime.
            if next == Some('\\') {
                i += 2;
                while i < chars.len() && chars[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if chars.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                out.push(c);
                i += 1;
            }
            out.push(' ');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path that starts at `start` (`crate::a::{b, c::d}` gives `[crate, a, b]` and
/// `[crate, a, c, d]`), and where it ends.
fn paths_at(code: &[char], start: usize) -> (Vec<Vec<String>>, usize) {
    fn skip_ws(code: &[char], mut i: usize) -> usize {
        while code.get(i).is_some_and(|c| c.is_whitespace()) {
            i += 1;
        }
        i
    }
    fn tree(code: &[char], mut i: usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) -> usize {
        let mut path = prefix;
        loop {
            i = skip_ws(code, i);
            if code.get(i) == Some(&'{') {
                i += 1;
                loop {
                    i = skip_ws(code, i);
                    match code.get(i) {
                        Some('}') => return i + 1,
                        Some(',') => i += 1,
                        None => return i,
                        Some(_) => i = tree(code, i, path.clone(), out),
                    }
                }
            }
            let begin = i;
            while code.get(i).copied().is_some_and(is_ident) {
                i += 1;
            }
            if code.get(i) == Some(&'*') {
                path.push("*".to_string());
                out.push(path);
                return i + 1;
            }
            if begin == i {
                out.push(path);
                return i;
            }
            let segment: String = code[begin..i].iter().collect();
            if segment != "self" || path.is_empty() {
                path.push(segment);
            }
            let after = skip_ws(code, i);
            if code.get(after) == Some(&':') && code.get(after + 1) == Some(&':') {
                i = after + 2;
            } else {
                out.push(path);
                return i;
            }
        }
    }
    let mut out = Vec::new();
    let end = tree(code, start, Vec::new(), &mut out);
    (out, end)
}

fn parent(module: &str) -> &str {
    module.rsplit_once("::").map_or("crate", |(p, _)| p)
}

struct Graph {
    edges: BTreeMap<String, BTreeSet<String>>,
    /// (module, path) for paths that name an item of the crate root.
    root_items: Vec<(String, String)>,
}

fn graph(src: &Path) -> Graph {
    let modules = modules(src);
    let mut graph = Graph { edges: BTreeMap::new(), root_items: Vec::new() };
    for (file_module, code) in &modules {
        let code: Vec<char> = code.chars().collect();
        // Inline modules (`mod ser { use super::*; }`): paths inside resolve from them, and
        // count as their file's (one file, one node).
        let mut inline: Vec<(String, usize)> = Vec::new();
        let mut depth = 0;
        let mut i = 0;
        while i < code.len() {
            match code[i] {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if inline.last().is_some_and(|(_, d)| *d == depth) {
                        inline.pop();
                    }
                }
                _ => {}
            }
            let starts_ident = code[i].is_alphabetic() || code[i] == '_';
            let preceded = i > 0 && (is_ident(code[i - 1]) || (code[i - 1] == ':' && i > 1 && code[i - 2] == ':'));
            if !starts_ident || preceded {
                i += 1;
                continue;
            }
            let module = inline.last().map_or(file_module.clone(), |(m, _)| m.clone());
            let module = &module;
            let (paths, end) = paths_at(&code, i);
            if paths.len() == 1 && paths[0] == ["mod"] {
                let (name, after) = paths_at(&code, end);
                let open = code[after..].iter().position(|c| !c.is_whitespace()).map(|p| after + p);
                if let (Some(name), Some(open)) = (name.first().and_then(|p| p.first()), open)
                    && code[open] == '{'
                {
                    inline.push((format!("{module}::{name}"), depth));
                    depth += 1;
                    i = open + 1;
                    continue;
                }
            }
            // `pub(crate)`, `pub(super)`: a visibility, not a path.
            for path in paths.into_iter().filter(|p| p.len() > 1) {
                let (mut at, rest): (String, &[String]) = match path.first().map(String::as_str) {
                    Some("crate") => ("crate".to_string(), &path[1..]),
                    Some("self") => (module.clone(), &path[1..]),
                    Some("super") => {
                        let mut at = parent(module).to_string();
                        let mut rest = &path[1..];
                        while rest.first().map(String::as_str) == Some("super") {
                            at = parent(&at).to_string();
                            rest = &rest[1..];
                        }
                        (at, rest)
                    }
                    // A child module named bare (`scope::f()`, `use scope::X`).
                    Some(first) if path.len() > 1 && modules.contains_key(&format!("{module}::{first}")) => (module.clone(), &path[..]),
                    _ => continue,
                };
                let mut consumed = 0;
                for segment in rest {
                    let deeper = format!("{at}::{segment}");
                    if !modules.contains_key(&deeper) {
                        break;
                    }
                    at = deeper;
                    consumed += 1;
                }
                if at == "crate" && file_module != "crate" && consumed < rest.len() {
                    graph.root_items.push((file_module.clone(), path.join("::")));
                }
                if &at != file_module {
                    graph.edges.entry(file_module.clone()).or_default().insert(at);
                }
            }
            i = end.max(i + 1);
        }
    }
    graph
}

/// Strongly connected components of more than one module (Tarjan).
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            if !s.index.contains_key(w.as_str()) {
                visit(s, w);
                let low = s.low[w.as_str()].min(s.low[v]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w.as_str()) {
                let low = s.index[w.as_str()].min(s.low[v]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.out.push(component);
            }
        }
    }
    let mut s =
        State { edges, index: BTreeMap::new(), low: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), out: Vec::new() };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    s.out
}

fn src() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn no_module_of_the_crate_imports_itself_back() {
    let graph = graph(&src());
    let edges: Vec<String> =
        graph.edges.iter().map(|(from, to)| format!("{from} -> {}", to.iter().cloned().collect::<Vec<_>>().join(", "))).collect();
    // `cargo test -p gateway-config layout -- --nocapture` shows the graph.
    println!("{}", edges.join("\n"));
    let circles = circles(&graph.edges);
    assert!(
        circles.is_empty() && graph.root_items.is_empty(),
        "module circles: {circles:?}\nitems of the crate root named from modules: {:?}\nedges:\n{}",
        graph.root_items,
        edges.join("\n")
    );
}

/// The check itself finds circles: through `crate::`, `super::` and a bare child path.
#[test]
fn the_check_sees_a_circle_when_there_is_one() {
    let dir = std::env::temp_dir().join(format!("layout-check-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a;\nmod b;\n").unwrap();
    std::fs::write(dir.join("a/mod.rs"), "mod c;\nuse crate::b::{self, Thing};\npub fn f() { c::g(); }\n").unwrap();
    std::fs::write(
        dir.join("a/c.rs"),
        "// crate::nothing\npub(crate) fn g() { let _ = \"crate::b\"; super::super::b::h(); }\nmod inner {\n    use super::g;\n}\n",
    )
    .unwrap();
    std::fs::write(dir.join("b.rs"), "use crate::{Root, a::c};\npub fn h() {}\nmod inner {\n    use super::*;\n}\n").unwrap();
    let graph = graph(&dir);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(graph.edges["crate::a"], BTreeSet::from(["crate::a::c".to_string(), "crate::b".to_string()]));
    assert_eq!(graph.edges["crate::a::c"], BTreeSet::from(["crate::b".to_string()]));
    assert_eq!(graph.edges["crate::b"], BTreeSet::from(["crate".to_string(), "crate::a::c".to_string()]));
    assert_eq!(graph.root_items, [("crate::b".to_string(), "crate::Root".to_string())]);
    assert_eq!(circles(&graph.edges), [vec!["crate::a::c".to_string(), "crate::b".to_string()]]);
}
