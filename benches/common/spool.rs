//! A queue whose message bodies wait in a file instead of the process, as they wait in SQS in production. For
//! the memory run: the preloaded in-memory queue put 28 MiB of bodies into the very peak RSS being measured.
//!
//! Each message is delivered once, in order, and extensions always succeed: nothing in the memory run waits long
//! enough to lapse, so redelivery is not modelled here (MemoryQueue does that for the tests).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use cf_invalidator::model::MessageId;
use cf_invalidator::ports::{BatchEntryFailure, Queue, QueueError, Receipt, ReceivedMessage};

pub struct SpooledQueue {
    spool: Mutex<Spool>,
}

struct Spool {
    file: File,
    /// Offset and length of each body, one per line of the file.
    extents: Vec<(u64, usize)>,
    next: usize,
    deleted: Vec<bool>,
    remaining: usize,
    sent_at: SystemTime,
}

impl SpooledQueue {
    /// Writes `bodies`, one per line, to a new file at `path`.
    pub fn write(path: &Path, bodies: &[String]) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::new(File::create(path)?);
        for body in bodies {
            append_line(&mut out, body)?;
        }
        out.flush()
    }

    /// The queue holding the bodies written to `path`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = File::open(path)?;
        let mut extents = Vec::new();
        let mut offset = 0;
        for line in BufReader::new(file.try_clone()?).split(b'\n') {
            let length = line?.len();
            extents.push((offset, length));
            offset += length as u64 + 1;
        }
        Ok(Self::over(file, extents))
    }

    /// An empty queue (a dead-letter queue) in an unnamed temporary file.
    pub fn temporary() -> std::io::Result<Self> {
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos();
        let path = std::env::temp_dir().join(format!("cfi-spool-{}-{nanos}", std::process::id()));
        let file = File::options().read(true).append(true).create_new(true).open(&path)?;
        std::fs::remove_file(&path)?;
        Ok(Self::over(file, Vec::new()))
    }

    fn over(file: File, extents: Vec<(u64, usize)>) -> Self {
        let count = extents.len();
        let spool =
            Spool { file, extents, next: 0, deleted: vec![false; count], remaining: count, sent_at: SystemTime::now() };
        Self { spool: Mutex::new(spool) }
    }

    pub fn len(&self) -> usize {
        self.spool.lock().unwrap().remaining
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Queue for SpooledQueue {
    async fn receive(
        &self,
        max: usize,
        wait: Duration,
        _visibility: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        let received = self.spool.lock().unwrap().take(max);
        if received.is_empty() {
            // A long poll of an empty queue: nothing will arrive.
            tokio::time::sleep(wait).await;
        }
        Ok(received)
    }

    async fn delete(&self, receipts: &[Receipt]) -> Result<Vec<BatchEntryFailure>, QueueError> {
        let mut spool = self.spool.lock().unwrap();
        for receipt in receipts {
            let n: usize = receipt.receipt_handle.parse().expect("a spool receipt handle");
            if !std::mem::replace(&mut spool.deleted[n], true) {
                spool.remaining -= 1;
            }
        }
        Ok(Vec::new())
    }

    async fn extend_visibility(
        &self,
        _receipts: &[Receipt],
        _visibility: Duration,
    ) -> Result<Vec<BatchEntryFailure>, QueueError> {
        Ok(Vec::new())
    }

    async fn send(&self, body: &str, _attributes: &[(&str, &str)]) -> Result<(), QueueError> {
        let mut spool = self.spool.lock().unwrap();
        let offset = spool.file.metadata().map_err(|e| QueueError::Other(e.to_string()))?.len();
        append_line(&mut spool.file, body).map_err(|e| QueueError::Other(e.to_string()))?;
        spool.extents.push((offset, body.len()));
        spool.deleted.push(false);
        spool.remaining += 1;
        Ok(())
    }
}

/// One body per line: a body holding a newline would read back as two messages.
fn append_line(out: &mut impl Write, body: &str) -> std::io::Result<()> {
    assert!(!body.contains('\n'), "a spooled body is one line");
    writeln!(out, "{body}")
}

impl Spool {
    fn take(&mut self, max: usize) -> Vec<ReceivedMessage> {
        let end = (self.next + max).min(self.extents.len());
        let taken = (self.next..end).map(|n| self.read(n)).collect();
        self.next = end;
        taken
    }

    fn read(&self, n: usize) -> ReceivedMessage {
        let (offset, length) = self.extents[n];
        let mut body = vec![0; length];
        self.file.read_exact_at(&mut body, offset).expect("read a spooled body");
        ReceivedMessage {
            message_id: MessageId(format!("spool-{n:08}")),
            receipt_handle: n.to_string(),
            body: String::from_utf8(body).expect("spooled bodies are UTF-8"),
            sent_at: Some(self.sent_at),
            receive_count: 1,
        }
    }
}
