//! The context names of a kubeconfig, for shell completion, without parsing a
//! fleet-sized file on every TAB: an index in the cache directory, stamped with
//! the file's size, modification time and inode, read only while the stamp still
//! matches. Any edit to the file, by anyone, makes it stale; a stale or missing
//! index means one full parse, which writes it anew.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use yaml_serde::Value;

use super::model::{Kind, entry_names};

/// The context names of every file in `paths` that exists, in order.
pub fn context_names(paths: &[PathBuf], index_dir: Option<&Path>) -> Vec<String> {
    let mut names = Vec::new();
    for path in paths {
        let Some(stamp) = stamp(path) else { continue };
        if let Some(cached) = index_dir.and_then(|dir| read(dir, path, &stamp)) {
            names.extend(cached);
            continue;
        }
        let Ok(doc) = super::load(path) else { continue };
        if let Some(dir) = index_dir {
            remember_as(dir, path, &stamp, &doc);
        }
        names.extend(entry_names(&doc, Kind::Context));
    }
    names
}

/// Writes the index of `path`, just written with `doc`. Best effort: a failure
/// costs the next completion a full parse, nothing else.
pub fn remember(index_dir: &Path, path: &Path, doc: &Value) {
    if let Some(stamp) = stamp(path) {
        remember_as(index_dir, path, &stamp, doc);
    }
}

fn remember_as(index_dir: &Path, path: &Path, stamp: &str, doc: &Value) {
    let names = entry_names(doc, Kind::Context);
    // One name per line: a name holding a line break is not indexed.
    if names.iter().any(|n| n.contains(['\n', '\r'])) {
        return;
    }
    let mut text = format!("{stamp}\n");
    for name in names {
        text.push_str(&name);
        text.push('\n');
    }
    let _ = super::file::write_private(index_dir, &file_name(path), &text);
}

fn read(index_dir: &Path, path: &Path, stamp: &str) -> Option<Vec<String>> {
    let text = fs::read_to_string(index_dir.join(file_name(path))).ok()?;
    let (first, rest) = text.split_once('\n')?;
    (first == stamp).then(|| rest.lines().map(str::to_string).collect())
}

/// What changes when the file does: size, modification time (to the
/// nanosecond), inode (a rename over it), and the path it was read through.
fn stamp(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok().filter(fs::Metadata::is_file)?;
    Some(format!(
        "v1 {} {}.{:09} {}:{} {}",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.dev(),
        meta.ino(),
        path.display()
    ))
}

fn file_name(path: &Path) -> String {
    format!(
        "{}.names",
        &super::file::digest(&path.display().to_string())[..16]
    )
}
