//! [`Wal`]: an append-only log of records in preallocated, zero-filled segment files — the
//! durable record of a write before its effects reach redb (single member) and the home of
//! the Raft log (cluster members).
//!
//! ```text
//!  dir/0000000000000007.wal   [rec][rec][rec]…[rec] 000000…000   (zeros up to 16 MiB)
//!  dir/0000000000000008.wal   000000…000   the spare: zeroed ahead of time, next in line
//!
//!  rec = len u32 LE | crc32 u32 LE of (seq ‖ payload) | seq u64 LE | payload
//! ```
//!
//! # Correctness
//! - A segment is zero-filled and synced before its first record, so an append overwrites
//!   blocks the file already owns: `fdatasync` flushes the data and no file metadata. That
//!   is what makes a commit cost one disk flush.
//! - An append is one positioned write of whole records followed by one `fdatasync` (or, if
//!   the caller asks, none: the next synced append carries it, and a segment is synced
//!   before the log moves on to the next); a batch never spans two segments. After a failed
//!   write or sync the log refuses every further append: what reached the disk is unknown,
//!   so nothing more may be acknowledged.
//! - Where the filesystem allows it (Linux, `O_DIRECT`), appends go around the page cache:
//!   the write reaches the device before it returns and `fdatasync` only has to flush the
//!   device's cache, which is cheaper than writing back dirty pages first. Direct writes
//!   cover whole blocks, so an append rewrites the block its records start in: that
//!   block's earlier bytes (records already acknowledged) are written again unchanged, as
//!   the page cache writes back a whole page, and the padding after the records is the
//!   zeros already there.
//! - [`Wal::append_during`] runs the caller's work while the disk writes: a direct segment's
//!   write goes through io_uring as one write with `RWF_DSYNC` (the data is durable when it
//!   completes, as after `fdatasync`), and the thread waits for it only once its work is
//!   done. Without io_uring, for a page-cache segment, or after unsynced appends (a write
//!   with `RWF_DSYNC` may flush only its own blocks) the work runs after the sync.
//! - Records carry consecutive sequence numbers. Reading a segment stops at the first record
//!   that is incomplete, fails its checksum or breaks the sequence: a torn write (a batch
//!   whose sync never returned, so never acknowledged) ends it, and bytes left behind by
//!   older writes cannot pass for records. The next segment continues the log only if its
//!   first record continues the sequence (a log reopened after a torn write continues in a
//!   new segment).
//! - Segments are named by increasing numbers and read in that order; the caller removes a
//!   segment only once nothing in it is needed ([`remove_segments_below`]).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

/// Size of a segment, unless one batch needs more.
pub(crate) const SEGMENT_BYTES: u64 = 16 << 20;

/// Bytes before a record's payload: length, checksum, sequence number.
const HEADER: usize = 16;

/// Direct writes start at a multiple of this, cover a multiple of it, and come from memory
/// aligned to it: the largest logical block size of the devices we run on, so it suits all.
const BLOCK: usize = 4096;

/// A record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    /// The segment the record is in.
    pub(crate) segment: u64,
    pub(crate) payload: Vec<u8>,
}

/// What [`Wal::read`] found.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    /// Every record of the log, in order.
    pub(crate) records: Vec<Record>,
    /// The numbers of the segment files present, ascending (including empty ones).
    pub(crate) segments: Vec<u64>,
}

impl Replay {
    /// The segment number to create next: above every file present.
    pub(crate) fn next_segment(&self) -> u64 {
        self.segments.last().map_or(1, |n| n + 1)
    }

