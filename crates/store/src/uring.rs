//! One durable write in flight through io_uring, so that the thread that started it can work
//! while the disk writes: the single member's committing thread applies a batch to redb
//! while its log record is made durable, and pays no thread hand-off to learn that it is.
//!
//! This is the crate's only `unsafe` code. The kernel reads the written bytes after
//! the write starts, so they must stay in place until the write is reaped: [`InFlight`]
//! borrows them and reaps the write before it goes, on unwinding too, and it never leaves
//! [`Ring::write_dsync_during`].

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, RawFd};

use io_uring::{IoUring, Probe, opcode, types};

/// A ring with room for one write at a time.
pub(crate) struct Ring {
    ring: IoUring,
}

impl Ring {
    /// A ring, or `None` where the kernel refuses io_uring (too old, turned off with
    /// `kernel.io_uring_disabled`, or filtered by a sandbox) or lacks the write operation.
    pub(crate) fn new() -> Option<Ring> {
        let ring = IoUring::new(2).ok()?;
        let mut probe = Probe::new();
        ring.submitter().register_probe(&mut probe).ok()?;
        probe
            .is_supported(opcode::Write::CODE)
            .then_some(Ring { ring })
    }

    /// Writes `buf` at `offset` of `file` as `pwritev2(…, RWF_DSYNC)` would (the write
    /// completes once its data is durable), and runs `during` while the disk works.
    ///
    /// `Err` if the write could not start (`during` did not run); else what the write did:
    /// the bytes written (all, or fewer if the kernel stopped short), or its error.
    pub(crate) fn write_dsync_during(
        &mut self,
        file: &File,
        buf: &[u8],
        offset: u64,
        during: &mut dyn FnMut(),
    ) -> io::Result<io::Result<usize>> {
        // SAFETY: `in_flight` never leaves this function: it is waited on below, or dropped
        // (which waits) if `during` unwinds; `file` is borrowed until then.
        let in_flight = unsafe { self.write_dsync(file.as_raw_fd(), buf, offset) }?;
        during();
        Ok(in_flight.wait())
    }

    /// Starts writing `buf` at `offset` of the file `fd` with `RWF_DSYNC`.
    ///
    /// # Safety
    /// `fd` must stay open until the write is reaped, and the returned [`InFlight`] must
    /// not be leaked (`mem::forget`): dropping or waiting on it is what keeps the kernel
    /// from reading `buf` after it is gone.
    unsafe fn write_dsync<'a>(
        &'a mut self,
        fd: RawFd,
        buf: &'a [u8],
        offset: u64,
    ) -> io::Result<InFlight<'a>> {
        let len = u32::try_from(buf.len())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "write over 4 GiB"))?;
        let entry = opcode::Write::new(types::Fd(fd), buf.as_ptr(), len)
            .offset(offset)
            .rw_flags(libc::RWF_DSYNC)
            .build();
        // SAFETY: the entry points into `buf`, which the returned `InFlight` borrows until
        // the kernel is done with it (the caller promises not to leak it), and at `fd`,
        // which the caller keeps open.
        unsafe { self.ring.submission().push(&entry) }
            .map_err(|_| io::Error::other("the io_uring submission queue is full"))?;
        let mut in_flight = InFlight {
            ring: &mut self.ring,
            reaped: false,
            _buf: PhantomData,
        };
        // Submitted now so the disk starts; if this fails the entry is still queued, and
        // `wait` submits it.
        in_flight.submit();
        Ok(in_flight)
    }
}

/// A write the kernel may still be reading memory for.
struct InFlight<'a> {
    ring: &'a mut IoUring,
    reaped: bool,
    _buf: PhantomData<&'a [u8]>,
}

impl InFlight<'_> {
    /// Hands the queued entry to the kernel, retrying while it is briefly busy.
    fn submit(&mut self) {
        loop {
            match self.ring.submit() {
                Err(e) if retry(&e) => continue,
                // Still queued: `reap` submits it with its wait.
                _ => return,
            }
        }
    }

    /// Waits for the write: the bytes written (all of them, or fewer if the kernel
    /// stopped short), or its error.
    fn wait(mut self) -> io::Result<usize> {
        self.reap()
    }

    fn reap(&mut self) -> io::Result<usize> {
        loop {
            if let Some(done) = self.ring.completion().next() {
                self.reaped = true;
                let result = done.result();
                return usize::try_from(result)
                    .map_err(|_| io::Error::from_raw_os_error(result.saturating_neg()));
            }
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => {
                    // The kernel may still read memory this process is about to reuse:
                    // nothing can make going on safe.
                    tracing::error!(error = %e, "waiting for a write-ahead log write failed");
                    std::process::abort();
                }
            }
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.reap();
        }
    }
}

/// Whether `io_uring_enter` failed for a moment only.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_lands_where_it_was_asked() {
        let Some(mut ring) = Ring::new() else {
            panic!(
                "io_uring is unavailable here (see /proc/sys/kernel/io_uring_disabled): \
                 the log's overlapped writes cannot be tested"
            );
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, vec![0u8; 8192]).expect("write");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open");
        let bytes = vec![7u8; 100];
        let mut ran = 0;
        let written = ring
            .write_dsync_during(&file, &bytes, 4000, &mut || ran += 1)
            .expect("start");
        assert_eq!(written.expect("written"), 100);
        assert_eq!(ran, 1);
        let back = std::fs::read(&path).expect("read");
        assert_eq!(&back[4000..4100], &bytes[..]);
        assert!(back[..4000].iter().chain(&back[4100..]).all(|b| *b == 0));
    }

    #[test]
    fn a_failed_write_reports_the_kernels_error() {
        let mut ring = Ring::new().expect("io_uring is unavailable here");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"x").expect("write");
        // Open for reading only: the kernel refuses the write.
        let file = std::fs::File::open(&path).expect("open");
        let e = ring
            .write_dsync_during(&file, &[1u8; 8], 0, &mut || {})
            .expect("start")
            .expect_err("a read-only file");
        assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{e}");
    }
}
