//! The usage spool: usage events the collector has not acknowledged, on local disk,
//! for while the collector is away or slow and across a restart. Append-only segment
//! files of checksummed records, read back in the order they were written; a segment
//! is deleted once every batch read from it is acknowledged. Replays are harmless:
//! the collector stores each event id once.
//!
//! A record is `[payload length: u32 LE][CRC-32 of payload: u32 LE][payload]`, the
//! payload a protobuf `UsageEvent`. A torn or corrupt record (a crash mid-write)
//! ends its segment's reading; what follows it in that segment is reported lost.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use prost::Message;
use switchyard_proto::v1 as pb;

/// A segment is closed for writing past this size.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const HEADER: usize = 8;
/// Longest record accepted when reading (an event is a few hundred bytes).
const MAX_RECORD: u32 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("usage spool I/O in {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the usage spool is full ({max_bytes} bytes)")]
    Full { max_bytes: u64 },
    #[error("the usage spool {0} is in use by another process")]
    InUse(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Where a read batch ended: acknowledging it releases everything before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    segment: u64,
    offset: u64,
}

struct Segment {
    number: u64,
    bytes: u64,
}

pub struct Spool {
    /// Held for the spool's life: one process per spool directory.
    _lock: File,
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Oldest first; the last one may be open for writing.
    segments: VecDeque<Segment>,
    writer: Option<(u64, BufWriter<File>)>,
    /// Where reading continues.
    cursor: Position,
    /// Everything before this was acknowledged.
    acked: Position,
    next_number: u64,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("usage-{number:020}.spool"))
}

