//! The check that the built component fits `wit/world.wit`'s `component` world: every interface
//! it imports is one the world imports, and it exports every interface the world exports
//! (`wasi:http/incoming-handler`).
//!
//! Names are matched as runtimes match them, by semver: the Spin SDK exports
//! `wasi:http/incoming-handler@0.2.0` over the 0.2.12 types, which wasmtime and Spin accept for
//! 0.2.12, while `wasm-tools component targets` compares names exactly and would refuse it.
//! The types behind the names are checked when ion-host links the component.

use std::path::PathBuf;

use semver::Version;
use wit_parser::{PackageName, Resolve, WorldKey};

const BUILD: &str = "cargo build --release --target wasm32-wasip2 -p ion-mentoring";

/// The component `BUILD` makes, under `$CARGO_TARGET_DIR` (relative to the workspace root, as
/// cargo reads it) or `target/`.
fn built_component() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), |dir| root.join(dir));
    target.join("wasm32-wasip2/release/ion_mentoring.wasm")
}

/// An interface name as a component or a world spells it: `ns:pkg/interface@version`.
#[derive(Debug, Clone, PartialEq)]
struct InterfaceName {
    /// `ns:pkg/interface`
    path: String,
    version: Option<Version>,
}

impl InterfaceName {
    fn parse(name: &str) -> InterfaceName {
        match name.split_once('@') {
            Some((path, version)) => InterfaceName {
                path: path.to_owned(),
                version: Version::parse(version).ok(),
            },
            None => InterfaceName {
                path: name.to_owned(),
                version: None,
            },
        }
    }

    /// Whether both name interchangeable versions of one interface, by the component model's
    /// rule: the same major version (below 1.0 the same minor, below 0.1 the same patch; a
    /// prerelease only itself).
    fn same_track(&self, other: &InterfaceName) -> bool {
        let track = |v: &Option<Version>| v.as_ref().map(PackageName::version_compat_track);
        self.path == other.path && track(&self.version) == track(&other.version)
    }

    /// Whether a runtime providing `self` satisfies an import of `wanted`: the same track, no
    /// older.
    fn provides(&self, wanted: &InterfaceName) -> bool {
        self.same_track(wanted) && self.version >= wanted.version
    }
}

impl std::fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{}@{version}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

/// The imports and exports of `wit/world.wit`'s `component` world (with the interfaces its
/// imports depend on).
fn world_interfaces() -> (Vec<InterfaceName>, Vec<InterfaceName>) {
    let wit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wit");
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(&wit)
        .unwrap_or_else(|e| panic!("{}: {e:?}", wit.display()));
    let world = resolve
        .select_world(&[package], Some("component"))
        .expect("wit/world.wit has a `component` world");
    let world = &resolve.worlds[world];
    let names = |keys: &mut dyn Iterator<Item = &WorldKey>| {
        keys.map(|key| InterfaceName::parse(&resolve.name_world_key(key)))
            .collect::<Vec<_>>()
    };
    (
        names(&mut world.imports.keys()),
        names(&mut world.exports.keys()),
    )
}

/// The imports and exports of the built component, by name.
fn component_interfaces(wasm: &[u8]) -> (Vec<InterfaceName>, Vec<InterfaceName>) {
    let engine = wasmtime::Engine::default();
    let component =
        wasmtime::component::Component::new(&engine, wasm).expect("the built component compiles");
    let ty = component.component_type();
    let imports = ty
        .imports(&engine)
        .map(|(name, _)| InterfaceName::parse(name));
    let exports = ty
        .exports(&engine)
        .map(|(name, _)| InterfaceName::parse(name));
    (imports.collect(), exports.collect())
}

/// What does not fit: imports the world lacks, then world exports the component lacks.
fn misfits(
    (world_imports, world_exports): &(Vec<InterfaceName>, Vec<InterfaceName>),
    (imports, exports): &(Vec<InterfaceName>, Vec<InterfaceName>),
) -> Vec<String> {
    let unknown = imports
        .iter()
        .filter(|import| !world_imports.iter().any(|w| w.provides(import)))
        .map(|import| format!("imports {import}, which the world does not"));
    let missing = world_exports
        .iter()
        .filter(|export| !exports.iter().any(|e| e.same_track(export)))
        .map(|export| format!("does not export {export}"));
    unknown.chain(missing).collect()
}

#[test]
fn the_built_component_fits_the_component_world() {
    let path = built_component();
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; build the component first: `{BUILD}`",
            path.display()
        )
    });
    let misfits = misfits(&world_interfaces(), &component_interfaces(&wasm));
    assert!(
        misfits.is_empty(),
        "{} does not fit wit/world.wit's `component` world: it\n  {}",
        path.display(),
        misfits.join("\n  ")
    );
}

#[test]
fn the_world_exports_the_http_handler() {
    let (_, exports) = world_interfaces();
    let handler = InterfaceName::parse("wasi:http/incoming-handler@0.2.0");
    assert!(
        exports.iter().any(|e| e.same_track(&handler)),
        "{exports:?}"
    );
}

#[test]
fn names_match_by_semver_track() {
    let name = InterfaceName::parse;
    let world = (
        vec![
            name("wasi:http/types@0.2.12"),
            name("wasi:keyvalue/store@0.2.0-draft2"),
            name("fermyon:spin/variables@2.0.0"),
        ],
        vec![name("wasi:http/incoming-handler@0.2.12")],
    );
    let fits = |imports: &[&str], exports: &[&str]| {
        misfits(
            &world,
            &(
                imports.iter().map(|n| name(n)).collect(),
                exports.iter().map(|n| name(n)).collect(),
            ),
        )
    };
    // Older patches and minors of the world's interfaces fit; a newer one does not.
    assert_eq!(
        fits(
            &[
                "wasi:http/types@0.2.4",
                "wasi:keyvalue/store@0.2.0-draft2",
                "fermyon:spin/variables@2.3.0",
            ],
            &["wasi:http/incoming-handler@0.2.0"],
        ),
        ["imports fermyon:spin/variables@2.3.0, which the world does not"]
    );
    assert_eq!(
        fits(
            &[
                "wasi:http/types@0.3.0",
                "wasi:keyvalue/store@0.2.0-draft3",
                "wasi:filesystem/types@0.2.12"
            ],
            &["wasi:http/incoming-handler@0.3.0"]
        ),
        [
            "imports wasi:http/types@0.3.0, which the world does not",
            "imports wasi:keyvalue/store@0.2.0-draft3, which the world does not",
            "imports wasi:filesystem/types@0.2.12, which the world does not",
            "does not export wasi:http/incoming-handler@0.2.12",
        ]
    );
    assert!(
        fits(
            &["wasi:http/types@0.2.12"],
            &["wasi:http/incoming-handler@0.2.13"]
        )
        .is_empty()
    );
}
