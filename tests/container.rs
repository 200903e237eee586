//! The container image, checked without a Docker engine: the Dockerfile and the workflows pass
//! their linters, the Dockerfile's runtime stage runs here the way the image runs it (same files
//! at the same paths, same entrypoint, environment, user and working directory), and what the
//! image holds fits its size budget.
//!
//! The runtime stage is read from the Dockerfile itself, so the test and the image cannot drift
//! apart: whatever the final stage copies, sets and runs is what this test lays out and runs.
//!
//! Linters come from `scripts/test.sh` (pinned, from PyPI) and are found on PATH. Without them a
//! lint test is skipped with a note, except when `CI` is set, where a missing linter fails.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Largest image, in bytes (as `docker images` counts them: MB = 1,000,000 bytes).
const IMAGE_BUDGET_BYTES: u64 = 30_000_000;

/// The runtime stage's base image, which the size allowance below describes.
const RUNTIME_BASE: &str = "gcr.io/distroless/static-debian12:nonroot";

/// What [`RUNTIME_BASE`] adds to the image, uncompressed: CA roots, tzdata, /etc/passwd and
/// friends. The distroless project documents its static image as "around 2 MiB"; 2.5 MiB leaves
/// room for tzdata and CA updates. It cannot be measured here (no Docker engine, no registry);
/// CI's container job measures the whole image with `docker image inspect`.
const RUNTIME_BASE_BYTES: u64 = 5 * 1024 * 1024 / 2;

/// The image's ion-host is a static musl build (`dist` profile), measured 0.36 MB larger than
/// the stripped glibc release build this test can measure (22.71 MB against 22.35 MB, with the
/// .cwasm from the `dist` component 0.18 MB smaller than from the release one). Budgeted here.
const MUSL_STATIC_ALLOWANCE_BYTES: u64 = 1_000_000;