    /// The sequence number of the last record, if any.
    pub(crate) fn last_seq(&self) -> Option<u64> {
        self.records.last().map(|r| r.seq)
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Appended {
    /// Sequence number of the last record written.
    pub(crate) last_seq: u64,
    /// The segment the records are in.
    pub(crate) segment: u64,
    /// Whether this append opened a new segment (the previous one is complete).
    pub(crate) rotated: bool,
}

/// One zero-filled segment file, open for writing.
struct Segment {
    number: u64,
    file: File,
    /// A multiple of [`BLOCK`].
    len: u64,
    /// Whether `file` writes around the page cache (`O_DIRECT`).
    direct: bool,
}

/// The writing end of the log.
pub(crate) struct Wal {
    dir: PathBuf,
    segment_bytes: u64,
    current: Segment,
    offset: u64,
    next_seq: u64,
    /// The next segment, being zero-filled in the background.
    spare: Option<JoinHandle<io::Result<Segment>>>,
    failed: bool,
    /// Records were written to the current segment since its last sync.
    unsynced: bool,
    /// Whether to open segments for direct writes where the filesystem allows it.
    direct: bool,
    /// The records of the append being made.
    buf: Vec<u8>,
    /// Direct writes only: the bytes of the current segment's last, partly written block
    /// (`offset % BLOCK` of them), which the next append writes again in front of its own.
    tail: Vec<u8>,
    /// Direct writes only: memory for the blocks written, of which a [`BLOCK`]-aligned
    /// part is used.
    blocks: Vec<u8>,
    /// How [`Wal::append_during`] overlaps its write with the caller's work.
    overlap: Overlap,
}

/// Whether appends can run work while the disk writes.
enum Overlap {
    /// Not tried yet: the ring is made at the first [`Wal::append_during`].
    Untried,
    /// The kernel refused io_uring, or its write: work runs after the sync.
    Off,
    #[cfg(target_os = "linux")]
    Ring(Box<crate::uring::Ring>),
}

/// A direct write laid out by [`Wal::lay_out_blocks`].
struct DirectBlocks {
    /// Where in the segment the first block goes.
    start: u64,
    /// The blocks, in `Wal::blocks`.
    range: std::ops::Range<usize>,
    /// Where the records end, from the first block's start.
    end: usize,
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:016x}.wal"))
}

/// Syncs a directory, so that files created, renamed or removed in it stay that way.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The numbers of the segments in `dir`, ascending; leftovers of an interrupted
/// preparation (`*.tmp`) are removed.
fn list_segments(dir: &Path, remove_tmp: bool) -> io::Result<Vec<u64>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            if remove_tmp {
                std::fs::remove_file(entry.path())?;
            }
        } else if let Some(stem) = name.strip_suffix(".wal")
            && let Ok(number) = u64::from_str_radix(stem, 16)
        {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// Creates segment `number` of `len` zero bytes (rounded up to whole blocks), synced,
/// under its final name, and opens it for direct writes if `direct` and the filesystem
/// allows them.
fn prepare(dir: &Path, number: u64, len: u64, direct: bool) -> io::Result<Segment> {
    let len = len.div_ceil(BLOCK as u64) * BLOCK as u64;
    let tmp = dir.join(format!("{number:016x}.tmp"));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = zeros
            .len()
            .min(usize::try_from(len - at).unwrap_or(usize::MAX));
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_all()?;
    let path = segment_path(dir, number);
    std::fs::rename(&tmp, &path)?;
    sync_dir(dir)?;
    let (file, direct) = match direct.then(|| open_direct(&path)).transpose()?.flatten() {
        Some(direct_file) => (direct_file, true),
        None => (file, false),
    };
    Ok(Segment {
        number,
        file,
        len,
        direct,
    })
}

/// Where the first [`BLOCK`]-aligned byte of `bytes` is.
fn aligned_start(bytes: &[u8]) -> usize {
    (BLOCK - bytes.as_ptr().addr() % BLOCK) % BLOCK
}

/// The zero-filled segment at `path` opened for direct writes, or `None` where the
/// filesystem refuses them (tmpfs refuses the open; others may refuse the first write).
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> io::Result<Option<File>> {
    use std::os::unix::fs::OpenOptionsExt;
    let refused = |e: &io::Error| e.raw_os_error() == Some(libc::EINVAL);
    let file = match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if refused(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    // One block of the zeros already there, written as appends will be.
    let zeros = vec![0u8; 2 * BLOCK];
    let at = aligned_start(&zeros);
    match file.write_all_at(&zeros[at..at + BLOCK], 0) {
        Ok(()) => Ok(Some(file)),
        Err(e) if refused(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_: &Path) -> io::Result<Option<File>> {
    Ok(None)
}

fn spawn_spare(
    dir: &Path,
    number: u64,
    len: u64,
    direct: bool,
) -> io::Result<JoinHandle<io::Result<Segment>>> {
    let dir = dir.to_path_buf();
    std::thread::Builder::new()
        .name("stead-wal-spare".into())
        .spawn(move || prepare(&dir, number, len, direct))
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn push_record(buf: &mut Vec<u8>, seq: u64, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&checksum(seq, payload).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    buf.extend_from_slice(payload);
    Ok(())
}

fn le_u32(bytes: &[u8]) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&bytes[..4]);
    u32::from_le_bytes(a)
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(a)
}

/// Appends to `out` the records of one segment's bytes, from the start while they are
/// whole, pass their checksum and continue the sequence (`expected`, once known). Answers
/// whether the segment's first record (if any) continued the sequence: if not, neither this
/// segment nor any later one belongs to the log.
fn parse_segment(
    bytes: &[u8],
    segment: u64,
    expected: &mut Option<u64>,
    out: &mut Vec<Record>,
) -> bool {
    let mut at = 0;
    while at + HEADER <= bytes.len() {
        let head = &bytes[at..at + HEADER];
        let len = le_u32(head) as usize;
        let crc = le_u32(&head[4..]);
        let seq = le_u64(&head[8..]);
        if len == 0 && crc == 0 && seq == 0 {
            // Zeros: the segment's unused tail.
            break;
        }
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if checksum(seq, payload) != crc {
            break;
        }
        if expected.is_some_and(|e| e != seq) {
            return at != 0;
        }
        out.push(Record {
            seq,
            segment,
            payload: payload.to_vec(),
        });
        *expected = Some(seq + 1);
        at += HEADER + len;
    }
    // A torn or corrupt record ends this segment's part of the log; a later segment may
    // still continue it (a log reopened after a torn write goes on in a new segment).
    true
}

impl Wal {
    /// Reads the log in `dir` (created if missing).
    pub(crate) fn read(dir: &Path) -> io::Result<Replay> {
        std::fs::create_dir_all(dir)?;
        // No log writes here yet: a `.tmp` is a spare a stopped process left half made.
        let segments = list_segments(dir, true)?;
        let mut records = Vec::new();
        let mut expected = None;
        for &number in &segments {
            let bytes = std::fs::read(segment_path(dir, number))?;
            if !parse_segment(&bytes, number, &mut expected, &mut records) {
                break;
            }
        }
        Ok(Replay { records, segments })
    }

    /// Starts writing at a new segment `number` (above every segment in `dir`), with the
    /// first record numbered `next_seq`. Older segments stay until [`remove_segments_below`].
    pub(crate) fn create(dir: &Path, number: u64, next_seq: u64) -> io::Result<Wal> {
        Wal::create_sized(dir, number, next_seq, SEGMENT_BYTES)
    }

    /// [`Wal::create`] with segments of `segment_bytes`.
    pub(crate) fn create_sized(
        dir: &Path,
        number: u64,
        next_seq: u64,
        segment_bytes: u64,
    ) -> io::Result<Wal> {
        Wal::create_with(dir, number, next_seq, segment_bytes, true)
    }

    /// [`Wal::create_sized`], writing through the page cache unless `direct`.
    fn create_with(
        dir: &Path,
        number: u64,
        next_seq: u64,
        segment_bytes: u64,
        direct: bool,
    ) -> io::Result<Wal> {
        std::fs::create_dir_all(dir)?;
        let current = prepare(dir, number, segment_bytes, direct)?;
        let spare = Some(spawn_spare(dir, number + 1, segment_bytes, direct)?);
        Ok(Wal {
            dir: dir.to_path_buf(),
            segment_bytes,
            current,
            offset: 0,
            next_seq,
            spare,
            failed: false,
            unsynced: false,
            direct,
            buf: Vec::new(),
            tail: Vec::new(),
            blocks: Vec::new(),
            overlap: Overlap::Untried,
        })
    }

    /// The segment being written.
    pub(crate) fn segment(&self) -> u64 {
        self.current.number
    }

    /// Writes `payloads` as consecutive records, and syncs them (with everything written
    /// before) if `sync`. When they do not fit in the current segment, they go to a new one,
    /// which starts with `head` (if not empty): a record restating what the caller needs
    /// from older segments, so those can go.
    pub(crate) fn append(
        &mut self,
        payloads: &[&[u8]],
        head: &[u8],
        sync: bool,
    ) -> io::Result<Appended> {
        self.append_with(payloads, head, sync, None)
    }

    /// [`Wal::append`] of `payloads`, synced, running `during` while the disk writes them
    /// where the kernel allows (see the module's notes), else once they are synced.
    /// `during` runs once, unless the append fails before its write starts; an append
    /// that fails after may have run it.
    pub(crate) fn append_during(
        &mut self,
        payloads: &[&[u8]],
        during: &mut dyn FnMut(),
    ) -> io::Result<Appended> {
        self.append_with(payloads, &[], true, Some(during))
    }

    fn append_with(
        &mut self,
        payloads: &[&[u8]],
        head: &[u8],
        sync: bool,
        during: Option<&mut dyn FnMut()>,
    ) -> io::Result<Appended> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier write-ahead log write failed; the log takes no more appends",
            ));
        }
        let size = |p: &[u8]| (HEADER + p.len()) as u64;
        let needed: u64 = payloads.iter().map(|p| size(p)).sum();
        let rotated = self.offset + needed > self.current.len;
        if rotated && self.unsynced {
            // The old segment's unsynced tail must be on disk before records go elsewhere
            // (a sync of the next segment's file need not cover it).
            if let Err(e) = self.current.file.sync_data() {
                self.failed = true;
                return Err(e);
            }
        }
        let mut seq = self.next_seq;
        self.buf.clear();
        if rotated {
            let head_len = if head.is_empty() { 0 } else { size(head) };
            self.rotate(needed + head_len)?;
            if !head.is_empty() {
                push_record(&mut self.buf, seq, head)?;
                seq += 1;
            }
        }
        for payload in payloads {
            push_record(&mut self.buf, seq, payload)?;
            seq += 1;
        }
        let written = match during {
            Some(during) => self.write_synced_during(during),
            None => self.write_records().and_then(|()| {
                if sync {
                    self.current.file.sync_data()
                } else {
                    Ok(())
                }
            }),
        };
        if let Err(e) = written {
            self.failed = true;
            return Err(e);
        }
        self.offset += self.buf.len() as u64;
        self.unsynced = !sync;
        self.next_seq = seq;
        Ok(Appended {
            last_seq: seq - 1,
            segment: self.current.number,
            rotated,
        })
    }

    /// Writes `buf` at `offset`: as it is, or for a direct segment, as the whole blocks
    /// from the one `offset` falls in (its earlier bytes from `tail`) through the one the
    /// records end in (padded with zeros).
    fn write_records(&mut self) -> io::Result<()> {
        if !self.current.direct {
            return self.current.file.write_all_at(&self.buf, self.offset);
        }
        let blocks = self.lay_out_blocks();
        self.current
            .file
            .write_all_at(&self.blocks[blocks.range.clone()], blocks.start)?;
        self.keep_tail(&blocks);
        Ok(())
    }

    /// [`Wal::write_records`] and a sync, with `during` run while the disk writes where
    /// io_uring allows and nothing unsynced comes before, else after the sync.
    fn write_synced_during(&mut self, during: &mut dyn FnMut()) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if self.current.direct && !self.unsynced && self.ring_ready() {
            return self.write_overlapped(during);
        }
        self.write_records()?;
        self.current.file.sync_data()?;
        during();
        Ok(())
    }

    /// Whether a ring is ready for [`Wal::write_overlapped`], making it the first time.
    #[cfg(target_os = "linux")]
    fn ring_ready(&mut self) -> bool {
        if let Overlap::Untried = self.overlap {
            self.overlap = match crate::uring::Ring::new() {
                Some(ring) => Overlap::Ring(Box::new(ring)),
                None => {
                    tracing::info!("io_uring is unavailable: log writes and applies take turns");
                    Overlap::Off
                }
            };
        }
        matches!(self.overlap, Overlap::Ring(_))
    }

    /// Writes a direct segment's blocks with `RWF_DSYNC` through the ring, and runs
    /// `during` while the disk works.
    #[cfg(target_os = "linux")]
    fn write_overlapped(&mut self, during: &mut dyn FnMut()) -> io::Result<()> {
        let blocks = self.lay_out_blocks();
        let bytes = &self.blocks[blocks.range.clone()];
        let file = &self.current.file;
        let Overlap::Ring(ring) = &mut self.overlap else {
            return Err(io::Error::other("no ring for an overlapped write"));
        };
        // Writes the blocks from byte `from` on as without io_uring, and syncs.
        let plain = |from: usize| {
            file.write_all_at(&bytes[from..], blocks.start + from as u64)?;
            file.sync_data()
        };
        match ring.write_dsync_during(file, bytes, blocks.start, during) {
            Ok(Ok(n)) if n == bytes.len() => {}
            // Cut short: the rest as a plain write, and a sync covering both.
            Ok(Ok(n)) => plain(n)?,
            Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP)) => {
                // The kernel refused the operation as asked (its flags, on this file)
                // before writing anything: write as without io_uring, from now on.
                tracing::info!(error = %e, "io_uring refused a log write: log writes and applies take turns");
                plain(0)?;
                self.overlap = Overlap::Off;
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "an io_uring write could not start; writing directly");
                plain(0)?;
                during();
            }
        }
        self.keep_tail(&blocks);
        Ok(())
    }

    /// Lays out in `blocks` a direct write of `buf` at `offset`: the whole blocks from the
    /// one `offset` falls in (its earlier bytes from `tail`) through the one the records
    /// end in (padded with zeros).
    fn lay_out_blocks(&mut self) -> DirectBlocks {
        let start = self.offset - self.tail.len() as u64;
        let end = self.tail.len() + self.buf.len();
        let len = end.div_ceil(BLOCK) * BLOCK;
        if self.blocks.len() < len + BLOCK {
            self.blocks = vec![0; len + BLOCK];
        }
        let at = aligned_start(&self.blocks);
        let blocks = &mut self.blocks[at..at + len];
        blocks[..self.tail.len()].copy_from_slice(&self.tail);
        blocks[self.tail.len()..end].copy_from_slice(&self.buf);
        blocks[end..].fill(0);
        DirectBlocks {
            start,
            range: at..at + len,
            end,
        }
    }

    /// After a direct write of `blocks`: keeps its last, partly written block for the next.
    fn keep_tail(&mut self, blocks: &DirectBlocks) {
        let written = &self.blocks[blocks.range.clone()];
        self.tail.clear();
        self.tail
            .extend_from_slice(&written[blocks.end - blocks.end % BLOCK..blocks.end]);
    }

    /// Moves to the spare segment (or a bigger one when `needed` exceeds a segment), and
    /// starts zero-filling the next spare.
    fn rotate(&mut self, needed: u64) -> io::Result<()> {
        let number = self.current.number + 1;
        let spare = match self.spare.take() {
            Some(handle) => handle
                .join()
                .map_err(|_| io::Error::other("zero-filling a log segment panicked"))?,
            None => prepare(&self.dir, number, self.segment_bytes, self.direct),
        };
        let next = match spare {
            Ok(segment) if segment.len >= needed => segment,
            // Too small for this batch, or its preparation failed: make one now.
            _ => prepare(
                &self.dir,
                number,
                needed.max(self.segment_bytes),
                self.direct,
            )?,
        };
        self.current = next;
        self.offset = 0;
        self.tail.clear();
        self.spare = Some(spawn_spare(
            &self.dir,
            number + 1,
            self.segment_bytes,
            self.direct,
        )?);
        Ok(())
    }
}

