//! Helpers for tests that load real plugin libraries: building them with cargo, into the
//! target directory the test itself runs from, and installing them under a plugin file name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds the `cdylib` of each package in `packages` and returns each library's path. Each
/// package's lib target must be named like the package, with `_` for `-`.
///
/// The build goes to the target directory of the running test (so a plain `cargo test`
/// reuses what it already built): `CARGO_TARGET_DIR` when set, else the nearest ancestor of
/// the test executable that holds cargo's `CACHEDIR.TAG` or `.rustc_info.json`.
pub fn build_cdylibs(packages: &[&str]) -> Result<BTreeMap<String, PathBuf>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(env!("CARGO_MANIFEST_DIR"));
    command.args(["build", "--message-format=json-render-diagnostics"]);
    for package in packages {
        command.args(["-p", package]);
    }
    command.env("CARGO_TARGET_DIR", target_dir()?);
    tracing::debug!(?command, "building plugin libraries");
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "{command:?} failed with {}:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let mut found = BTreeMap::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_cdylib = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
        let Some(package) = packages.iter().find(|p| package_matches(&message, p)) else {
            continue;
        };
        if !is_cdylib {
            continue;
        }
        let library = message["filenames"].as_array().and_then(|files| {
            files
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(std::env::consts::DLL_SUFFIX))
        });
        if let Some(library) = library {
            found.insert((*package).to_owned(), PathBuf::from(library));
        }
    }
    match packages.iter().find(|p| !found.contains_key(**p)) {
        Some(missing) => Err(format!("cargo built no cdylib for package `{missing}`")),
        None => Ok(found),
    }
}

/// Whether a cargo message is about the library of `package`, whose lib target is named
/// like the package with `_` for `-` (true of every plugin crate in this workspace).
fn package_matches(message: &serde_json::Value, package: &str) -> bool {
    message["target"]["name"].as_str() == Some(package.replace('-', "_").as_str())
}

fn target_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the test executable: {e}"))?;
    exe.ancestors()
        .find(|dir| dir.join("CACHEDIR.TAG").is_file() || dir.join(".rustc_info.json").is_file())
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no cargo target directory above {}", exe.display()))
}

/// Copies `library` into `dir` as the plugin file `libbottle_plugin_<name>.so` (or
/// `.dylib`); a fresh copy, so that the loader sees a library of its own.
pub fn install(library: &Path, dir: &Path, name: &str) -> PathBuf {
    let file = format!(
        "{}{}{name}{}",
        std::env::consts::DLL_PREFIX,
        crate::PLUGIN_FILE_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let path = dir.join(file);
    if let Err(e) = std::fs::copy(library, &path) {
        panic!(
            "cannot copy {} to {}: {e}",
            library.display(),
            path.display()
        );
    }
    path
}