/// Cloud Run sends SIGTERM, then SIGKILL 10 s later: an idle instance must be gone well before.
const STOP_LIMIT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Linters

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = linter("hadolint") else {
        return;
    };
    let run = |dir: &Path, file: &str| {
        Command::new(&hadolint)
            .args(["--no-color", "--failure-threshold", "info", file])
            .current_dir(dir)
            .output()
            .expect("hadolint runs")
    };

    // The linter is live: a Dockerfile with well-known mistakes fails.
    let scratch = TempDir::new();
    std::fs::write(
        scratch.path().join("Dockerfile"),
        "FROM debian\nRUN apt-get install curl\n",
    )
    .unwrap();
    let bad = run(scratch.path(), "Dockerfile");
    assert!(
        !bad.status.success() && String::from_utf8_lossy(&bad.stdout).contains("DL3008"),
        "hadolint accepted a Dockerfile with unpinned, unversioned packages: {bad:?}"
    );

    let out = run(&workspace_root(), "Dockerfile");
    assert!(
        out.status.success(),
        "hadolint found problems in Dockerfile:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn workflows_pass_actionlint() {
    let Some(actionlint) = linter("actionlint") else {
        return;
    };
    // actionlint checks `run:` scripts with shellcheck when it has one.
    let shellcheck = match find_on_path("shellcheck") {
        Some(path) => path.display().to_string(),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but shellcheck is not on PATH (scripts/test.sh installs it)")
        }
        None => {
            eprintln!("note: shellcheck not on PATH; actionlint runs without it (-shellcheck=)");
            String::new()
        }
    };
    let run = |dir: &Path, files: &[PathBuf]| {
        Command::new(&actionlint)
            .arg("-no-color")
            .arg(format!("-shellcheck={shellcheck}"))
            .args(files)
            .current_dir(dir)
            .output()
            .expect("actionlint runs")
    };

    // The linter is live: an unknown key and (with shellcheck) an unquoted variable both fail.
    let scratch = TempDir::new();
    let bad = scratch.path().join("bad.yml");
    std::fs::write(
        &bad,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    step:\n      - run: echo hi\n  \
         b:\n    runs-on: ubuntu-24.04\n    steps:\n      - run: rm -rf $DIR/*\n",
    )
    .unwrap();
    let out = run(scratch.path(), &[bad]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success() && report.contains("\"step\""),
        "actionlint accepted an unknown key: {out:?}"
    );
    if !shellcheck.is_empty() {
        assert!(
            report.contains("SC2086"),
            "actionlint did not run shellcheck on a `run:` script: {report}"
        );
    }

    let dir = workspace_root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    for expected in ["ci.yml", "deploy.yml"] {
        assert!(
            files.iter().any(|f| f.ends_with(expected)),
            ".github/workflows/{expected} is missing (found {files:?})"
        );
    }
    let out = run(&workspace_root(), &files);
    assert!(
        out.status.success(),
        "actionlint found problems in .github/workflows:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A linter on PATH; `None` (with a note) when it is missing outside CI.
fn linter(name: &str) -> Option<PathBuf> {
    match find_on_path(name) {
        Some(path) => Some(path),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but {name} is not on PATH (scripts/test.sh installs it)")
        }
        None => {
            eprintln!(
                "note: {name} is not on PATH, so this check is skipped; \
                 ./scripts/test.sh installs it"
            );
            None
        }
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

// ---------------------------------------------------------------------------------------------
// The runtime stage, run here

#[test]
fn runtime_stage_serves_and_stops_like_the_image() {
    let image = RuntimeImage::from_dockerfile();
    // The base is pinned by digest too (`name:tag@sha256:...`); the tag says which image it is.
    assert_eq!(image.base_tag(), RUNTIME_BASE, "runtime base image");
    assert!(
        image.exposed.iter().any(|p| p == "8080" || p == "8080/tcp"),
        "the runtime stage should EXPOSE 8080 (Cloud Run's --port): {:?}",
        image.exposed
    );
    assert_ne!(image.uid, 0, "the image must not run as root");
    assert_ne!(image.gid, 0, "the image must not run with group root");
    assert!(
        image
            .env
            .contains(&("SPIN_VARIABLE_CREDENTIALS".into(), "runtime".into())),
        "the image should take Google credentials from the runtime (the metadata server on \
         Cloud Run), so that no token is baked in or passed around: ENV {:?}",
        image.env
    );

    let layout = Layout::new(&image);
    let argv = layout.argv();
    let env = layout.env();

    let emulator = start_emulator();
    let port = free_port();
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("PORT", port.to_string())
        .env("SPIN_VARIABLE_VERTEX_ENDPOINT", emulator.url())
        .env("SPIN_VARIABLE_PROJECT_ID", "e2e-project")
        .env("SPIN_VARIABLE_ACCESS_TOKEN", TOKEN)
        .current_dir(layout.path(&image.workdir))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let switch_user = effective_uid() == 0;
    if switch_user {
        // std also drops the supplementary groups when it switches from root.
        command.uid(image.uid).gid(image.gid);
    } else {
        eprintln!(
            "note: not running as root, so the process runs as uid {} instead of the image's {}",
            effective_uid(),
            image.uid
        );
    }
    let mut process = Process::spawn(command, &argv);
    let base = format!("http://127.0.0.1:{port}");
    process.wait_ready(&format!("{base}/health"));

    if switch_user {
        let uids = process.status_field("Uid");
        let gids = process.status_field("Gid");
        let expect = |id: u32| vec![id.to_string(); 4];
        assert_eq!(uids, expect(image.uid), "real/effective/saved/fs uid");
        assert_eq!(gids, expect(image.gid), "real/effective/saved/fs gid");
        assert_eq!(
            process.status_field("Groups"),
            Vec::<String>::new(),
            "supplementary groups"
        );
    }

    let health = request("GET", &format!("{base}/health"), &[], b"");
    assert_eq!(health.status, 200, "GET /health: {}", health.body);

    let chat = request(
        "POST",
        &format!("{base}/chat"),
        &[("content-type", "application/json")],
        br#"{"message": "How do I start learning Rust?"}"#,
    );
    assert_eq!(chat.status, 200, "POST /chat: {}", chat.body);
    let body = chat.json();
    assert!(
        body["persona_used"].as_str().is_some_and(|p| !p.is_empty()),
        "POST /chat names no persona: {body}"
    );
    assert!(
        body["content"]
            .as_str()
            .is_some_and(|c| c.contains("Vertex AI emulator")),
        "POST /chat did not answer from the emulator: {body}"
    );
    let calls = emulator.requests();
    assert_eq!(calls.len(), 1, "Vertex AI calls: {calls:?}");
    assert_eq!(
        calls[0].authorization.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str()),
        "the Vertex AI call's credentials"
    );

    process.terminate();
    let status = process.wait_exit(STOP_LIMIT);
    assert_eq!(
        status.code(),
        Some(0),
        "after SIGTERM the process should exit 0 ({status:?}); stderr:\n{}",
        process.stderr()
    );

    // Cloud Logging reads stdout: one JSON object per line, each with a severity, and the
    // served requests among them. The readiness line is the one plain line.
    let lines = process.stdout();
    let entries: Vec<serde_json::Value> = lines
        .iter()
        .filter(|line| !line.starts_with("ion-host listening on "))
        .map(|line| {
            let entry: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line:?}"));
            assert!(
                entry["severity"].is_string(),
                "log entry without severity: {line}"
            );
            entry
        })
        .collect();
    assert!(
        entries.iter().any(|e| e["httpRequest"]["requestUrl"]
            .as_str()
            .is_some_and(|u| u.contains("/chat"))),
        "no request log entry for /chat on stdout: {lines:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Size

/// The image is the base plus the three files the runtime stage copies. What ships is ion-host
/// built with the `dist` profile for x86_64-unknown-linux-musl (static, stripped, thin LTO) and
/// the .cwasm compiled from the `dist` component; here the release build, stripped, stands in
/// for the host (plus [`MUSL_STATIC_ALLOWANCE_BYTES`]), and the .cwasm is compiled from the
/// release component. CI's container job checks the real image's size.
#[test]
fn image_fits_the_size_budget() {
    let image = RuntimeImage::from_dockerfile();
    assert_eq!(
        image.base_tag(),
        RUNTIME_BASE,
        "RUNTIME_BASE_BYTES describes {RUNTIME_BASE}: measure the new base and update both"
    );
    let layout = Layout::new(&image);
    let mut sizes: Vec<(String, u64)> = image
        .files
        .iter()
        .map(|file| {
            let size = std::fs::metadata(layout.path(&file.dest)).unwrap().len();
            (file.dest.clone(), size)
        })
        .collect();
    sizes.push((
        "static musl build (allowance)".to_owned(),
        MUSL_STATIC_ALLOWANCE_BYTES,
    ));
    sizes.push((format!("{RUNTIME_BASE} (documented)"), RUNTIME_BASE_BYTES));
    let total: u64 = sizes.iter().map(|(_, size)| size).sum();
    let breakdown: String = sizes
        .iter()
        .map(|(name, size)| format!("  {:>6.2} MB  {name}\n", *size as f64 / 1e6))
        .collect();
    eprintln!(
        "image estimate:\n{breakdown}  {:>6.2} MB  total (budget {:.0} MB)",
        total as f64 / 1e6,
        IMAGE_BUDGET_BYTES as f64 / 1e6
    );
    assert!(
        total <= IMAGE_BUDGET_BYTES,
        "the image would be {total} bytes, over the {IMAGE_BUDGET_BYTES}-byte budget:\n{breakdown}"
    );
}

// ---------------------------------------------------------------------------------------------
// The Dockerfile's runtime stage

/// What the final stage of the Dockerfile puts in the image and how it starts it.
#[derive(Debug)]
struct RuntimeImage {
    base: String,
    workdir: String,
    uid: u32,
    gid: u32,
    env: Vec<(String, String)>,
    exposed: Vec<String>,
    /// ENTRYPOINT followed by CMD, exec form.
    argv: Vec<String>,
    files: Vec<CopiedFile>,
    /// The stage the `--from` files come from, with its instructions.
    build_stages: BTreeMap<String, Vec<Instruction>>,
}

#[derive(Debug)]
struct CopiedFile {
    /// `--from=STAGE`, or `None` for the build context.
    stage: Option<String>,
    source: String,
    /// Absolute path in the image.
    dest: String,
}

/// Which file is which, by how the entrypoint uses it.
#[derive(Debug, PartialEq)]
enum Role {
    Host,
    Component,
    Manifest,
}

impl RuntimeImage {
    /// The base image without its digest.
    fn base_tag(&self) -> &str {
        self.base.split('@').next().unwrap_or_default()
    }

    fn from_dockerfile() -> RuntimeImage {
        let path = workspace_root().join("Dockerfile");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        RuntimeImage::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn parse(text: &str) -> Result<RuntimeImage, String> {
        let stages = stages(&parse_instructions(text))?;
        let (from, instructions) = stages.last().ok_or("the Dockerfile has no FROM")?;
        let mut image = RuntimeImage {
            base: from.image.clone(),
            workdir: "/".into(),
            uid: 0,
            gid: 0,
            env: Vec::new(),
            exposed: Vec::new(),
            argv: Vec::new(),
            files: Vec::new(),
            build_stages: stages[..stages.len() - 1]
                .iter()
                .filter_map(|(from, body)| Some((from.name.clone()?, body.clone())))
                .collect(),
        };
        let mut entrypoint = None;
        let mut cmd = Vec::new();
        let mut user = None;
        for ins in instructions {
            let at = format!("line {}", ins.line);
            if ins.args.contains('$') {
                return Err(format!(
                    "{at}: the runtime stage should use literal values (this test does not \
                     expand variables): {} {}",
                    ins.keyword, ins.args
                ));
            }
            match ins.keyword.as_str() {
                "WORKDIR" if ins.args.starts_with('/') => image.workdir = ins.args.clone(),
                "WORKDIR" => return Err(format!("{at}: WORKDIR should be absolute")),
                "ENV" => {
                    for word in words(&ins.args)? {
                        let (key, value) = word.split_once('=').ok_or_else(|| {
                            format!("{at}: write ENV as KEY=VALUE, not {:?}", ins.args)
                        })?;
                        image.env.retain(|(k, _)| k != key);
                        image.env.push((key.to_owned(), value.to_owned()));
                    }
                }
                "USER" => user = Some(ins.args.clone()),
                "EXPOSE" => image.exposed.extend(words(&ins.args)?),
                "ENTRYPOINT" => entrypoint = Some(exec_form(&ins.args, &at)?),
                "CMD" => cmd = exec_form(&ins.args, &at)?,
                "COPY" => image
                    .files
                    .push(copied_file(&ins.args, &image.workdir, &at)?),
                "LABEL" | "STOPSIGNAL" | "ARG" => {}
                other => {
                    return Err(format!(
                        "{at}: {other} in the runtime stage is not expected (it has no shell; \
                         it only copies files in and says how to start them)"
                    ));
                }
            }
        }
        let user = user.ok_or("the runtime stage sets no USER: it would run as root")?;
        let (uid, gid) = user.split_once(':').unwrap_or((&user, &user));
        let number = |s: &str| {
            s.parse::<u32>().map_err(|_| {
                format!("USER {user:?}: use numeric ids, so that runtimes can check it is not root")
            })
        };
        image.uid = number(uid)?;
        image.gid = number(gid)?;
        image.argv = entrypoint.ok_or("the runtime stage has no ENTRYPOINT")?;
        image.argv.extend(cmd);
        Ok(image)
    }

    /// The value after `flag` in the entrypoint's arguments.
    fn option(&self, flag: &str) -> &str {
        let at = self
            .argv
            .iter()
            .position(|a| a == flag)
            .unwrap_or_else(|| panic!("the entrypoint has no {flag}: {:?}", self.argv));
        self.argv
            .get(at + 1)
            .unwrap_or_else(|| panic!("{flag} has no value: {:?}", self.argv))
    }

    fn role(&self, file: &CopiedFile) -> Role {
        if file.dest == self.argv[0] {
            Role::Host
        } else if file.dest == self.option("--component") {
            Role::Component
        } else if file.dest == self.option("--manifest") {
            Role::Manifest
        } else {
            panic!(
                "the runtime stage copies {} but the entrypoint never uses it: {:?}",
                file.dest, self.argv
            )
        }
    }
}

#[derive(Debug, Clone)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

#[derive(Debug)]
struct StageHead {
    image: String,
    name: Option<String>,
}

/// Instructions with continuation lines joined; comments and blank lines dropped.
fn parse_instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    for (index, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue; // Docker drops comment lines, also inside a continued instruction.
        }
        let (line, mut joined) = pending.take().unwrap_or((index + 1, String::new()));
        match trimmed.strip_suffix('\\') {
            Some(body) => {
                joined.push_str(body);
                joined.push(' ');
                pending = Some((line, joined));
            }
            None => {
                joined.push_str(trimmed);
                out.push(instruction(line, &joined));
            }
        }
    }
    if let Some((line, joined)) = pending {
        out.push(instruction(line, &joined));
    }
    out
}

fn instruction(line: usize, text: &str) -> Instruction {
    let text = text.trim();
    let (keyword, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    Instruction {
        line,
        keyword: keyword.to_ascii_uppercase(),
        args: args.trim().to_owned(),
    }
}

fn stages(instructions: &[Instruction]) -> Result<Vec<(StageHead, Vec<Instruction>)>, String> {
    let mut stages: Vec<(StageHead, Vec<Instruction>)> = Vec::new();
    for ins in instructions {
        if ins.keyword == "FROM" {
            let words: Vec<String> = words(&ins.args)?
                .into_iter()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_] => None,
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.clone()),
                _ => return Err(format!("line {}: cannot read FROM {}", ins.line, ins.args)),
            };
            stages.push((
                StageHead {
                    image: words[0].clone(),
                    name,
                },
                Vec::new(),
            ));
        } else if let Some((_, body)) = stages.last_mut() {
            body.push(ins.clone());
        } else if ins.keyword != "ARG" {
            return Err(format!("line {}: {} before FROM", ins.line, ins.keyword));
        }
    }
    Ok(stages)
}

/// Whitespace-separated words; double and single quotes group and are removed.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                word.extend(chars.next());
                in_word = true;
            }
            (_, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unclosed quote in {text:?}"));
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn exec_form(args: &str, at: &str) -> Result<Vec<String>, String> {
    match serde_json::from_str::<Vec<String>>(args) {
        Ok(argv) if !argv.is_empty() => Ok(argv),
        Ok(_) => Err(format!("{at}: empty command")),
        Err(_) => Err(format!(
            "{at}: use the exec (JSON) form; the image has no shell for {args:?}"
        )),
    }
}

fn copied_file(args: &str, workdir: &str, at: &str) -> Result<CopiedFile, String> {
    let mut stage = None;
    let mut paths = Vec::new();
    for word in words(args)? {
        match word.strip_prefix("--") {
            Some(flag) => match flag.strip_prefix("from=") {
                Some(from) => stage = Some(from.to_owned()),
                None if flag == "link" => {}
                None => {
                    return Err(format!(
                        "{at}: COPY --{flag}: the runtime stage's files belong to root with \
                         their build modes, so the process (non-root) cannot change them"
                    ));
                }
            },
            None => paths.push(word),
        }
    }
    let [source, dest] = <[String; 2]>::try_from(paths).map_err(|paths| {
        format!("{at}: copy one file per COPY, to its full path in the image: {paths:?}")
    })?;
    if dest.ends_with('/') {
        return Err(format!("{at}: name the file, not just its folder: {dest}"));
    }
    let dest = if dest.starts_with('/') {
        dest
    } else {
        format!("{}/{dest}", workdir.trim_end_matches('/'))
    };
    Ok(CopiedFile {
        stage,
        source,
        dest,
    })
}

// ---------------------------------------------------------------------------------------------
// The image's files, laid out in an empty folder

/// An empty temporary folder holding the runtime stage's files at their image paths (under the
/// folder), made from this checkout's builds the way the Dockerfile makes them.
struct Layout {
    root: TempDir,
    image_argv: Vec<String>,
    image_env: Vec<(String, String)>,
    dests: Vec<String>,
}

impl Layout {
    fn new(image: &RuntimeImage) -> Layout {
        let root = TempDir::new();
        std::fs::set_permissions(root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let layout = Layout {
            root,
            image_argv: image.argv.clone(),
            image_env: image.env.clone(),
            dests: image.files.iter().map(|f| f.dest.clone()).collect(),
        };
        layout.make_dir(&image.workdir);

        let roles: Vec<Role> = image.files.iter().map(|f| image.role(f)).collect();
        for role in [Role::Host, Role::Component, Role::Manifest] {
            let count = roles.iter().filter(|r| **r == role).count();
            assert_eq!(
                count, 1,
                "the runtime stage should copy exactly one {role:?} file: {:?}",
                image.files
            );
        }
        assert!(
            image.option("--component").ends_with(".cwasm"),
            "the image should serve a precompiled component (.cwasm): {:?}",
            image.argv
        );

        // The host first: it compiles the component.
        let mut order: Vec<(&CopiedFile, &Role)> = image.files.iter().zip(&roles).collect();
        order.sort_by_key(|(_, role)| **role != Role::Host);
        let mut host = None;
        for (file, role) in order {
            let dest = layout.path(&file.dest);
            layout.make_dir(Path::new(&file.dest).parent().unwrap().to_str().unwrap());
            match role {
                Role::Host => {
                    image.expect_built(file, &["cp", "target/x86_64-unknown-linux-musl/dist/"]);
                    strip_into(&host_binary(), &dest);
                    host = Some(dest);
                }
                Role::Component => {
                    image.expect_built(file, &["ion-host compile", " -o "]);
                    compile(host.as_ref().unwrap(), &component_wasm(), &dest);
                }
                Role::Manifest => {
                    assert_eq!(
                        file.stage, None,
                        "spin.toml comes straight from the build context: {file:?}"
                    );
                    std::fs::copy(workspace_root().join(&file.source), &dest).unwrap_or_else(|e| {
                        panic!("COPY {}: not in the checkout ({e})", file.source)
                    });
                }
            }
        }
        layout
    }

    /// `path` in the image → the same path under the layout's root.
    fn path(&self, image_path: &str) -> PathBuf {
        self.root.path().join(image_path.trim_start_matches('/'))
    }

    fn make_dir(&self, image_path: &str) {
        let mut dir = self.root.path().to_path_buf();
        for part in Path::new(image_path.trim_start_matches('/')).components() {
            dir.push(part);
            if !dir.is_dir() {
                std::fs::create_dir(&dir).unwrap();
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }

    /// A value that names one of the image's files, moved under the root.
    fn map(&self, value: &str) -> String {
        if self.dests.iter().any(|d| d == value) {
            self.path(value).display().to_string()
        } else {
            assert!(
                !value.starts_with('/'),
                "{value} is an image path this test does not lay out; copy it in the runtime \
                 stage, or teach this test where it comes from"
            );
            value.to_owned()
        }
    }

    /// The entrypoint and its arguments, paths under the root.
    fn argv(&self) -> Vec<String> {
        self.image_argv.iter().map(|a| self.map(a)).collect()
    }

    /// The image's environment, paths under the root.
    fn env(&self) -> Vec<(String, String)> {
        self.image_env
            .iter()
            .map(|(k, v)| (k.clone(), self.map(v)))
            .collect()
    }
}

impl RuntimeImage {
    /// The stage `file` comes from has a RUN that produces it, mentioning every one of `needles`.
    fn expect_built(&self, file: &CopiedFile, needles: &[&str]) {
        let stage = file
            .stage
            .as_ref()
            .unwrap_or_else(|| panic!("{} should come from a build stage", file.dest));
        let body = self
            .build_stages
            .get(stage)
            .unwrap_or_else(|| panic!("COPY --from={stage}: no stage named {stage}"));
        let built = body.iter().any(|ins| {
            ins.keyword == "RUN"
                && ins.args.contains(&file.source)
                && needles.iter().all(|n| ins.args.contains(n))
        });
        assert!(
            built,
            "no RUN in stage {stage} makes {} with {needles:?}; this test lays out the file the \
             same way, so update both together",
            file.source
        );
    }
}

/// `strip --strip-all`: the `dist` profile's `strip = true`, applied to the release build.
fn strip_into(binary: &Path, dest: &Path) {
    let status = Command::new("strip")
        .arg("--strip-all")
        .arg("-o")
        .arg(dest)
        .arg(binary)
        .status()
        .expect("strip (binutils) runs");
    assert!(status.success(), "strip {}: {status}", binary.display());
}

/// `ion-host compile IN -o OUT`, as the Dockerfile runs it.
fn compile(host: &Path, wasm: &Path, out: &Path) {
    let output = Command::new(host)
        .arg("compile")
        .arg(wasm)
        .arg("-o")
        .arg(out)
        .output()
        .expect("ion-host compile runs");
    assert!(
        output.status.success() && out.is_file(),
        "ion-host compile {} -o {} failed ({}):\n{}",
        wasm.display(),
        out.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn effective_uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok())
        .expect("Uid: line in /proc/self/status")
}

// ---------------------------------------------------------------------------------------------
// The running process

/// The image's process; killed on drop, its output kept for assertions.
struct Process {
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    argv: Vec<String>,
}

impl Process {
    fn spawn(mut command: Command, argv: &[String]) -> Process {
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
        let stdout = keep_lines(child.stdout.take().unwrap(), "stdout");
        let stderr = keep_lines(child.stderr.take().unwrap(), "stderr");
        Process {
            child,
            stdout,
            stderr,
            argv: argv.to_vec(),
        }
    }

    fn wait_ready(&mut self, health_url: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "{:?} exited at startup ({status}); stderr:\n{}",
                    self.argv,
                    self.stderr()
                );
            }
            if self.stdout().iter().any(|l| l.contains("listening on")) {
                let probe = std::panic::catch_unwind(|| request("GET", health_url, &[], b""));
                if probe.is_ok_and(|reply| reply.status == 200) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{:?} was not ready within 60 s; stderr:\n{}",
                self.argv,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The ids on one line of /proc/PID/status (`Uid`, `Gid`, `Groups`).
    fn status_field(&self, field: &str) -> Vec<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .unwrap_or_else(|| panic!("no {field}: in /proc/PID/status"))
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-s", "TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -s TERM failed: {status}");
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the readers take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "still running {limit:?} after SIGTERM (Cloud Run would SIGKILL it); stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stdout(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `stream` line by line on a thread, echoing each line and keeping it.
fn keep_lines(stream: impl Read + Send + 'static, name: &'static str) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            println!("[image {name}] {line}");
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

// ---------------------------------------------------------------------------------------------
// The parser itself

#[test]
fn dockerfile_parser_reads_what_docker_reads() {
    let dockerfile = [
        "# syntax=docker/dockerfile:1",
        "ARG X=1",
        "FROM rust AS build",
        "RUN make \\",
        "  # a comment",
        "  && cp a /out/a",
        "",
        "FROM scratch",
        "WORKDIR /srv",
        "ENV A=1 B=\"two words\" \\",
        "    C='x y'",
        "ENV A=3",
        "COPY --from=build /out/a /srv/a",
        "COPY conf.toml conf.toml",
        "USER 10:20",
        "EXPOSE 8080/tcp",
        "ENTRYPOINT [\"/srv/a\", \"--config\", \"/srv/conf.toml\"]",
        "CMD [\"-v\"]",
    ]
    .join("\n");
    let image = RuntimeImage::parse(&dockerfile).unwrap();
    assert_eq!(image.base, "scratch");
    assert_eq!(image.workdir, "/srv");
    assert_eq!((image.uid, image.gid), (10, 20));
    assert_eq!(
        image.env,
        [("B", "two words"), ("C", "x y"), ("A", "3")].map(|(k, v)| (k.to_owned(), v.to_owned()))
    );
    assert_eq!(image.exposed, ["8080/tcp"]);
    assert_eq!(image.argv, ["/srv/a", "--config", "/srv/conf.toml", "-v"]);
    let files: Vec<_> = image
        .files
        .iter()
        .map(|f| (f.stage.as_deref(), f.source.as_str(), f.dest.as_str()))
        .collect();
    assert_eq!(
        files,
        [
            (Some("build"), "/out/a", "/srv/a"),
            (None, "conf.toml", "/srv/conf.toml")
        ]
    );
    let build = &image.build_stages["build"];
    assert_eq!(build.len(), 1);
    assert_eq!(build[0].line, 4);
    assert_eq!(build[0].args, "make  && cp a /out/a");

    for (dockerfile, complaint) in [
        ("FROM scratch\nENTRYPOINT [\"/a\"]\n", "no USER"),
        (
            "FROM scratch\nUSER nonroot\nENTRYPOINT [\"/a\"]\n",
            "numeric",
        ),
        (
            "FROM scratch\nUSER 1\nENTRYPOINT /a --flag\n",
            "exec (JSON) form",
        ),
        (
            "FROM scratch\nUSER 1\nRUN true\nENTRYPOINT [\"/a\"]\n",
            "RUN",
        ),
        (
            "FROM scratch\nUSER 1\nCOPY --chown=1 a /a\nENTRYPOINT [\"/a\"]\n",
            "belong to root",
        ),
        (
            "FROM scratch\nUSER 1\nENV P=$HOME\nENTRYPOINT [\"/a\"]\n",
            "literal",
        ),
    ] {
        let err = RuntimeImage::parse(dockerfile)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{dockerfile}"));
        assert!(
            err.contains(complaint),
            "for:\n{dockerfile}\nexpected {complaint:?} in: {err}"
        );
    }
}
