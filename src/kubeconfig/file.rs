//! kubectl's `<file>.lock` and the safe write of a kubeconfig.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// kubectl's `<file>.lock`, created exclusively and removed when dropped.
pub struct FileLock {
    path: PathBuf,
}

impl FileLock {
    pub fn acquire(target: &Path, timeout: Duration) -> Result<FileLock> {
        let mut name = target.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| {
                Error::new(format!("could not create directory {}", dir.display())).cause(e)
            })?;
        }
        let started = Instant::now();
        let mut said = false;
        loop {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => return Ok(FileLock { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::new(format!(
                        "could not create lock file {}",
                        path.display()
                    ))
                    .cause(e));
                }
            }
            if !said {
                eprintln!(
                    "fleetctx: waiting for {} (kubectl or another fleetctx is writing {})",
                    path.display(),
                    target.display()
                );
                said = true;
            }
            if started.elapsed() >= timeout {
                return Err(Error::new(format!(
                    "timed out after {}s waiting for the lock {}",
                    timeout.as_secs(),
                    path.display()
                ))
                .hint(format!(
                    "if no kubectl or fleetctx is running, the lock is stale: remove {}",
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Where writes to `path` land: symlinks followed, dangling ones included (the
/// link stays a link; its target is created).
fn write_destination(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..40 {
        match fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                let link = fs::read_link(&current).map_err(|e| {
                    Error::new(format!("could not read the symlink {}", current.display())).cause(e)
                })?;
                current = match current.parent() {
                    Some(dir) => dir.join(link),
                    None => link,
                };
            }
            _ => return Ok(current),
        }
    }
    Err(Error::new(format!(
        "kubeconfig {} is a loop of symlinks",
        path.display()
    )))
}

/// A temp file next to `dest`, created exclusively (`O_EXCL`: a planted file or
/// symlink is never followed) under a name nobody can predict.
fn create_temp(dest: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    use std::hash::{BuildHasher, Hasher};
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = None;
    for _ in 0..16 {
        let mut hasher = std::hash::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        let tmp = dir.join(format!(".{name}.fleetctx-{:016x}.tmp", hasher.finish()));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
        {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no temp file name was free")))
}

/// Replaces the kubeconfig `target` with `text` (called under kubectl's lock).
///
/// Atomically when it can: a temp file in the same directory with the original's
/// mode, owner and group, synced, then renamed over it; a symlinked kubeconfig is
/// written through and stays a link. A read-only file is refused. A file that
/// cannot be renamed over (a single-file bind mount: EBUSY, EXDEV) is rewritten in
/// place, with a warning, once the temp file proved the data fits. On any failure
/// the original is left as it was and no temp file remains.
pub fn write_atomic(target: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let dest = write_destination(target)?;
    let failed = || Error::new(format!("could not write kubeconfig {}", target.display()));
    let existing = match fs::metadata(&dest) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed().cause(e)),
    };
    if let Some(m) = &existing
        && m.permissions().mode() & 0o222 == 0
    {
        return Err(Error::new(format!(
            "kubeconfig {} is read-only (mode {:o}); it was left untouched",
            target.display(),
            m.permissions().mode() & 0o7777
        ))
        .hint(format!(
            "make it writable (`chmod u+w {}`), or pass --kubeconfig FILE to write another file",
            dest.display()
        )));
    }
    let mode = existing
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let (tmp, mut file) = create_temp(&dest).map_err(|e| failed().cause(e))?;
    let cleanup = |e: std::io::Error| {
        let _ = fs::remove_file(&tmp);
        failed().cause(e)
    };
    file.write_all(text.as_bytes()).map_err(cleanup)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(cleanup)?;
    let mut in_place = None;
    if let Some(m) = &existing
        && let Err(e) = std::os::unix::fs::fchown(&file, Some(m.uid()), Some(m.gid()))
    {
        // Not ours to give away (not root): a rename would change the owner.
        in_place = Some(format!("its owner could not be kept ({e})"));
    }
    file.sync_all().map_err(cleanup)?;
    drop(file);
    if in_place.is_none() {
        match fs::rename(&tmp, &dest) {
            Ok(()) => {
                if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
                    && let Ok(d) = fs::File::open(dir)
                {
                    let _ = d.sync_all();
                }
                return Ok(());
            }
            Err(e) if matches!(e.raw_os_error(), Some(EBUSY | EXDEV)) => {
                in_place = Some(format!("it cannot be renamed over ({e}; a bind mount?)"));
            }
            Err(e) => return Err(cleanup(e)),
        }
    }
    let _ = fs::remove_file(&tmp);
    crate::error::warn(format!(
        "rewriting {} in place: {}",
        target.display(),
        in_place.unwrap_or_default()
    ));
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&dest)
        .map_err(|e| failed().cause(e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| failed().cause(e))?;
    file.sync_all().map_err(|e| failed().cause(e))
}

/// `rename(2)` onto a mount point, and across file systems.
const EBUSY: i32 = 16;
const EXDEV: i32 = 18;

/// Writes `text` to `dir/name`, readable by the owner alone (0600 in a 0700
/// directory), through a temporary file renamed into place.
pub fn write_private(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    let path = dir.join(name);
    let fail =
        |e: std::io::Error| Error::new(format!("could not write {}", path.display())).cause(e);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|_| fs::rename(&tmp, &path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            fail(e)
        })?;
    Ok(path)
}

/// The SHA-256 of `text` in hex: a plain file name for any string.
pub fn digest(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
