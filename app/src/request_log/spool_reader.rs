//! Reading a spool back in order: the writer's side, one batch of rows at a time.
//!
//! A segment file is deleted only when the reader is asked for more after reaching its end,
//! which the writer does only once the rows it was given are committed: until then they are
//! still on disk for a replay, and the position in `request_log_spools` says which of them
//! the database has.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use super::record::LogRecord;
use super::spool::{Orphan, Spool, segment_path, segments};
use super::spool_line::decode;

/// How much of a segment is read at a time.
const CHUNK: usize = 64 * 1024;

/// A row read back, and where it ends in its spool.
pub struct Spooled {
    pub record: LogRecord,
    pub segment: u64,
    /// The byte after the row's line: where a replay starts once the row is committed.
    pub end: u64,
}

/// What reading found besides rows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Lines that are not rows.
    pub corrupt: u64,
    /// A last line without its end: a `write(2)` cut short by the process's death, so that
    /// request was never answered.
    pub torn: u64,
}

/// Reads one spool directory: this process's own (still being appended to) or an adopted
/// one (complete).
pub struct Reader {
    spool: Arc<Spool>,
    own: bool,
    dir: PathBuf,
    pub spool_id: String,
    pub server_id: String,
    /// Adopted spools: the segments after the current one.
    next: VecDeque<u64>,
    /// `None` once every segment is read and deleted.
    segment: Option<u64>,
    file: Option<File>,
    buf: Vec<u8>,
    /// Where in the segment the rows handed out so far end.
    consumed: u64,
    _lock: Option<File>,
}

impl Reader {
    /// This process's own spool, from its start.
    pub fn own(spool: Arc<Spool>, server_id: &str) -> Self {
        Self {
            dir: spool.dir().to_owned(),
            spool_id: spool.id().to_owned(),
            server_id: server_id.to_owned(),
            own: true,
            spool,
            next: VecDeque::new(),
            segment: Some(1),
            file: None,
            buf: Vec::new(),
            consumed: 0,
            _lock: None,
        }
    }

    /// A dead process's spool, from `(segment, offset)`, the position the database has: the
    /// segments before it are written already and are deleted.
    pub fn adopt(spool: Arc<Spool>, orphan: Orphan, from: (u64, u64)) -> io::Result<Self> {
        let mut next = VecDeque::new();
        let mut bytes = 0;
        for segment in segments(&orphan.dir)? {
            let path = segment_path(&orphan.dir, segment);
            if segment < from.0 {
                std::fs::remove_file(&path)?;
            } else {
                bytes += std::fs::metadata(&path)?.len();
                next.push_back(segment);
            }
        }
        spool.adopted(bytes);
        let segment = next.pop_front();
        Ok(Self {
            consumed: if segment == Some(from.0) { from.1 } else { 0 },
            spool,
            own: false,
            dir: orphan.dir,
            spool_id: orphan.spool_id,
            server_id: orphan.server_id,
            next,
            segment,
            file: None,
            buf: Vec::new(),
            _lock: Some(orphan.lock),
        })
    }

    /// Every row is read and every segment deleted.
    pub fn is_done(&self) -> bool {
        self.segment.is_none()
    }

    /// The spool's directory, to remove once done.
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// Appends up to `max` rows to `out` (none when nothing new is there yet). Call again
    /// only once the rows handed out are committed: reaching the end of a finished segment
    /// deletes it.
    pub fn read(&mut self, max: usize, out: &mut Vec<Spooled>) -> io::Result<Skipped> {
        let mut skipped = Skipped::default();
        let mut start = 0;
        while let Some(segment) = self.segment {
            while out.len() < max {
                let Some(at) = self.buf[start..].iter().position(|b| *b == b'\n') else {
                    break;
                };
                let line = &self.buf[start..start + at];
                start += at + 1;
                self.consumed += at as u64 + 1;
                match decode(line) {
                    Some(record) => out.push(Spooled {
                        record,
                        segment,
                        end: self.consumed,
                    }),
                    None => skipped.corrupt += 1,
                }
            }
            self.buf.drain(..start);
            start = 0;
            if out.len() >= max {
                break;
            }
            // Asked before reading: if the segment was finished then, the end this read
            // finds is its real end.
            let finished = !self.own || self.spool.finished(segment);
            if !self.open(segment, finished)? {
                if self.segment != Some(segment) {
                    continue;
                }
                break;
            }
            let (Some(file), buf) = (self.file.as_mut(), &mut self.buf) else {
                break;
            };
            let old = buf.len();
            buf.resize(old + CHUNK, 0);
            let n = file.read(&mut buf[old..])?;
            buf.truncate(old + n);
            if n > 0 || !finished || !out.is_empty() {
                if n == 0 {
                    break;
                }
                continue;
            }
            if !self.buf.is_empty() {
                skipped.torn += 1;
                self.buf.clear();
            }
            self.file = None;
            let path = segment_path(&self.dir, segment);
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&path)?;
            self.spool.freed(size);
            self.consumed = 0;
            self.segment = if self.own {
                Some(segment + 1)
            } else {
                self.next.pop_front()
            };
        }
        Ok(skipped)
    }

    /// Opens the segment, positioned after what was handed out; false when it is not
    /// there, having moved on to the next one if it never will be.
    fn open(&mut self, segment: u64, finished: bool) -> io::Result<bool> {
        if self.file.is_some() {
            return Ok(true);
        }
        match File::open(segment_path(&self.dir, segment)) {
            Ok(mut file) => {
                file.seek(SeekFrom::Start(self.consumed))?;
                self.file = Some(file);
                Ok(true)
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                if finished {
                    self.consumed = 0;
                    self.segment = if self.own {
                        // Closed on this segment: nothing comes after it.
                        (self.spool.current_segment() > segment).then_some(segment + 1)
                    } else {
                        self.next.pop_front()
                    };
                }
                Ok(false)
            }
            Err(err) => Err(err),
        }
    }
}