impl Spool {
    /// Open the spool in `dir` (created if missing), with what an earlier run left.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, SpoolError> {
        Self::open_with_segments(dir, max_bytes, SEGMENT_BYTES)
    }

    fn open_with_segments(
        dir: &Path,
        max_bytes: u64,
        segment_bytes: u64,
    ) -> Result<Self, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::InUse(dir.display().to_string()));
        }
        let mut numbers: Vec<(u64, u64)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let name = entry.file_name();
            let Some(number) = name
                .to_str()
                .and_then(|n| n.strip_prefix("usage-"))
                .and_then(|n| n.strip_suffix(".spool"))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            let bytes = entry.metadata().map_err(io(dir))?.len();
            numbers.push((number, bytes));
        }
        numbers.sort_unstable();
        let segments: VecDeque<Segment> = numbers
            .iter()
            .map(|&(number, bytes)| Segment { number, bytes })
            .collect();
        let first = segments.front().map_or(0, |s| s.number);
        let next_number = numbers.last().map_or(0, |(n, _)| n + 1);
        Ok(Self {
            _lock: lock,
            dir: dir.to_owned(),
            max_bytes,
            segment_bytes,
            segments,
            writer: None,
            cursor: Position {
                segment: first,
                offset: 0,
            },
            acked: Position {
                segment: first,
                offset: 0,
            },
            next_number,
        })
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Nothing is waiting in the spool.
    pub fn is_empty(&self) -> bool {
        self.segments.iter().all(|s| s.bytes == 0)
    }

    /// Append events; written through to the OS before returning.
    pub fn append(&mut self, events: &[pb::UsageEvent]) -> Result<(), SpoolError> {
        let mut added = 0u64;
        let mut buf = Vec::new();
        for e in events {
            let payload = e.encode_to_vec();
            let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            buf.extend_from_slice(&payload);
            added += (HEADER + payload.len()) as u64;
        }
        if self.bytes() + added > self.max_bytes {
            return Err(SpoolError::Full {
                max_bytes: self.max_bytes,
            });
        }
        // A new segment when none is open for writing (after a restart, the old ones
        // are only read) or the open one is full.
        let rotate = match (&self.writer, self.segments.back()) {
            (Some((open, _)), Some(last)) => {
                *open != last.number || last.bytes >= self.segment_bytes
            }
            _ => true,
        };
        if rotate {
            let number = self.next_number;
            self.next_number += 1;
            let path = segment_path(&self.dir, number);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io(&path))?;
            self.writer = Some((number, BufWriter::new(file)));
            self.segments.push_back(Segment { number, bytes: 0 });
            if self.segments.len() == 1 {
                self.cursor = Position {
                    segment: number,
                    offset: 0,
                };
            }
        }
        let Some((number, writer)) = self.writer.as_mut() else {
            return Err(SpoolError::Io {
                path: self.dir.display().to_string(),
                source: std::io::Error::other("no segment open for writing"),
            });
        };
        let path = segment_path(&self.dir, *number);
        writer.write_all(&buf).map_err(io(&path))?;
        writer.flush().map_err(io(&path))?;
        if let Some(last) = self.segments.back_mut() {
            last.bytes += added;
        }
        Ok(())
    }

    /// Up to `max` events from where reading stands, and the position after them;
    /// `None` when everything written has been read.
    pub fn read(
        &mut self,
        max: usize,
    ) -> Result<Option<(Vec<pb::UsageEvent>, Position)>, SpoolError> {
        loop {
            let Some(index) = self
                .segments
                .iter()
                .position(|s| s.number == self.cursor.segment)
            else {
                return Ok(None);
            };
            let segment_bytes = self.segments[index].bytes;
            if self.cursor.offset < segment_bytes {
                let path = segment_path(&self.dir, self.cursor.segment);
                let mut file = File::open(&path).map_err(io(&path))?;
                file.seek(SeekFrom::Start(self.cursor.offset))
                    .map_err(io(&path))?;
                let mut events = Vec::new();
                let mut offset = self.cursor.offset;
                while events.len() < max && offset < segment_bytes {
                    match read_record(&mut file) {
                        Ok(Some((event, size))) => {
                            events.push(event);
                            offset += size;
                        }
                        Ok(None) | Err(_) => {
                            tracing::error!(
                                segment = %path.display(),
                                lost_bytes = segment_bytes - offset,
                                "usage spool record torn or corrupt; the rest of this segment is skipped"
                            );
                            offset = segment_bytes;
                        }
                    }
                }
                self.cursor.offset = offset;
                if !events.is_empty() {
                    return Ok(Some((events, self.cursor)));
                }
            }
            // This segment is read to its end: move on, unless it is still written.
            if self
                .writer
                .as_ref()
                .is_some_and(|(n, _)| *n == self.cursor.segment)
            {
                return Ok(None);
            }
            let Some(next) = self.segments.get(index + 1) else {
                return Ok(None);
            };
            self.cursor = Position {
                segment: next.number,
                offset: 0,
            };
        }
    }

    /// Read again from the oldest event not acknowledged (after a lost connection,
    /// batches read but unanswered are sent again).
    pub fn rewind(&mut self) {
        self.cursor = self.acked;
        if !self
            .segments
            .iter()
            .any(|s| s.number == self.cursor.segment)
            && let Some(front) = self.segments.front()
        {
            self.cursor = Position {
                segment: front.number,
                offset: 0,
            };
        }
    }

    /// Everything up to `position` reached the collector: delete the segments wholly
    /// behind it, and the last one too once it is read to its end and no longer written.
    pub fn acknowledge(&mut self, position: Position) -> Result<(), SpoolError> {
        self.acked = position;
        while let Some(front) = self.segments.front() {
            let done = front.number < position.segment
                || (front.number == position.segment && position.offset >= front.bytes);
            if !done {
                break;
            }
            let number = front.number;
            if self.writer.as_ref().is_some_and(|(n, _)| *n == number) {
                // Caught up: close it, so new events start a fresh segment.
                self.writer = None;
            }
            let path = segment_path(&self.dir, number);
            fs::remove_file(&path).map_err(io(&path))?;
            self.segments.pop_front();
            if let Some(next) = self.segments.front()
                && self.cursor.segment == number
            {
                self.cursor = Position {
                    segment: next.number,
                    offset: 0,
                };
            }
        }
        Ok(())
    }
}

