//! Where log lines go: appended to a shared buffer under a lock and written
//! out by a thread of their own, which sleeps while there are none and
//! writes together what comes within a few milliseconds of the first (at
//! once when the buffer grows large). A request never waits on the
//! terminal or a pipe, and the thread is woken once per batch, not per
//! line: tracing-appender's writer woke its thread for every line, which
//! under load cost a request more than formatting its line (see
//! BENCHMARKS.md).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long lines are gathered after the first one before they are
/// written: how long a line may wait in the buffer.
const GATHER_FOR: Duration = Duration::from_millis(20);
/// A buffer this large is written out without waiting for the interval.
const WRITE_AT: usize = 64 * 1024;
/// Past this much unwritten text (the reader of stderr has stopped), lines
/// are dropped and counted rather than held or waited for.
const CAPACITY: usize = 8 * 1024 * 1024;
/// How long exiting waits for the last lines to be written.
const DRAIN_AT_EXIT: Duration = Duration::from_secs(1);

/// The writer handed to the log formatter.
#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

/// Keep it alive while logging; dropping it writes what is left.
pub struct LogGuard {
    shared: Arc<Shared>,
    finished: mpsc::Receiver<()>,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Wakes the writing thread: a first line (it sleeps while there is
    /// none), a large buffer, or exiting.
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    text: Vec<u8>,
    /// Lines dropped since the last write, for lack of room.
    dropped: u64,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Starts the writing thread, writing to `out`.
pub fn start(out: impl Write + Send + 'static) -> io::Result<(LogWriter, LogGuard)> {
    let shared = Arc::new(Shared { pending: Mutex::default(), wake: Condvar::new() });
    let (finish, finished) = mpsc::channel();
    let thread_shared = shared.clone();
    std::thread::Builder::new().name("log-writer".into()).spawn(move || {
        write_until_closed(&thread_shared, out);
        let _ = finish.send(());
    })?;
    Ok((LogWriter { shared: shared.clone() }, LogGuard { shared, finished }))
}

fn write_until_closed(shared: &Shared, mut out: impl Write) {
    // Two buffers in turn: lines go on filling one while the other is written.
    let mut writing = Vec::new();
    loop {
        let (dropped, closing) = {
            let mut pending = shared.lock();
            while pending.text.is_empty() && pending.dropped == 0 && !pending.closing {
                pending = shared.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            // Lines that come within the interval go out together.
            if pending.text.len() < WRITE_AT && !pending.closing {
                pending = shared.wake.wait_timeout(pending, GATHER_FOR).unwrap_or_else(PoisonError::into_inner).0;
            }
            std::mem::swap(&mut pending.text, &mut writing);
            (std::mem::take(&mut pending.dropped), pending.closing)
        };
        if dropped > 0 {
            writing.extend_from_slice(
                format!("{dropped} log lines were dropped: the log's reader fell {CAPACITY} bytes behind\n").as_bytes(),
            );
        }
        if !writing.is_empty() {
            // Nowhere to report a failure to write the log to.
            let _ = out.write_all(&writing).and_then(|()| out.flush());
            writing.clear();
        }
        if closing && shared.lock().text.is_empty() {
            return;
        }
    }
}

impl Write for &LogWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.shared.lock();
        if pending.text.len() + line.len() > CAPACITY {
            // A line too large for an empty buffer wakes the thread to
            // report it.
            if pending.text.is_empty() && pending.dropped == 0 {
                self.shared.wake.notify_one();
            }
            pending.dropped += 1;
        } else {
            let before = pending.text.len();
            pending.text.extend_from_slice(line);
            if before == 0 || (before < WRITE_AT && pending.text.len() >= WRITE_AT) {
                self.shared.wake.notify_one();
            }
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let _ = self.finished.recv_timeout(DRAIN_AT_EXIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test reads, that can be made to block like a full pipe.
    #[derive(Clone, Default)]
    struct Sink {
        text: Arc<Mutex<Vec<u8>>>,
        blocked: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            drop(self.blocked.lock().unwrap());
            self.text.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(writer: &LogWriter, text: &str) {
        (&mut &*writer).write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn lines_arrive_in_order_and_the_guard_writes_the_rest() {
        let sink = Sink::default();
        let (writer, guard) = start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || (0..1000).for_each(|i| line(&writer, &format!("{t} {i}\n"))))
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let text = String::from_utf8(sink.text.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 4000);
        for t in 0..4 {
            let mine: Vec<usize> =
                text.lines().filter_map(|l| l.strip_prefix(&format!("{t} "))).map(|i| i.parse().unwrap()).collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>(), "thread {t}'s lines, in order");
        }
    }

    #[test]
    fn a_line_is_written_without_waiting_for_more() {
        let sink = Sink::default();
        let (writer, _guard) = start(sink.clone()).unwrap();
        line(&writer, "alone\n");
        assert!(written(&sink, b"alone\n"), "a lone line reaches the output while the server runs");
    }

    /// Waits up to 2 s for the sink to hold `text`.
    fn written(sink: &Sink, text: &[u8]) -> bool {
        (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(10));
            sink.text.lock().unwrap().as_slice() == text
        })
    }

    #[test]
    fn the_sleeping_thread_wakes_for_each_later_line() {
        let sink = Sink::default();
        let (writer, _guard) = start(sink.clone()).unwrap();
        line(&writer, "one\n");
        assert!(written(&sink, b"one\n"));
        line(&writer, "two\n");
        assert!(written(&sink, b"one\ntwo\n"), "a line after the thread went back to sleep");
        line(&writer, &"x".repeat(CAPACITY + 1));
        assert!(
            written(
                &sink,
                format!("one\ntwo\n1 log lines were dropped: the log's reader fell {CAPACITY} bytes behind\n")
                    .as_bytes()
            ),
            "a line too large for the buffer is reported while nothing else comes"
        );
    }

    #[test]
    fn a_stalled_reader_costs_dropped_lines_not_waiting() {
        let sink = Sink::default();
        let (writer, guard) = start(sink.clone()).unwrap();
        let stalled = sink.blocked.lock().unwrap();
        line(&writer, "first\n");
        // The writing thread is now stuck in the sink; lines pile up to the
        // cap and the rest are dropped, and writing one never blocks.
        std::thread::sleep(GATHER_FOR * 3);
        let long = "x".repeat(1023) + "\n";
        let lines = CAPACITY / long.len() + 100;
        for _ in 0..lines {
            line(&writer, &long);
        }
        drop(stalled);
        drop(guard);
        let text = String::from_utf8(sink.text.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("first\n"));
        let kept = text.lines().filter(|l| l.starts_with('x')).count();
        assert_eq!(kept, CAPACITY / long.len());
        assert!(text.contains(&format!("{} log lines were dropped", lines - kept)), "{}", &text[text.len() - 200..]);
    }
}
