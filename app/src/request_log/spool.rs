//! The request log's on-disk spool: every row is appended to a file before its answer leaves.
//!
//! A `write(2)` into the page cache outlives the process, so rows survive kill -9, the OOM
//! killer and a database that is away for longer than any memory queue lasts; only a crash of
//! the machine itself (power, kernel) loses what the kernel had not written back yet. Each
//! process appends to a directory of its own, `<spool_dir>/<server_id>/<spool id>/`, in
//! numbered segment files, and holds an exclusive `flock` on its `lock` file for as long as
//! it runs. The writer reads the segments back in order (`spool_reader`); a directory whose
//! lock nobody holds belongs to a process that is gone, and the first writer to lock it
//! replays it (see [`orphans`]). The total is bounded by `request_log.spool_max_bytes`; past
//! it new rows are dropped and counted (`reason="spool_full"`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

use tokio::sync::Notify;

use super::record::LogRecord;
use super::spool_line::encode;

/// Segments are this long at most (smaller when the whole spool may hold little): big enough
/// that rotating is rare, small enough that a written segment soon frees its space.
const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
const MIN_SEGMENT_BYTES: u64 = 64 * 1024;
/// The file in each spool directory its process holds locked.
const LOCK_FILE: &str = "lock";
/// The file in each spool directory that names (as a hash) the database its rows belong to.
const DATABASE_FILE: &str = "database";

/// Why a row did not go into the spool.
#[derive(Debug)]
pub enum AppendError {
    /// `request_log.spool_max_bytes` reached.
    Full,
    /// The process is past its final flush.
    Closed,
    /// The file system refused (full, read-only, failing).
    Io(io::Error),
}

/// This process's spool: the request path appends to it, the writer reads it. Shared.
pub struct Spool {
    root: PathBuf,
    dir: PathBuf,
    id: String,
    /// The hash of the database this process writes to (see [`database_tag`]).
    database: String,
    /// Orphans of other databases already reported, so each is named once.
    foreign: Mutex<std::collections::HashSet<PathBuf>>,
    max_bytes: u64,
    segment_bytes: u64,
    writing: Mutex<Writing>,
    /// The segment appends go to; read without the lock by the writer, which must know
    /// whether a segment is finished.
    segment: AtomicU64,
    closed: AtomicBool,
    /// Bytes of every spool file this process owns or adopted that is not deleted yet.
    bytes: AtomicU64,
    /// Rows appended and not yet written to the database.
    pending: AtomicI64,
    /// Rows pending that wake the writer before its interval is up.
    wake_at: i64,
    /// Wakes the writer when a batch is waiting.
    pub(super) ready: Notify,
    /// Held for the process's lifetime: the lock that tells other processes this spool is live.
    _lock: File,
}

struct Writing {
    file: File,
    len: u64,
}

impl Spool {
    /// Creates this process's spool directory under `root/server_id` and locks it. It is
    /// made under a hidden name and renamed once locked, so no other process ever sees it
    /// unlocked and adopts it.
    pub fn create(
        root: &Path,
        server_id: &str,
        database_identity: &str,
        max_bytes: u64,
        wake_at: usize,
    ) -> io::Result<Self> {
        let id = uuid::Uuid::now_v7().simple().to_string();
        let parent = root.join(server_id);
        std::fs::create_dir_all(&parent)?;
        let hidden = parent.join(format!(".{id}"));
        std::fs::create_dir(&hidden)?;
        let lock = File::create(hidden.join(LOCK_FILE))?;
        lock.try_lock().map_err(|err| match err {
            TryLockError::Error(err) => err,
            TryLockError::WouldBlock => io::Error::other("a new spool is locked already"),
        })?;
        let database = database_tag(database_identity);
        std::fs::write(hidden.join(DATABASE_FILE), &database)?;
        let dir = parent.join(&id);
        std::fs::rename(&hidden, &dir)?;
        let file = open_segment(&dir, 1)?;
        Ok(Self {
            root: root.to_owned(),
            dir,
            id,
            database,
            foreign: Mutex::new(Default::default()),
            max_bytes,
            segment_bytes: (max_bytes / 8).clamp(MIN_SEGMENT_BYTES, MAX_SEGMENT_BYTES),
            writing: Mutex::new(Writing { file, len: 0 }),
            segment: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            pending: AtomicI64::new(0),
            wake_at: wake_at as i64,
            ready: Notify::new(),
            _lock: lock,
        })
    }