/// One record: the event and the bytes it took. `None`: a torn or corrupt record.
fn read_record(file: &mut File) -> std::io::Result<Option<(pb::UsageEvent, u64)>> {
    let mut header = [0u8; HEADER];
    if file.read_exact(&mut header).is_err() {
        return Ok(None);
    }
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD {
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    if file.read_exact(&mut payload).is_err() || crc32fast::hash(&payload) != crc {
        return Ok(None);
    }
    Ok(pb::UsageEvent::decode(payload.as_slice())
        .ok()
        .map(|e| (e, (HEADER + payload.len()) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: u32) -> pb::UsageEvent {
        pb::UsageEvent {
            id: format!("event-{i}"),
            input_tokens: u64::from(i),
            ..Default::default()
        }
    }

    fn ids(events: &[pb::UsageEvent]) -> Vec<String> {
        events.iter().map(|e| e.id.clone()).collect()
    }

    /// Segment files (the lock file aside).
    fn files(dir: &Path) -> usize {
        segment_files(dir).len()
    }

    fn segment_files(dir: &Path) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "spool"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn one_process_per_spool() {
        let dir = tempfile::tempdir().unwrap();
        let first = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(matches!(
            Spool::open(dir.path(), 1 << 20),
            Err(SpoolError::InUse(_))
        ));
        drop(first);
        assert!(Spool::open(dir.path(), 1 << 20).is_ok());
    }

    #[test]
    fn a_lost_connection_reads_unacknowledged_batches_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open_with_segments(dir.path(), 1 << 20, 40).unwrap();
        for i in 0..6 {
            spool.append(&[event(i)]).unwrap();
        }
        let (first, at) = spool.read(2).unwrap().unwrap();
        assert_eq!(ids(&first), vec!["event-0", "event-1"]);
        spool.acknowledge(at).unwrap();
        let (second, _) = spool.read(2).unwrap().unwrap();
        assert_eq!(ids(&second), vec!["event-2"]);
        // Sent, never answered: after the rewind it comes again.
        spool.rewind();
        let (again, _) = spool.read(2).unwrap().unwrap();
        assert_eq!(ids(&again), vec!["event-2"]);
    }

    #[test]
    fn events_come_back_in_order_and_go_once_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        // Segments of about three events, so reading crosses them.
        let mut spool = Spool::open_with_segments(dir.path(), 1 << 20, 40).unwrap();
        assert!(spool.is_empty());
        assert_eq!(spool.read(10).unwrap(), None);
        for i in 0..10 {
            spool.append(&[event(i)]).unwrap();
        }
        assert!(files(dir.path()) > 2);
        let mut seen = Vec::new();
        let mut last = None;
        while let Some((events, at)) = spool.read(4).unwrap() {
            seen.extend(ids(&events));
            last = Some(at);
        }
        assert_eq!(seen, ids(&(0..10).map(event).collect::<Vec<_>>()));
        // More arrives while the rest is unacknowledged; it is read after.
        spool.append(&[event(10)]).unwrap();
        spool.acknowledge(last.unwrap()).unwrap();
        let (events, at) = spool.read(4).unwrap().unwrap();
        assert_eq!(ids(&events), vec!["event-10"]);
        spool.acknowledge(at).unwrap();
        assert!(spool.is_empty());
        assert_eq!(files(dir.path()), 0);
        assert_eq!(spool.bytes(), 0);
    }

    #[test]
    fn a_restart_reads_what_was_left_then_what_comes_next() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[event(0), event(1), event(2)]).unwrap();
        let (first, at) = spool.read(1).unwrap().unwrap();
        assert_eq!(ids(&first), vec!["event-0"]);
        spool.acknowledge(at).unwrap();
        drop(spool);

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        assert!(!spool.is_empty());
        spool.append(&[event(3)]).unwrap();
        let mut seen = Vec::new();
        let mut last = None;
        while let Some((events, at)) = spool.read(10).unwrap() {
            seen.extend(ids(&events));
            last = Some(at);
        }
        // What was acknowledged but not yet released comes again: the collector
        // ignores it.
        assert_eq!(seen, vec!["event-0", "event-1", "event-2", "event-3"]);
        spool.acknowledge(last.unwrap()).unwrap();
        assert!(spool.is_empty());
    }

    #[test]
    fn a_torn_record_ends_its_segment_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool
            .append(&(0..5).map(event).collect::<Vec<_>>())
            .unwrap();
        drop(spool);
        let path = segment_files(dir.path()).remove(0);
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();

        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[event(9)]).unwrap();
        let mut seen = Vec::new();
        while let Some((events, _)) = spool.read(10).unwrap() {
            seen.extend(ids(&events));
        }
        assert_eq!(
            seen,
            vec!["event-0", "event-1", "event-2", "event-3", "event-9"]
        );
    }

    #[test]
    fn a_corrupt_record_is_not_read_as_an_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        spool.append(&[event(0), event(1)]).unwrap();
        drop(spool);
        let path = segment_files(dir.path()).remove(0);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let mut spool = Spool::open(dir.path(), 1 << 20).unwrap();
        let (events, _) = spool.read(10).unwrap().unwrap();
        assert_eq!(ids(&events), vec!["event-0"]);
        assert_eq!(spool.read(10).unwrap(), None);
    }

    #[test]
    fn a_full_spool_refuses_and_keeps_what_it_has() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::open(dir.path(), 100).unwrap();
        spool.append(&[event(0), event(1)]).unwrap();
        let before = spool.bytes();
        let err = spool.append(&(2..20).map(event).collect::<Vec<_>>());
        assert!(matches!(err, Err(SpoolError::Full { max_bytes: 100 })));
        assert_eq!(spool.bytes(), before);
        let (events, _) = spool.read(10).unwrap().unwrap();
        assert_eq!(ids(&events), vec!["event-0", "event-1"]);
    }
}
