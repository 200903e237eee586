//! The write-ahead log of an embedded database: files beside it that take each group of writes
//! a response waits for as one appended batch and one `fdatasync`, so an answer waits for a few
//! hundred bytes to reach the disk, not for a B-tree commit (about eight page writes). At open,
//! what a crash left in the log is folded into the database before anything is served.
//!
//! Two files take turns, `<file>-wal.0` and `<file>-wal.1`: batches go to the current one; when
//! the writes in it are to be folded into the database, it is sealed and the other one (empty)
//! becomes current, so appends go on while the fold runs. A sealed file is emptied once its
//! writes are in the database, and is then the next one to take over.
//!
//! A batch is `magic | generation (u64) | payload length (u32) | CRC-32 | payload`,
//! little-endian; the checksum covers the generation, the length and the payload. Each file
//! holds batches of one generation, one more than the file before it: replay reads the older
//! file first. The payload is records: `op (1 set, 0 delete) | table length (u32) | table |
//! key length (u32) | key | [value length (u32) | value]`. Replay stops at the first batch that
//! is incomplete or does not match its checksum: it was being written when the process stopped,
//! so its `fdatasync` never returned and no response that waited on it was sent.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write as _};
use std::path::{Path, PathBuf};

/// Marks the start of a batch ("IONW"): a file region of zeros (an extension a crash left
/// unwritten) is never read as an empty batch.
const MAGIC: u32 = 0x494F_4E57;
const HEADER_BYTES: usize = 20;
const SET: u8 = 1;
const DELETE: u8 = 0;

/// One write read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub table: String,
    pub key: String,
    /// `None`: deleted.
    pub value: Option<Vec<u8>>,
}

/// Writes made since the last append, encoded as one batch's payload.
#[derive(Default)]
pub struct Batch {
    payload: Vec<u8>,
}

