//! The on-disk, cross-process token cache.
//!
//! One small JSON file per key in the user's cache directory (0700, files 0600).
//! Reads take no lock: writers replace files atomically (temp file + rename), so a
//! reader sees the old entry or the new one. Refreshes are single-flight across
//! processes through a per-key lock file (`flock`, released by the kernel when a
//! process dies, so it can never go stale).
//!
//! The hit path (`TokenCache::locate` + `TokenCache::get`) is plain file I/O: it
//! must never grow a runtime, a client or a credential chain.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, warn};

/// Bump when the meaning of a key or the entry format changes: old files become misses.
const FORMAT: u32 = 1;
/// Entries are tiny; anything bigger is not ours.
const MAX_ENTRY_BYTES: u64 = 64 * 1024;
/// Files a write looks at when it collects expired entries.
const SWEEP_BUDGET: usize = 32;
/// How long past its expiry an entry (or an unreadable file) is kept.
const SWEEP_GRACE_SECS: i64 = 3600;

/// The key kind of a file fleetctx wrote in the cache directory:
/// `{kind}-{digest}.json`, `.lock`, or `.{kind}-{digest}.{pid}.{nanos}.tmp`.
fn kind_of_file(name: &str) -> Option<&str> {
    let stem = match name.strip_prefix('.') {
        Some(tmp) => tmp.strip_suffix(".tmp")?.split('.').next()?,
        None => name
            .strip_suffix(".json")
            .or_else(|| name.strip_suffix(".lock"))?,
    };
    let (kind, digest) = stem.rsplit_once('-')?;
    (digest.len() == 32 && digest.chars().all(|c| c.is_ascii_hexdigit()) && !kind.is_empty())
        .then_some(kind)
}

/// Seconds since the Unix epoch, the only clock the cache uses.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// A string that must never be printed: `Debug` shows only its length.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} bytes redacted>)", self.0.len())
    }
}

/// Which cache file an identity's token lives in. Built from everything that
/// selects the identity or changes the token, so switching accounts can never be
/// served the previous account's token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheKey {
    kind: &'static str,
    digest: String,
}

impl CacheKey {
    pub fn kind(&self) -> &'static str {
        self.kind
    }
    fn stem(&self) -> String {
        format!("{}-{}", self.kind, self.digest)
    }
}

/// Hashes named parts into a `CacheKey`. Part names keep `("a", "bc")` and
/// `("ab", "c")` apart.
pub struct KeyBuilder {
    kind: &'static str,
    hasher: Sha256,
}

impl KeyBuilder {
    pub fn new(kind: &'static str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(format!("fleetctx-cache-v{FORMAT}\0{kind}\0"));
        KeyBuilder { kind, hasher }
    }

    pub fn part(mut self, name: &str, value: Option<&str>) -> Self {
        self.hasher.update(name.as_bytes());
        match value {
            Some(v) => {
                self.hasher.update(b"=");
                self.hasher.update((v.len() as u64).to_le_bytes());
                self.hasher.update(v.as_bytes());
            }
            None => self.hasher.update(b"\x01unset"),
        }
        self.hasher.update(b"\0");
        self
    }

    /// An environment variable, by name.
    pub fn env(self, name: &str) -> Self {
        let value = std::env::var(name).ok();
        self.part(name, value.as_deref())
    }

    /// A file that picks credentials: its path and a fingerprint of its state
    /// (size and modification time), so editing it switches the key.
    pub fn file(self, name: &str, path: Option<&Path>) -> Self {
        let print = path.map(|p| match fs::metadata(p) {
            Ok(m) => {
                let mtime = m
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_nanos())
                    .unwrap_or(0);
                format!("{}|{}|{}", p.display(), m.len(), mtime)
            }
            Err(_) => format!("{}|absent", p.display()),
        });
        self.part(name, print.as_deref())
    }

    pub fn finish(self) -> CacheKey {
        let digest = self.hasher.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        CacheKey {
            kind: self.kind,
            digest: hex,
        }
    }
}

/// One cached credential. `identity` is a human description (never a secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub format: u32,
    pub kind: String,
    pub identity: String,
    /// Unix seconds after which the secret is no longer valid.
    pub expires_at: i64,
    /// The same instant as RFC 3339, ready for `expirationTimestamp`.
    pub expiration: String,
    pub created_at: i64,
    pub secret: Secret,
}

impl Entry {
    pub fn new(key: &CacheKey, identity: String, expires_at: i64, secret: Secret) -> Self {
        Entry {
            format: FORMAT,
            kind: key.kind.to_string(),
            identity,
            expires_at,
            expiration: rfc3339(expires_at),
            created_at: now(),
            secret,
        }
    }
}

pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string())
}

#[derive(Clone, Debug)]
pub struct TokenCache {
    dir: PathBuf,
}

/// Holds a refresh lock until dropped (the kernel drops it if the process dies).
pub struct RefreshLock {
    _file: File,
}

