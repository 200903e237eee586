//! The documentation points only at things that exist: every relative link and every repository
//! path named in `README.md` and `docs/*.md` resolves, and the README stays short.
//!
//! What is checked, in each of those files (fenced code blocks are skipped: they hold commands and
//! output, not references):
//!
//! - **Links.** Every Markdown link or image `[text](dest)` whose destination is not a URL
//!   (`http:`, `https:`, `mailto:`) must name an existing file or directory, relative to the
//!   document (or to the repository root when it starts with `/`). A `#anchor` on a link to a
//!   `.md` file, or a bare `#anchor` within the same file, must match one of that file's headings,
//!   slugged as GitHub does: lower case, every character that is not a letter, digit, space,
//!   `-` or `_` dropped, each space turned into `-`, and a repeated slug numbered `-1`, `-2`, ...
//! - **Paths in inline code.** A code span is taken for a repository path when its first word,
//!   less a leading `./`, starts with a top-level entry of the repository (`src/...`,
//!   `scripts/test.sh`, `spin.toml`, `.github/...`) and holds no wildcard or placeholder
//!   (`*`, `?`, `<`, `>`, `{`, `}`, `$`, `...`, `…`). That path must exist (a trailing `/` asks for
//!   a directory). A span that is a bare `NAME.md` must name a file at the root or in `docs/`.
//!   Generated paths (`target/`, and Spin's and ion-host's `.spin/` state) are never checked;
//!   neither is anything that does not start with a top-level entry (`app.py`, `deploy.yml`,
//!   `/app/ion-host`, `cargo test ...`).
//! - **Length.** `README.md` has at most 300 lines.
//!
//! Every problem is listed, with its file and line, before the test fails.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The README's budget, in lines.
const README_MAX_LINES: usize = 300;

/// Paths that builds and runs create; the docs may name them without their existing.
const GENERATED: &[&str] = &["target", ".spin"];

/// Characters that make a code span a pattern or a placeholder rather than one path.
const NOT_A_PATH: &[&str] = &["*", "?", "<", ">", "{", "}", "$", "...", "…"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `README.md` and every `docs/*.md`, as paths relative to the root.
fn documents(root: &Path) -> Vec<String> {
    let mut docs: Vec<String> = fs::read_dir(root.join("docs"))
        .expect("read docs/")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    docs.sort();
    docs.insert(0, "README.md".to_owned());
    docs
}

/// The repository's top-level entries, less `.git` and the generated ones.
fn top_level(root: &Path) -> HashSet<String> {
    fs::read_dir(root)
        .expect("read the repository root")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name != ".git" && !GENERATED.contains(&name.as_str()))
        .collect()
}

/// The text with every fenced code block (its fences included) blanked, line count kept.
fn without_fences(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut fence: Option<(char, usize)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        let marker = trimmed.chars().next().filter(|c| *c == '`' || *c == '~');
        let run = marker.map_or(0, |m| trimmed.chars().take_while(|c| *c == m).count());
        let blank = match (fence, marker) {
            (None, Some(m)) if run >= 3 => {
                fence = Some((m, run));
                true
            }
            (Some((m, n)), Some(c)) if c == m && run >= n && trimmed[run..].trim().is_empty() => {
                fence = None;
                true
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if blank {
            out.push_str(if line.ends_with('\n') { "\n" } else { "" });
        } else {
            out.push_str(line);
        }
    }
    out
}

/// Inline code spans: (byte offset of the opening backticks, byte length with them, content).
fn code_spans(text: &str) -> Vec<(usize, usize, String)> {
    let bytes = text.as_bytes();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let run = bytes[i..].iter().take_while(|b| **b == b'`').count();
        let body = i + run;
        // The closing run: exactly as many backticks.
        let mut j = body;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let n = bytes[j..].iter().take_while(|b| **b == b'`').count();
                if n == run {
                    close = Some(j);
                    break;
                }
                j += n;
            } else {
                j += 1;
            }
        }
        match close {
            Some(end) => {
                let content = text[body..end].replace('\n', " ").trim().to_owned();
                spans.push((i, end + run - i, content));
                i = end + run;
            }
            None => i = body,
        }
    }
    spans
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset].matches('\n').count() + 1
}