    /// Appends one row with one `write(2)`. Done before the answer is sent: once a client
    /// has an answer, its row is in the page cache.
    pub fn append(&self, record: &LogRecord) -> Result<(), AppendError> {
        let mut line = Vec::with_capacity(128);
        encode(record, &mut line);
        let len = line.len() as u64;
        if self.bytes.load(Ordering::Relaxed) + len > self.max_bytes {
            return Err(AppendError::Full);
        }
        let mut writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        if self.closed.load(Ordering::Relaxed) {
            return Err(AppendError::Closed);
        }
        if writing.len > 0 && writing.len + len > self.segment_bytes {
            self.rotate(&mut writing).map_err(AppendError::Io)?;
        }
        match (&writing.file).write(&line) {
            Ok(n) if n as u64 == len => {}
            outcome => {
                // A part of a line would garble the next one: cut the file back to the last
                // whole line (appends go to the end, wherever that is).
                let _ = writing.file.set_len(writing.len);
                return Err(AppendError::Io(match outcome {
                    Err(err) => err,
                    Ok(_) => io::Error::new(io::ErrorKind::WriteZero, "short write"),
                }));
            }
        }
        writing.len += len;
        drop(writing);
        self.bytes.fetch_add(len, Ordering::Relaxed);
        if self.pending.fetch_add(1, Ordering::Relaxed) + 1 == self.wake_at {
            self.ready.notify_one();
        }
        Ok(())
    }

    fn rotate(&self, writing: &mut Writing) -> io::Result<()> {
        let next = self.segment.load(Ordering::Relaxed) + 1;
        writing.file = open_segment(&self.dir, next)?;
        writing.len = 0;
        // After the switch: every write to the old segment happened before this store.
        self.segment.store(next, Ordering::Release);
        Ok(())
    }

    /// No more appends (after the final flush started); what is on disk stays.
    pub fn close(&self) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.closed.store(true, Ordering::Release);
    }

    /// The directory's name, which is also its key in `request_log_spools`.
    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of spool files not yet deleted, this process's and the ones it adopted.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Rows of this process waiting for the database.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed).max(0) as u64
    }

    pub(super) fn current_segment(&self) -> u64 {
        self.segment.load(Ordering::Acquire)
    }

    /// Whether no more rows can come into `segment`.
    pub(super) fn finished(&self, segment: u64) -> bool {
        self.closed.load(Ordering::Acquire) || self.segment.load(Ordering::Acquire) > segment
    }

    pub(super) fn written(&self, rows: usize) {
        self.pending.fetch_sub(rows as i64, Ordering::Relaxed);
    }

    pub(super) fn freed(&self, bytes: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(bytes))
            });
    }

    pub(super) fn adopted(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

pub(super) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:012}.log"))
}

fn open_segment(dir: &Path, segment: u64) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(segment_path(dir, segment))
}

/// The segment numbers in `dir`, in order.
pub(super) fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut found: Vec<u64> = std::fs::read_dir(dir)?
        .filter_map(|entry| {
            let name = entry.ok()?.file_name();
            name.to_str()?.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    found.sort_unstable();
    Ok(found)
}

/// A spool directory of a process that is gone, locked by this one now.
pub struct Orphan {
    pub dir: PathBuf,
    pub spool_id: String,
    /// The server id its rows were answered as.
    pub server_id: String,
    pub(super) lock: File,
}

/// Locks and returns every spool directory under the root whose process is gone (nobody
/// holds its lock), oldest first; hidden ones (a process died while creating it: no rows)
/// are removed.
pub fn orphans(spool: &Spool) -> io::Result<Vec<Orphan>> {
    let mut found = Vec::new();
    for server in std::fs::read_dir(&spool.root)? {
        let server = server?;
        if !server.file_type()?.is_dir() {
            continue;
        }
        let Some(server_id) = server.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        for entry in std::fs::read_dir(server.path())? {
            let entry = entry?;
            let dir = entry.path();
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if dir == spool.dir || !entry.file_type()?.is_dir() {
                continue;
            }
            let Ok(lock) = OpenOptions::new()
                .read(true)
                .write(true)
                .open(dir.join(LOCK_FILE))
            else {
                continue;
            };
            if lock.try_lock().is_err() {
                continue;
            }
            if name.starts_with('.') {
                let _ = std::fs::remove_dir_all(&dir);
                continue;
            }
            // A spool of another database (the folder is shared, or `database.url` changed)
            // is left for a process of that database: replayed here, its rows would land in
            // the wrong one. A spool without the file predates the tag and is adopted.
            if let Ok(tag) = std::fs::read_to_string(dir.join(DATABASE_FILE))
                && tag != spool.database
            {
                let mut foreign = spool.foreign.lock().unwrap_or_else(|e| e.into_inner());
                if foreign.insert(dir.clone()) {
                    tracing::warn!(
                        dir = %dir.display(),
                        "request log spool of another database left alone: a process of that \
                         database replays it"
                    );
                }
                continue;
            }
            found.push(Orphan {
                dir,
                spool_id: name,
                server_id: server_id.clone(),
                lock,
            });
        }
    }
    found.sort_by(|a, b| a.spool_id.cmp(&b.spool_id));
    Ok(found)
}

/// The tag a spool carries for `identity` (`Settings::database_identity`): a hash, so that
/// nothing of a URL is written to disk, whatever a malformed one holds.
fn database_tag(identity: &str) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(identity.as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}