impl TokenCache {
    /// The user's cache directory for fleetctx: `$XDG_CACHE_HOME/fleetctx` when set,
    /// else the platform's (`~/.cache/fleetctx` on Linux). Pure path computation.
    pub fn locate() -> Option<TokenCache> {
        let dir = match std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from) {
            Some(xdg) if xdg.is_absolute() => xdg.join("fleetctx"),
            _ => directories::ProjectDirs::from("", "", "fleetctx")?
                .cache_dir()
                .to_path_buf(),
        };
        Some(TokenCache { dir })
    }

    pub fn at(dir: impl Into<PathBuf>) -> TokenCache {
        TokenCache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.stem()))
    }

    /// The entry for `key` if it is still valid at `valid_until` (unix seconds).
    /// Anything unreadable, corrupt, foreign or readable by others is a miss.
    pub fn get(&self, key: &CacheKey, valid_until: i64) -> Option<Entry> {
        let entry = read_entry(&self.path(key))?;
        (entry.kind == key.kind && entry.expires_at > valid_until).then_some(entry)
    }

    /// Every readable entry, for `cache list`.
    pub fn entries(&self) -> Vec<(PathBuf, Entry)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<_> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .filter_map(|p| read_entry(&p).map(|e| (p, e)))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    /// Atomically replaces the entry for `key` (temp file, 0600, then rename).
    pub fn put(&self, key: &CacheKey, entry: &Entry) -> Result<()> {
        self.ensure_dir()?;
        let path = self.path(key);
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            key.stem(),
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        let body = serde_json::to_vec(entry)
            .map_err(|e| Error::new("could not encode a cache entry").cause(e))?;
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(&body))
            .and_then(|_| fs::rename(&tmp, &path));
        written.map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::new(format!("could not write cache file {}", path.display())).cause(e)
        })?;
        self.sweep();
        Ok(())
    }

    /// Every file of fleetctx's in the directory with the kind of key it belongs
    /// to: entries (readable or not), lock files and temp files. For `cache clear`,
    /// which must also remove the entries `get` refuses to read.
    pub fn files(&self) -> Vec<(PathBuf, String)> {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut found: Vec<(PathBuf, String)> = dir
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let kind = kind_of_file(&name)?.to_string();
                Some((e.path(), kind))
            })
            .collect();
        found.sort();
        found
    }

    /// Removes expired entries and their lock files, looking at no more than
    /// `SWEEP_BUDGET` files (a window that moves with the clock), so a write costs
    /// the same in a cache of ten entries or ten thousand.
    fn sweep(&self) {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return;
        };
        let entries: Vec<PathBuf> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        if entries.is_empty() {
            return;
        }
        let start = (now().unsigned_abs() as usize) % entries.len();
        let now = now();
        for path in entries
            .iter()
            .cycle()
            .skip(start)
            .take(SWEEP_BUDGET.min(entries.len()))
        {
            let expired = match read_entry(path) {
                Some(entry) => entry.expires_at + SWEEP_GRACE_SECS < now,
                // Unreadable or exposed: never served, so only in the way.
                None => fs::metadata(path).is_ok_and(|m| {
                    m.modified().is_ok_and(|t| {
                        t.elapsed()
                            .is_ok_and(|age| age.as_secs() > SWEEP_GRACE_SECS as u64)
                    })
                }),
            };
            if expired {
                let _ = fs::remove_file(path);
                let lock = path.with_extension("lock");
                // Only a lock nobody holds: a waiter would otherwise refresh twice.
                if let Ok(file) = File::open(&lock)
                    && file.try_lock().is_ok()
                {
                    let _ = fs::remove_file(&lock);
                }
            }
        }
    }

    /// Takes the refresh lock for `key`, waiting at most `timeout`. Says on stderr
    /// what it waits for when another process holds it.
    pub fn lock(&self, key: &CacheKey, timeout: Duration, what: &str) -> Result<RefreshLock> {
        self.ensure_dir()?;
        let path = self.dir.join(format!("{}.lock", key.stem()));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| {
                Error::new(format!("could not open lock file {}", path.display())).cause(e)
            })?;
        let started = Instant::now();
        let mut said = false;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(RefreshLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => {
                    return Err(Error::new(format!("could not lock {}", path.display())).cause(e));
                }
            }
            if !said {
                eprintln!(
                    "fleetctx: waiting for {} (another fleetctx is refreshing {what})",
                    path.display()
                );
                said = true;
            }
            if started.elapsed() >= timeout {
                return Err(Error::new(format!(
                    "timed out after {}s waiting for lock {} (another fleetctx is refreshing {what})",
                    timeout.as_secs(),
                    path.display()
                ))
                .hint("set FLEETCTX_LOCK_TIMEOUT (seconds) to wait longer"));
            }
            std::thread::sleep(Duration::from_millis(15));
        }
    }

    /// `lock`, but a lock that cannot be had (timed out, unwritable directory)
    /// is a warning: the caller refreshes without it rather than failing.
    pub fn lock_or_warn(
        &self,
        key: &CacheKey,
        timeout: Duration,
        what: &str,
    ) -> Option<RefreshLock> {
        match self.lock(key, timeout, what) {
            Ok(lock) => Some(lock),
            Err(e) => {
                warn(format!("{}; refreshing without the lock", e.message()));
                None
            }
        }
    }

    /// Creates the directory 0700, and takes back permissions others were given.
    fn ensure_dir(&self) -> Result<()> {
        let fail = |e: io::Error| {
            Error::new(format!(
                "could not create cache directory {}",
                self.dir.display()
            ))
            .cause(e)
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(fail)?;
        let meta = fs::metadata(&self.dir).map_err(fail)?;
        if meta.permissions().mode() & 0o077 != 0 {
            fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        Ok(())
    }
}

fn read_entry(path: &Path) -> Option<Entry> {
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_ENTRY_BYTES {
        return None;
    }
    if meta.permissions().mode() & 0o077 != 0 {
        // Readable by others: the secret may have leaked; never serve it.
        return None;
    }
    let mut body = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ENTRY_BYTES).read_to_end(&mut body).ok()?;
    let entry: Entry = serde_json::from_slice(&body).ok()?;
    (entry.format == FORMAT).then_some(entry)
}

