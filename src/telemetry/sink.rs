//! Where log lines go: a shared buffer that a writer thread drains to stdout in batches.
//!
//! A request appends its line under a short lock: no allocation of its own, no channel, no
//! syscall. The writer thread is woken once per batch (when a line lands in an empty
//! buffer), lets the batch gather for [`LINGER`], then writes all of it with one `write`.
//! The buffer is not lossy: past [`HIGH_WATER`] bytes (stdout slower than the log), a
//! writer of lines waits until the batch is taken, so memory stays bounded and no line is
//! dropped. Dropping the [`SinkGuard`] writes what is buffered and stops the thread.

use std::{
    io::Write,
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock},
    thread::JoinHandle,
    time::Duration,
};

/// How long a batch gathers after its first line before it is written.
const LINGER: Duration = Duration::from_millis(10);

/// Bytes buffered at most before writers of lines wait for the writer thread (~10k
/// request lines).
const HIGH_WATER: usize = 8 * 1024 * 1024;

/// A drained buffer bigger than this is not kept for the next batch.
const KEEP_CAPACITY: usize = 1024 * 1024;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    closed: bool,
}

#[derive(Default)]
struct Shared {
    buffer: Mutex<Buffer>,
    /// The writer thread waits here for a first line; writers of lines past the high
    /// water mark wait here for the batch to be taken.
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends whole lines; wakes the writer thread when they start a batch. Once the sink
    /// is closed (the process is stopping), lines are written straight to stdout.
    fn push(&self, line: &[u8]) {
        let mut buffer = self.lock();
        if buffer.closed {
            drop(buffer);
            let _ = std::io::stdout().write_all(line);
            return;
        }
        while buffer.bytes.len() >= HIGH_WATER && !buffer.closed {
            buffer = self
                .changed
                .wait(buffer)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let starts_batch = buffer.bytes.is_empty();
        buffer.bytes.extend_from_slice(line);
        drop(buffer);
        if starts_batch {
            self.changed.notify_all();
        }
    }

    /// The writer thread: waits for a batch, lets it gather, writes it; until closed and
    /// drained.
    fn drain(&self, out: &mut dyn Write) {
        let mut spare = Vec::new();
        loop {
            let mut buffer = self.lock();
            while buffer.bytes.is_empty() && !buffer.closed {
                buffer = self
                    .changed
                    .wait(buffer)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if buffer.bytes.is_empty() {
                return; // closed and drained
            }
            if !buffer.closed {
                drop(buffer);
                std::thread::sleep(LINGER);
                buffer = self.lock();
            }
            std::mem::swap(&mut buffer.bytes, &mut spare);
            drop(buffer);
            // Writers waiting at the high water mark may go on.
            self.changed.notify_all();
            // A log that cannot be written has nowhere to say so.
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
            if spare.capacity() > KEEP_CAPACITY {
                spare = Vec::new();
            }
        }
    }

    fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }
}

/// The process's sink, once [`install`]ed.
static SINK: OnceLock<Arc<Shared>> = OnceLock::new();

/// How long dropping the [`SinkGuard`] waits for the last batch to be written: a stdout
/// whose reader stalled must not keep the process from exiting.
const FINAL_FLUSH: Duration = Duration::from_secs(1);

/// Keeps the writer thread; dropping it writes what is buffered (for at most
/// [`FINAL_FLUSH`]) and stops the thread.
pub struct SinkGuard {
    shared: Arc<Shared>,
    /// Told by the writer thread when it has drained the buffer and stopped.
    stopped: std::sync::mpsc::Receiver<()>,
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        self.shared.close();
        let _ = self.stopped.recv_timeout(FINAL_FLUSH);
    }
}

/// Starts the writer thread draining to stdout and makes it the process's sink. `None`
/// when a sink is installed already or the thread cannot start (logging then writes to
/// stdout directly).
pub fn install() -> Option<SinkGuard> {
    let shared = Arc::new(Shared::default());
    let drainer = shared.clone();
    let (done, stopped) = std::sync::mpsc::channel();
    let _thread: JoinHandle<()> = std::thread::Builder::new()
        .name("switchyard-log".into())
        .spawn(move || {
            drainer.drain(&mut std::io::stdout());
            let _ = done.send(());
        })
        .ok()?;
    if SINK.set(shared.clone()).is_err() {
        shared.close(); // another sink serves; this one's thread ends at once
        return None;
    }
    Some(SinkGuard { shared, stopped })
}

/// Appends whole lines (each ending in `\n`) to the process's sink; `false` when none is
/// installed.
pub fn write_lines(lines: &[u8]) -> bool {
    match SINK.get() {
        Some(shared) => {
            shared.push(lines);
            true
        }
        None => false,
    }
}

/// `tracing`'s writer: every event (formatted whole, then written once) goes to the sink.
#[derive(Clone, Copy)]
pub struct MakeSinkWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeSinkWriter {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter
    }
}

/// One event's writer (see [`MakeSinkWriter`]).
pub struct SinkWriter;

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !write_lines(buf) {
            std::io::stdout().write_all(buf)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` that keeps what it was given, shared with the test.
    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<u8>>>);

    impl Write for Kept {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_is_written_once_in_order_and_close_drains_the_rest() {
        let shared = Arc::new(Shared::default());
        let kept = Kept::default();
        let drainer = shared.clone();
        let mut out = kept.clone();
        let thread = std::thread::spawn(move || drainer.drain(&mut out));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        shared.push(format!("{w} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        shared.close();
        thread.join().unwrap();
        let text = String::from_utf8(kept.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8_000);
        for w in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("{w} ")))
                .map(|n| n.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..2_000).collect::<Vec<_>>(), "writer {w}'s lines");
        }
    }

    #[test]
    fn lines_after_close_are_not_buffered() {
        let shared = Shared::default();
        shared.close();
        shared.push(b"{\"after\":\"close\"}\n");
        assert!(shared.lock().bytes.is_empty());
    }

    #[test]
    fn a_writer_past_the_high_water_mark_waits_for_the_batch_instead_of_growing_the_buffer() {
        let shared = Arc::new(Shared::default());
        let line = vec![b'x'; 1024 * 1024];
        // Fill to the mark with no drainer running.
        for _ in 0..HIGH_WATER / line.len() {
            shared.push(&line);
        }
        let pusher = {
            let shared = shared.clone();
            let line = line.clone();
            std::thread::spawn(move || shared.push(&line))
        };
        // Nothing drains yet: the pusher waits rather than grow the buffer past the mark.
        // (A wait that should not end cannot be awaited; a fixed pause shows it has not.)
        std::thread::sleep(Duration::from_millis(50));
        assert!(!pusher.is_finished());
        assert_eq!(shared.lock().bytes.len(), HIGH_WATER);
        let kept = Kept::default();
        let drainer = shared.clone();
        let mut out = kept.clone();
        let thread = std::thread::spawn(move || drainer.drain(&mut out));
        pusher.join().unwrap();
        shared.close();
        thread.join().unwrap();
        assert_eq!(kept.0.lock().unwrap().len(), HIGH_WATER + line.len());
    }
}