impl Batch {
    pub fn set(&mut self, table: &str, key: &str, value: &[u8]) {
        self.record(SET, table, key);
        self.payload
            .extend_from_slice(&(value.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(value);
    }

    pub fn delete(&mut self, table: &str, key: &str) {
        self.record(DELETE, table, key);
    }

    fn record(&mut self, op: u8, table: &str, key: &str) {
        // Labels and keys are short (a key at most 256 bytes, a value at most 1 MiB, checked
        // before a call reaches the store): the casts cannot truncate.
        self.payload.push(op);
        self.payload
            .extend_from_slice(&(table.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(table.as_bytes());
        self.payload
            .extend_from_slice(&(key.len() as u32).to_le_bytes());
        self.payload.extend_from_slice(key.as_bytes());
    }

    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Puts `older` in front of this batch's writes.
    pub fn prepend(&mut self, mut older: Batch) {
        older.payload.extend_from_slice(&self.payload);
        self.payload = older.payload;
    }
}

/// The log: the file batches go to, and the other one, unless it is sealed and out for a fold.
pub struct WriteLog {
    current: LogFile,
    spare: Option<LogFile>,
    /// The generation of the batches in `current`.
    generation: u64,
}

/// What [`WriteLog::open`] found in the files.
pub struct Replay {
    /// In the order they were written, the older file's first.
    pub records: Vec<Record>,
    /// Bytes after the last whole batch of a file (a batch cut short by a crash), ignored.
    pub ignored_bytes: u64,
}

impl WriteLog {
    /// Opens (or creates) the two files of the log of the database at `db_path` and reads the
    /// writes they hold. The caller folds them into the database, then calls
    /// [`WriteLog::clear`].
    pub fn open(db_path: &Path) -> io::Result<(WriteLog, Replay)> {
        let mut files = Vec::new();
        let mut found = Vec::new();
        let mut ignored_bytes = 0;
        for n in 0..2 {
            let mut name = db_path.as_os_str().to_owned();
            name.push(format!("-wal.{n}"));
            let (file, bytes) = LogFile::open(PathBuf::from(name))?;
            let (generation, records, whole) = decode(&bytes);
            ignored_bytes += (bytes.len() - whole) as u64;
            found.push((generation, records));
            files.push(file);
        }
        found.sort_by_key(|(generation, _)| *generation);
        let generation = found.iter().filter_map(|(g, _)| *g).max().unwrap_or(0) + 1;
        let spare = files.pop();
        let log = WriteLog {
            current: files.pop().expect("two files"),
            spare,
            generation,
        };
        let records = found.into_iter().flat_map(|(_, records)| records).collect();
        Ok((
            log,
            Replay {
                records,
                ignored_bytes,
            },
        ))
    }

    /// The file batches go to now.
    pub fn path(&self) -> &Path {
        &self.current.path
    }

    /// Bytes in the current file.
    pub fn len(&self) -> u64 {
        self.current.len
    }

    /// Appends `batch` to the current file and waits for it to reach the disk. On failure the
    /// file is cut back to where it was, so that a later batch is never stranded behind a
    /// broken one; when even that fails, no batch is taken until [`WriteLog::clear`].
    pub fn append(&mut self, batch: &Batch) -> io::Result<()> {
        self.current.append(self.generation, batch)
    }

    /// Seals the current file for a fold of the writes in it and makes the other one current;
    /// `None` while the other one is still out (its fold has not given it back).
    pub fn seal(&mut self) -> Option<LogFile> {
        let spare = self.spare.take()?;
        self.generation += 1;
        Some(std::mem::replace(&mut self.current, spare))
    }

    /// Takes back a sealed file, emptied by its fold.
    pub fn give_back(&mut self, file: LogFile) {
        debug_assert!(file.len == 0);
        self.spare = Some(file);
    }

    /// Empties the current file (and the other one, when it is here), once what they hold is
    /// in the database.
    pub fn clear(&mut self) -> io::Result<()> {
        self.current.clear()?;
        if let Some(spare) = &mut self.spare {
            spare.clear()?;
        }
        Ok(())
    }
}

/// One of the log's two files.
pub struct LogFile {
    file: File,
    path: PathBuf,
    /// Bytes in the file: what a failed append is cut back to.
    len: u64,
    /// False once an append failed and the file could not be cut back: a batch appended
    /// behind the broken one would be lost at replay. [`LogFile::clear`] mends it.
    intact: bool,
}

impl LogFile {
    fn open(path: PathBuf) -> io::Result<(LogFile, Vec<u8>)> {
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let log = LogFile {
            file,
            path,
            len: bytes.len() as u64,
            intact: true,
        };
        Ok((log, bytes))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn append(&mut self, generation: u64, batch: &Batch) -> io::Result<()> {
        if !self.intact {
            return Err(io::Error::other(
                "an earlier append could not be cut back; waiting for a fold",
            ));
        }
        let framed = frame(generation, &batch.payload);
        let written = self
            .file
            .write_all(&framed)
            .and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += framed.len() as u64;
                Ok(())
            }
            Err(e) => match self.file.set_len(self.len) {
                Ok(()) => Err(e),
                Err(cut) => {
                    self.intact = false;
                    Err(io::Error::other(format!(
                        "{e}; and the log could not be cut back to its last whole batch: {cut}"
                    )))
                }
            },
        }
    }

    /// Empties the file, durably: a batch appended after this never lands in front of stale
    /// ones after a power loss.
    pub fn clear(&mut self) -> io::Result<()> {
        if self.len == 0 && self.intact {
            return Ok(());
        }
        self.file.set_len(0)?;
        self.file.sync_all()?;
        self.len = 0;
        self.intact = true;
        Ok(())
    }
}

fn frame(generation: u64, payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(HEADER_BYTES + payload.len());
    framed.extend_from_slice(&MAGIC.to_le_bytes());
    framed.extend_from_slice(&generation.to_le_bytes());
    framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    framed.extend_from_slice(&checksum(generation, payload).to_le_bytes());
    framed.extend_from_slice(payload);
    framed
}

fn checksum(generation: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&generation.to_le_bytes());
    hasher.update(&(payload.len() as u32).to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The generation and records of the whole batches of that generation at the start of
/// `bytes`, and how many bytes those batches take.
fn decode(bytes: &[u8]) -> (Option<u64>, Vec<Record>, usize) {
    let mut records = Vec::new();
    let mut generation = None;
    let mut at = 0;
    while let Some((batch_generation, payload)) = whole_batch(&bytes[at..]) {
        if generation.is_some_and(|g| g != batch_generation) {
            break;
        }
        let Some(mut decoded) = decode_payload(payload) else {
            break;
        };
        generation = Some(batch_generation);
        records.append(&mut decoded);
        at += HEADER_BYTES + payload.len();
    }
    (generation, records, at)
}

/// The generation and payload of the batch at the start of `bytes`, if it is whole and
/// matches its checksum.
fn whole_batch(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let field = |at: usize, n: usize| bytes.get(at..at + n);
    if u32::from_le_bytes(field(0, 4)?.try_into().ok()?) != MAGIC {
        return None;
    }
    let generation = u64::from_le_bytes(field(4, 8)?.try_into().ok()?);
    let len = u32::from_le_bytes(field(12, 4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(field(16, 4)?.try_into().ok()?);
    let payload = bytes.get(HEADER_BYTES..HEADER_BYTES.checked_add(len)?)?;
    (checksum(generation, payload) == crc).then_some((generation, payload))
}

fn decode_payload(mut payload: &[u8]) -> Option<Vec<Record>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = bytes.split_at_checked(n)?;
        *bytes = rest;
        Some(head)
    }
    fn length(bytes: &mut &[u8]) -> Option<usize> {
        Some(u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize)
    }
    fn text(bytes: &mut &[u8]) -> Option<String> {
        let n = length(bytes)?;
        String::from_utf8(take(bytes, n)?.to_vec()).ok()
    }
    let mut records = Vec::new();
    while !payload.is_empty() {
        let op = take(&mut payload, 1)?[0];
        let table = text(&mut payload)?;
        let key = text(&mut payload)?;
        let value = match op {
            SET => {
                let n = length(&mut payload)?;
                Some(take(&mut payload, n)?.to_vec())
            }
            DELETE => None,
            _ => return None,
        };
        records.push(Record { table, key, value });
    }
    Some(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::tests::TempDir;

    fn set(table: &str, key: &str, value: &[u8]) -> Record {
        Record {
            table: table.to_owned(),
            key: key.to_owned(),
            value: Some(value.to_vec()),
        }
    }

    fn delete(table: &str, key: &str) -> Record {
        Record {
            table: table.to_owned(),
            key: key.to_owned(),
            value: None,
        }
    }

    fn batch(records: &[Record]) -> Batch {
        let mut batch = Batch::default();
        for record in records {
            match &record.value {
                Some(value) => batch.set(&record.table, &record.key, value),
                None => batch.delete(&record.table, &record.key),
            }
        }
        batch
    }

    #[test]
    fn batches_are_read_back_in_order_after_a_reopen() {
        let dir = TempDir::new();
        let db = dir.0.join("db.redb");
        let (mut log, replay) = WriteLog::open(&db).unwrap();
        assert!(log.path().ends_with("db.redb-wal.0"));
        assert!(replay.records.is_empty());
        let first = [set("default", "conv/1", b"{}"), set("cache", "", b"")];
        let second = [
            delete("default", "conv/1"),
            set("default", "한국어", &[0, 255]),
        ];
        log.append(&batch(&first)).unwrap();
        log.append(&batch(&second)).unwrap();
        drop(log);

        let (log, replay) = WriteLog::open(&db).unwrap();
        assert_eq!(replay.ignored_bytes, 0);
        assert_eq!(replay.records, [&first[..], &second[..]].concat());
        assert_eq!(log.len(), std::fs::metadata(log.path()).unwrap().len());
    }

    /// A batch cut short at any byte (the crash came during its write) is ignored, and the
    /// batches before it are kept; so is a batch whose bytes changed, a batch of another
    /// generation, and a run of zeros.
    #[test]
    fn a_torn_or_corrupt_tail_is_ignored() {
        let kept = frame(7, &batch(&[set("default", "kept", b"1")]).payload);
        let torn = frame(7, &batch(&[set("default", "torn", b"22")]).payload);
        let whole = [kept.clone(), torn].concat();
        let only_kept = (Some(7), vec![set("default", "kept", b"1")], kept.len());
        for cut in kept.len()..whole.len() {
            assert_eq!(decode(&whole[..cut]), only_kept, "cut at {cut}");
        }
        let mut flipped = whole.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode(&flipped), only_kept);
        let other = frame(8, &batch(&[set("default", "stale", b"1")]).payload);
        assert_eq!(decode(&[kept.clone(), other].concat()), only_kept);
        assert_eq!(decode(&[kept.clone(), vec![0; 64]].concat()), only_kept);
        assert_eq!(decode(&[0; 64]), (None, vec![], 0));

        let dir = TempDir::new();
        let db = dir.0.join("db");
        std::fs::write(dir.0.join("db-wal.0"), &whole[..whole.len() - 1]).unwrap();
        let (_, replay) = WriteLog::open(&db).unwrap();
        assert_eq!(replay.records, [set("default", "kept", b"1")]);
        assert_eq!(replay.ignored_bytes, (whole.len() - 1 - kept.len()) as u64);
    }

    /// Appends go on to the other file while a sealed one is out for a fold; a crash before
    /// the fold empties it replays both, the older generation first, whichever file holds it.
    #[test]
    fn a_sealed_file_replays_before_the_current_one() {
        let dir = TempDir::new();
        let db = dir.0.join("db");
        let (mut log, _) = WriteLog::open(&db).unwrap();
        let writes: Vec<Record> = (0..4).map(|n| set("default", "k", &[n])).collect();
        log.append(&batch(&writes[..1])).unwrap();
        let mut sealed = log.seal().unwrap();
        assert!(log.seal().is_none(), "one fold at a time");
        assert!(log.path().ends_with("db-wal.1"));
        log.append(&batch(&writes[1..2])).unwrap();
        sealed.clear().unwrap();
        log.give_back(sealed);
        let sealed = log.seal().unwrap();
        assert!(log.path().ends_with("db-wal.0"));
        log.append(&batch(&writes[2..4])).unwrap();
        drop((log, sealed));

        let (mut log, replay) = WriteLog::open(&db).unwrap();
        assert_eq!(replay.records, writes[1..]);
        log.clear().unwrap();
        for n in 0..2 {
            let file = dir.0.join(format!("db-wal.{n}"));
            assert_eq!(std::fs::metadata(file).unwrap().len(), 0);
        }
        log.append(&batch(&writes[..1])).unwrap();
        drop(log);
        let (_, replay) = WriteLog::open(&db).unwrap();
        assert_eq!(replay.records, writes[..1]);
    }
}
