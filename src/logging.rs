//! Structured logs to stderr. A command writes each line as it happens; the server
//! ([`buffer_while_serving`]) gathers its info lines — one access line per request — and
//! writes them out together every [`FLUSH_EVERY`] or every [`BUFFER_LIMIT`] bytes, the way
//! nginx's `access_log … buffer= flush=` does: one `write` a batch instead of one per
//! request (it was 3.7 % of a find's CPU in the profile, README › *Performance*). Warnings
//! and errors are written at once, after what is buffered before them, so lines keep their
//! order. The buffer is written out when the server stops; a process that is killed loses
//! at most its last [`FLUSH_EVERY`] of info lines (the audit log, not this log, is the
//! record of what was done).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

use crate::config::LogFormat;

/// How long an info line waits in the buffer at most.
pub const FLUSH_EVERY: Duration = Duration::from_millis(100);

/// Buffered bytes that are written out at once, whatever the time.
const BUFFER_LIMIT: usize = 32 * 1024;

/// Lines not written yet; empty unless the server buffers.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Whether info lines wait in [`PENDING`].
static BUFFERING: AtomicBool = AtomicBool::new(false);

/// Logs to stderr; `RUST_LOG` narrows or widens them (default `info`).
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        // Colours only for a person at a terminal: a file or journal gets plain text (and
        // the server skips formatting the escape codes on every line).
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Buffers info lines until the returned guard is dropped (which writes out what is left);
/// a task of the current runtime writes the buffer every [`FLUSH_EVERY`].
pub fn buffer_while_serving() -> Buffered {
    BUFFERING.store(true, Ordering::Release);
    let flusher = tokio::spawn(async {
        let mut every = tokio::time::interval(FLUSH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            write_out(&[]);
        }
    });
    Buffered(flusher)
}

/// Ends [`buffer_while_serving`] when dropped.
pub struct Buffered(tokio::task::JoinHandle<()>);

impl Drop for Buffered {
    fn drop(&mut self) {
        self.0.abort();
        BUFFERING.store(false, Ordering::Release);
        write_out(&[]);
    }
}

/// Writes what is buffered, then `line`, to stderr, in that order. A log line that cannot
/// be written is dropped: stderr has nowhere to report it.
fn write_out(line: &[u8]) {
    let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
    if pending.is_empty() && line.is_empty() {
        return;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(&pending);
    let _ = stderr.write_all(line);
    pending.clear();
}

/// The formatter's writer: one per line, told the line's level.
#[derive(Clone, Copy)]
struct Stderr;

impl MakeWriter<'_> for Stderr {
    type Writer = Line;

    fn make_writer(&self) -> Line {
        Line { urgent: true }
    }

    fn make_writer_for(&self, meta: &tracing::Metadata<'_>) -> Line {
        Line {
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

/// One formatted line (the formatter writes each in one call).
struct Line {
    urgent: bool,
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.urgent && BUFFERING.load(Ordering::Acquire) {
            let mut pending = PENDING.lock().unwrap_or_else(|p| p.into_inner());
            if pending.len() + buf.len() <= BUFFER_LIMIT {
                pending.extend_from_slice(buf);
                return Ok(buf.len());
            }
        }
        write_out(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Vec<u8> {
        PENDING.lock().unwrap().clone()
    }

    #[test]
    fn info_lines_wait_and_a_warning_writes_them_out_first() {
        BUFFERING.store(true, Ordering::Release);
        let (mut info, mut warning) = (Line { urgent: false }, Line { urgent: true });
        info.write_all(b"(logging test) info 1\n").unwrap();
        info.write_all(b"(logging test) info 2\n").unwrap();
        assert_eq!(pending(), b"(logging test) info 1\n(logging test) info 2\n");
        warning.write_all(b"(logging test) warning\n").unwrap();
        assert!(pending().is_empty(), "the warning wrote out what waited");
        // Not buffering (a command, or the server stopped): every line at once.
        BUFFERING.store(false, Ordering::Release);
        info.write_all(b"(logging test) info 3\n").unwrap();
        assert!(pending().is_empty());
    }
}