/// A heading's anchor as GitHub makes it (before numbering repeats).
fn slug(heading: &str) -> String {
    // What is rendered: link text without its destination, code without backticks.
    let mut text = String::new();
    let mut rest = heading;
    while let Some(at) = rest.find("](") {
        text.push_str(&rest[..at]);
        rest = match rest[at..].find(')') {
            Some(close) => &rest[at + close + 1..],
            None => "",
        };
    }
    text.push_str(rest);
    text.to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// Every anchor a Markdown file's headings make.
fn anchors(text: &str) -> HashSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut anchors = HashSet::new();
    for line in without_fences(text).lines() {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if !(1..=6).contains(&hashes) || !line[hashes..].starts_with(' ') {
            continue;
        }
        let title = line[hashes..].trim().trim_end_matches('#').trim();
        let base = slug(title);
        let n = seen.entry(base.clone()).or_insert(0);
        anchors.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    anchors
}

/// The problems in one document, each as `file:line: what`.
fn check(root: &Path, doc: &str, text: &str, top: &HashSet<String>) -> Vec<String> {
    let mut problems = Vec::new();
    let prose = without_fences(text);
    let spans = code_spans(&prose);
    let dir = Path::new(doc).parent().unwrap_or(Path::new(""));

    // Paths in inline code.
    for (offset, _, content) in &spans {
        let line = line_of(&prose, *offset);
        let first = content.split_whitespace().next().unwrap_or("");
        let word = first.strip_prefix("./").unwrap_or(first);
        if NOT_A_PATH.iter().any(|p| word.contains(p)) || word.is_empty() {
            continue;
        }
        let head = word.split('/').next().unwrap_or("");
        if GENERATED.contains(&head) {
            continue;
        }
        if top.contains(head) {
            let path = root.join(word.trim_end_matches('/'));
            let ok = if word.ends_with('/') {
                path.is_dir()
            } else {
                path.exists()
            };
            if !ok {
                problems.push(format!(
                    "{doc}:{line}: `{content}` names {word}, which does not exist"
                ));
            }
        } else if content == word
            && word.ends_with(".md")
            && !word.contains('/')
            && !root.join(word).is_file()
            && !root.join("docs").join(word).is_file()
        {
            problems.push(format!(
                "{doc}:{line}: `{content}` is not a file of the repository"
            ));
        }
    }

    // Links, outside code spans.
    let mut masked = prose.clone().into_bytes();
    for (offset, len, _) in &spans {
        for b in &mut masked[*offset..offset + len] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    let masked =
        String::from_utf8(masked).expect("masking keeps UTF-8 (ASCII spaces over whole spans)");
    let mut from = 0;
    while let Some(at) = masked[from..].find("](") {
        let start = from + at + 2;
        from = start;
        let rest = &masked[start..];
        let dest = if let Some(inner) = rest.strip_prefix('<') {
            inner.split('>').next().unwrap_or("")
        } else {
            rest.split([')', ' ', '\n']).next().unwrap_or("")
        };
        let line = line_of(&masked, start);
        if dest.is_empty() {
            problems.push(format!("{doc}:{line}: a link with no destination"));
            continue;
        }
        if ["http://", "https://", "mailto:"]
            .iter()
            .any(|s| dest.starts_with(s))
        {
            continue;
        }
        let (file, anchor) = match dest.split_once('#') {
            Some((f, a)) => (f, Some(a)),
            None => (dest, None),
        };
        let (target, target_name) = if file.is_empty() {
            (root.join(doc), doc.to_owned())
        } else if let Some(abs) = file.strip_prefix('/') {
            (root.join(abs), abs.to_owned())
        } else {
            let joined = dir.join(file);
            (root.join(&joined), joined.to_string_lossy().into_owned())
        };
        if !target.exists() {
            problems.push(format!(
                "{doc}:{line}: link to {dest}: {target_name} does not exist"
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if target.extension().is_some_and(|e| e == "md") {
            // A same-file anchor is checked against the text at hand.
            let headings = if file.is_empty() {
                anchors(text)
            } else {
                anchors(&fs::read_to_string(&target).unwrap_or_default())
            };
            if !headings.contains(anchor) {
                problems.push(format!(
                    "{doc}:{line}: link to {dest}: {target_name} has no heading #{anchor}"
                ));
            }
        }
    }
    problems
}

#[test]
fn every_link_and_path_in_the_docs_resolves() {
    let root = root();
    let top = top_level(&root);
    let mut problems = Vec::new();
    for doc in documents(&root) {
        let text =
            fs::read_to_string(root.join(&doc)).unwrap_or_else(|e| panic!("read {doc}: {e}"));
        problems.extend(check(&root, &doc, &text, &top));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) in the docs:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn the_readme_stays_short() {
    let text = fs::read_to_string(root().join("README.md")).expect("read README.md");
    let lines = text.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: move detail into docs/"
    );
}

#[test]
fn the_check_finds_what_is_broken() {
    let root = root();
    let top = top_level(&root);
    let text = "# Title\n\n## A `code` heading: yes\n\n\
        [ok](docs/api.md#status-codes) [self](#a-code-heading-yes) [img](docs/chat-page.png)\n\
        [gone](docs/nowhere.md) [bad anchor](docs/api.md#no-such-heading) [bad self](#nope)\n\
        `scripts/test.sh` `./scripts/run-local.sh --spin` `src/` `target/bench/results.md`\n\
        `scripts/nothing.sh` `host/src/nowhere/` `DESIGN.md` `src/**/*` `app.py` `<id>`\n\
        ```sh\n[fenced](not/checked.md) `scripts/also-not-checked.sh`\n```\n";
    let problems = check(&root, "README.md", text, &top);
    let expected = [
        "docs/nowhere.md",
        "#no-such-heading",
        "#nope",
        "scripts/nothing.sh",
        "host/src/nowhere/",
        "DESIGN.md",
    ];
    for what in expected {
        assert!(
            problems.iter().any(|p| p.contains(what)),
            "not flagged: {what}\n{}",
            problems.join("\n")
        );
    }
    assert_eq!(problems.len(), expected.len(), "{}", problems.join("\n"));
}

#[test]
fn headings_slug_as_on_github() {
    assert_eq!(slug("`POST /chat`"), "post-chat");
    assert_eq!(
        slug("Cold start: process start → first 200 from `/health`"),
        "cold-start-process-start--first-200-from-health"
    );
    assert_eq!(
        slug("The caller's own standing: `GET /usage`"),
        "the-callers-own-standing-get-usage"
    );
    assert_eq!(slug("1. Names used below"), "1-names-used-below");
    assert_eq!(
        slug("OpenAI-compatible endpoint (`/v1`)"),
        "openai-compatible-endpoint-v1"
    );
    let numbered = anchors("# A\n## Notes\n```\n# not a heading\n```\n## Notes\n");
    assert!(
        numbered.contains("notes")
            && numbered.contains("notes-1")
            && !numbered.contains("not-a-heading")
    );
}