/// Removes every segment in `dir` numbered below `number`.
pub(crate) fn remove_segments_below(dir: &Path, number: u64) -> io::Result<()> {
    let mut removed = false;
    // A `.tmp` here is the spare being made.
    for n in list_segments(dir, false)? {
        if n < number {
            std::fs::remove_file(segment_path(dir, n))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

impl Drop for Wal {
    fn drop(&mut self) {
        // Wait for the spare, so that no file appears in the directory after the log is
        // gone (a reopened log numbers its segments from what it finds).
        if let Some(spare) = self.spare.take() {
            let _ = spare.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: u64 = 4096;

    fn payloads(replay: &Replay) -> Vec<(u64, Vec<u8>)> {
        replay
            .records
            .iter()
            .map(|r| (r.seq, r.payload.clone()))
            .collect()
    }

    #[test]
    fn records_read_back_in_order_across_segments_with_their_head_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create_sized(dir.path(), 1, 10, SMALL).expect("create");
        let big = vec![7u8; 1500];
        let mut segments = Vec::new();
        for i in 0..6u8 {
            let a = wal.append(&[&big, &[i]], b"head", true).expect("append");
            segments.push((a.segment, a.rotated));
        }
        // 1,517 + 17 bytes per append: two fit in 4 KiB, the third opens a new segment.
        assert_eq!(
            segments,
            [
                (1, false),
                (1, false),
                (2, true),
                (2, false),
                (3, true),
                (3, false)
            ]
        );
        drop(wal);
        let replay = Wal::read(dir.path()).expect("read");
        let got = payloads(&replay);
        let mut want = Vec::new();
        let mut seq = 10;
        for i in 0..6u8 {
            if i == 2 || i == 4 {
                want.push((seq, b"head".to_vec()));
                seq += 1;
            }
            want.push((seq, big.clone()));
            want.push((seq + 1, vec![i]));
            seq += 2;
        }
        assert_eq!(got, want);
        // The spare made for the next rotation is there, empty.
        assert_eq!(replay.segments, [1, 2, 3, 4]);
        assert_eq!(replay.next_segment(), 5);
    }

    /// The number of records the log in `dir` holds, and each segment's bytes.
    fn records_and_segments(dir: &Path) -> (usize, Vec<Vec<u8>>) {
        let replay = Wal::read(dir).expect("read");
        let segments = replay
            .segments
            .iter()
            .map(|&n| std::fs::read(segment_path(dir, n)).expect("segment"))
            .collect();
        (replay.records.len(), segments)
    }

    #[test]
    fn direct_writes_leave_the_same_bytes_as_writes_through_the_page_cache() {
        // Appends of every size from 1 byte to several blocks, synced or not, some crossing
        // into new segments: a direct log must leave files byte for byte like a buffered one.
        let sizes = (0..200usize).map(|i| (i * 389) % 9_000 + 1);
        let mut files = Vec::new();
        for direct in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut wal = Wal::create_with(dir.path(), 1, 1, 64 << 10, direct).expect("create");
            for (i, size) in sizes.clone().enumerate() {
                let payload = vec![(i % 251) as u8 + 1; size];
                wal.append(&[&payload], b"head", i % 3 != 0)
                    .expect("append");
            }
            wal.append(&[], &[], true).expect("sync");
            let direct_used = wal.current.direct;
            drop(wal);
            let (records, bytes) = records_and_segments(dir.path());
            files.push((records, bytes, direct_used));
        }
        let (buffered, direct) = (&files[0], &files[1]);
        assert!(!buffered.2, "the buffered log wrote directly");
        assert!(
            direct.2,
            "the filesystem of the temporary directory refuses O_DIRECT, so this compares \
             nothing: set TMPDIR to a directory on a disk filesystem (ext4, xfs)"
        );
        assert!(
            buffered.0 > 200,
            "every payload and some heads: {}",
            buffered.0
        );
        assert_eq!(direct.0, buffered.0);
        assert_eq!(direct.1.len(), buffered.1.len());
        for (n, (d, b)) in direct.1.iter().zip(&buffered.1).enumerate() {
            assert!(d == b, "segment {} differs", n + 1);
        }
    }

    #[test]
    fn appends_overlapped_with_work_leave_the_same_bytes_and_run_the_work_once() {
        // Every size from 1 byte to several blocks, some crossing into new segments.
        let sizes = (0..200usize).map(|i| (i * 389) % 9_000 + 1);
        let mut files = Vec::new();
        for overlapped in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut wal = Wal::create_sized(dir.path(), 1, 1, 64 << 10).expect("create");
            let mut runs = 0;
            for (i, size) in sizes.clone().enumerate() {
                let payload = vec![(i % 251) as u8 + 1; size];
                if overlapped {
                    wal.append_during(&[&payload], &mut || runs += 1)
                } else {
                    wal.append(&[&payload], &[], true)
                }
                .expect("append");
            }
            if overlapped {
                assert_eq!(runs, 200, "the work of each append runs once");
                assert!(
                    matches!(wal.overlap, Overlap::Ring(_)),
                    "io_uring is unavailable here (see /proc/sys/kernel/io_uring_disabled) or \
                     the temporary directory refuses O_DIRECT, so nothing was overlapped"
                );
            }
            drop(wal);
            files.push(records_and_segments(dir.path()));
        }
        let (plain, overlapped) = (&files[0], &files[1]);
        assert_eq!(plain.0, 200);
        assert_eq!(overlapped.0, plain.0);
        assert_eq!(overlapped.1.len(), plain.1.len());
        for (n, (o, p)) in overlapped.1.iter().zip(&plain.1).enumerate() {
            assert!(o == p, "segment {} differs", n + 1);
        }
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_log_and_older_bytes_never_pass_for_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create_sized(dir.path(), 1, 1, SMALL).expect("create");
        for i in 0..3u8 {
            wal.append(&[&[i; 100]], &[], true).expect("append");
        }
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let original = std::fs::read(&path).expect("read");
        let record = HEADER + 100;
        type Damage = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: [(&str, Damage, usize); 4] = [
            ("untouched", Box::new(|_| {}), 3),
            (
                "last payload torn",
                Box::new(move |b| b[2 * record + HEADER + 50..3 * record].fill(0)),
                2,
            ),
            (
                "a flipped bit in the second",
                Box::new(move |b| b[record + HEADER + 3] ^= 1),
                1,
            ),
            (
                // A record rewritten with the same number after an older, longer one:
                // what follows it is the older record's tail, not a record.
                "stale bytes after a shorter rewrite",
                Box::new(move |b| {
                    let mut shorter = Vec::new();
                    push_record(&mut shorter, 2, &[9; 10]).expect("record");
                    b[record..record + shorter.len()].copy_from_slice(&shorter);
                }),
                2,
            ),
        ];
        for (what, damage, want) in cases {
            let mut bytes = original.clone();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).expect("write");
            let replay = Wal::read(dir.path()).expect("read");
            assert_eq!(replay.records.len(), want, "{what}");
        }
    }

    #[test]
    fn a_later_segment_that_does_not_continue_the_sequence_is_not_part_of_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create_sized(dir.path(), 1, 1, SMALL).expect("create");
        wal.append(&[b"a"], &[], true).expect("append");
        drop(wal);
        let mut other = Wal::create_sized(dir.path(), 5, 40, SMALL).expect("create");
        other.append(&[b"b"], &[], true).expect("append");
        drop(other);
        let replay = Wal::read(dir.path()).expect("read");
        assert_eq!(payloads(&replay), [(1, b"a".to_vec())]);
        remove_segments_below(dir.path(), 5).expect("remove");
        let replay = Wal::read(dir.path()).expect("read");
        assert_eq!(payloads(&replay), [(40, b"b".to_vec())]);
    }

    #[test]
    fn a_batch_bigger_than_a_segment_gets_a_segment_of_its_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create_sized(dir.path(), 1, 1, SMALL).expect("create");
        wal.append(&[b"small"], &[], true).expect("append");
        let big = vec![1u8; 10_000];
        let a = wal.append(&[&big], &[], true).expect("append");
        assert_eq!((a.segment, a.rotated, a.last_seq), (2, true, 2));
        wal.append(&[b"after"], &[], true).expect("append");
        drop(wal);
        let replay = Wal::read(dir.path()).expect("read");
        assert_eq!(
            payloads(&replay),
            [(1, b"small".to_vec()), (2, big), (3, b"after".to_vec())]
        );
    }

    #[test]
    fn removing_old_segments_leaves_the_spare_being_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create_sized(dir.path(), 1, 1, SMALL).expect("create");
        wal.append(&[&[1; 3000]], &[], true).expect("append");
        wal.append(&[&[2; 3000]], &[], true).expect("rotates");
        drop(wal);
        // As while the next spare is zero-filled under its temporary name.
        let spare = dir.path().join("0000000000000009.tmp");
        std::fs::write(&spare, b"half").expect("tmp");
        remove_segments_below(dir.path(), 2).expect("remove");
        assert!(spare.exists(), "the spare being made was removed");
        assert_eq!(list_segments(dir.path(), false).expect("list"), [2, 3]);
    }

    #[test]
    fn segments_are_zero_filled_to_their_size_before_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut wal = Wal::create_sized(dir.path(), 3, 1, SMALL).expect("create");
        wal.append(&[b"x"], &[], true).expect("append");
        drop(wal);
        for n in [3, 4] {
            let len = std::fs::metadata(segment_path(dir.path(), n))
                .expect("segment")
                .len();
            assert_eq!(len, SMALL, "segment {n}");
        }
        std::fs::write(dir.path().join("0000000000000009.tmp"), b"half").expect("tmp");
        let replay = Wal::read(dir.path()).expect("read");
        assert_eq!(replay.segments, [3, 4], "a leftover .tmp is removed");
        assert!(!dir.path().join("0000000000000009.tmp").exists());
    }
}
