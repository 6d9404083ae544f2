//! What both kinds of backup share: files put in place atomically, sizes for people, the progress line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

/// What a restore put back, for the summary line.
pub struct Restored {
    pub users: i64,
    pub log_rows: i64,
}

/// The file a command writes before it is complete: beside the final one, so the rename that
/// publishes it stays on one filesystem and is atomic.
pub fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Makes `tmp` durable and renames it to `path`, then makes the rename durable: a crash leaves
/// either the old file or the whole new one, never a torn one.
pub fn publish(tmp: &Path, path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("flushing {} to disk", tmp.display()))?;
    std::fs::rename(tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))
        .and_then(|d| d.sync_all())
        .with_context(|| format!("flushing the folder of {}", path.display()))
}

/// Moves a finished backup into place and says what was written, how big and how long it took.
pub fn publish_backup(partial: &Path, out: &Path, progress: Progress) -> anyhow::Result<()> {
    publish(partial, out)?;
    let took = progress.finish();
    println!(
        "wrote {} ({}) in {:.1} s",
        out.display(),
        human(size_of(out)),
        took.as_secs_f64()
    );
    Ok(())
}

/// Removes a file that may not be there.
pub fn remove_if_present(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

/// The size of a file, 0 when it is not there (yet).
pub fn size_of(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Bytes as a person reads them.
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1_000_000_000 => format!("{:.2} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// A line on stderr saying what is going on while a long step runs: redrawn in place on a
/// terminal, a new line every few seconds otherwise (so logs of scripted runs stay short).
pub struct Progress {
    step: Arc<Mutex<String>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    started: Instant,
}

impl Progress {
    /// Starts reporting `what`, with the size of `growing` when given (the file being written).
    pub fn start(what: &str, growing: Option<PathBuf>) -> Progress {
        let step = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let terminal = std::io::stderr().is_terminal();
        let thread = {
            let (step, stop, what) = (step.clone(), stop.clone(), what.to_owned());
            std::thread::spawn(move || {
                let every = if terminal { 20 } else { 50 };
                let mut tick = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    tick += 1;
                    if !tick.is_multiple_of(every) {
                        continue;
                    }
                    let size = growing
                        .as_deref()
                        .map(|p| format!(", {} written", human(size_of(p))))
                        .unwrap_or_default();
                    let step = step.lock().map(|s| s.clone()).unwrap_or_default();
                    let step = if step.is_empty() {
                        step
                    } else {
                        format!(": {step}")
                    };
                    let line = format!(
                        "{what}{step}{size} ({:.0} s)",
                        started.elapsed().as_secs_f64()
                    );
                    let mut err = std::io::stderr().lock();
                    let _ = if terminal {
                        write!(err, "\r\x1b[2K{line}")
                    } else {
                        writeln!(err, "{line}")
                    };
                    let _ = err.flush();
                }
            })
        };
        eprintln!("{what} ...");
        Progress {
            step,
            stop,
            thread: Some(thread),
            started,
        }
    }

    /// A handle the tool's output reader updates with the step it is at.
    pub fn step(&self) -> Arc<Mutex<String>> {
        self.step.clone()
    }

    /// Stops the line; the time since the start.
    pub fn finish(mut self) -> Duration {
        self.halt();
        self.started.elapsed()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
            if std::io::stderr().is_terminal() {
                eprint!("\r\x1b[2K");
            }
        }
    }
}

impl Drop for Progress {
    // An error path must not leave the thread drawing over the error message.
    fn drop(&mut self) {
        self.halt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(999), "999 B");
        assert_eq!(human(12_345), "12.3 kB");
        assert_eq!(human(85_400_000), "85.4 MB");
        assert_eq!(human(2_500_000_000), "2.50 GB");
    }

    #[test]
    fn the_file_in_progress_sits_beside_the_final_one() {
        assert_eq!(
            beside(Path::new("/b/local.sqlite"), ".partial"),
            Path::new("/b/local.sqlite.partial")
        );
    }
}