/// Writes an entry, downgrading failure to a warning: an unwritable cache must
/// still yield a token.
pub fn put_or_warn(cache: &TokenCache, key: &CacheKey, entry: &Entry) {
    if let Err(e) = cache.put(key, entry) {
        warn(format!("{}; continuing without caching", e.message()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_cache(name: &str) -> TokenCache {
        let dir =
            std::env::temp_dir().join(format!("fleetctx-cache-test-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        TokenCache::at(dir)
    }

    #[test]
    fn key_parts_do_not_run_together() {
        let a = KeyBuilder::new("eks").part("a", Some("bc")).finish();
        let b = KeyBuilder::new("eks").part("ab", Some("c")).finish();
        let unset = KeyBuilder::new("eks").part("a", None).finish();
        let empty = KeyBuilder::new("eks").part("a", Some("")).finish();
        assert_ne!(a, b);
        assert_ne!(unset, empty);
    }

    #[test]
    fn round_trip_is_private_and_expiry_aware() {
        let cache = temp_cache("rt");
        let key = KeyBuilder::new("gke").part("x", Some("1")).finish();
        let entry = Entry::new(&key, "someone".into(), now() + 600, Secret::new("s3cret"));
        cache.put(&key, &entry).unwrap();
        let mode = fs::metadata(cache.path(&key)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            fs::metadata(cache.dir()).unwrap().permissions().mode() & 0o777,
            0o700
        );
        assert_eq!(cache.get(&key, now()).unwrap().secret.expose(), "s3cret");
        assert!(cache.get(&key, now() + 601).is_none());
        fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn corrupt_or_exposed_entries_are_misses() {
        let cache = temp_cache("bad");
        let key = KeyBuilder::new("gke").finish();
        let entry = Entry::new(&key, "someone".into(), now() + 600, Secret::new("s3cret"));
        cache.put(&key, &entry).unwrap();
        fs::set_permissions(cache.path(&key), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(cache.get(&key, now()).is_none());
        fs::write(cache.path(&key), b"{\"format\":1,\"ki").unwrap();
        fs::set_permissions(cache.path(&key), fs::Permissions::from_mode(0o600)).unwrap();
        assert!(cache.get(&key, now()).is_none());
        fs::remove_dir_all(cache.dir()).unwrap();
    }

    #[test]
    fn debug_never_shows_a_secret() {
        let entry = Entry::new(
            &KeyBuilder::new("eks").finish(),
            "id".into(),
            0,
            Secret::new("tok-123"),
        );
        assert!(!format!("{entry:?}").contains("tok-123"));
    }

    #[test]
    fn only_our_own_file_names_have_a_kind() {
        let digest = "0123456789abcdef0123456789abcdef";
        assert_eq!(
            kind_of_file(&format!("aws-role-{digest}.json")),
            Some("aws-role")
        );
        assert_eq!(kind_of_file(&format!("eks-{digest}.lock")), Some("eks"));
        assert_eq!(
            kind_of_file(&format!(".gke-{digest}.12.34.tmp")),
            Some("gke")
        );
        for other in [
            "notes.txt",
            "eks-123.json",
            &format!("{digest}.json"),
            "..tmp",
        ] {
            assert_eq!(kind_of_file(other), None, "{other}");
        }
    }

    #[test]
    fn rfc3339_is_utc_with_z() {
        assert_eq!(rfc3339(1682640840), "2023-04-28T00:14:00Z");
    }
}
