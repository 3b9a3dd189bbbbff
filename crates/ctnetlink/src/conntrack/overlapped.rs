//! The dump with receiving and decoding overlapped, and the dump that decodes nothing (the
//! kernel's own cost, which the first is measured against).
//!
//! The kernel fills the next batch of dump replies only inside the next `recv`: a reader that
//! decodes and applies each batch before asking for the next one adds its own time to the
//! kernel's. Here the calling thread only receives, into buffers it hands to a second thread
//! that decodes them and calls back; the buffers come back through a bounded channel, so at
//! most [`BUFFERS`] batches are in flight and memory stays bounded whatever the table's size.

use std::cell::Cell;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use conntrack_codec::request;
use conntrack_codec::{EntryMessage, Family, Header, Message, ParseError, frames, messages};

use super::{ConntrackSocket, DumpSummary, RECEIVE_CHUNK};
use crate::error::{Error, Origin};
use crate::socket::{AlignedBuffer, NetlinkSocket, Read};

/// Batches received and not yet decoded, at most (each [`RECEIVE_CHUNK`] bytes).
const BUFFERS: usize = 8;

const OPERATION: &str = "dumping the conntrack table";

impl ConntrackSocket {
    /// Streams every entry of the table to `on_entry`, as [`ConntrackSocket::dump`] does,
    /// but decodes and calls back on a second thread, scheduled at `priority`, while this
    /// one receives the next batch from the kernel. Entries arrive in the kernel's order, one
    /// at a time.
    pub fn dump_overlapped(
        &mut self,
        family: Option<Family>,
        priority: DecoderPriority,
        on_entry: impl FnMut(Result<EntryMessage, ParseError>) + Send,
    ) -> Result<DumpSummary, Error> {
        let sequence = self.next_sequence();
        self.socket
            .send(OPERATION, &request::dump(sequence, family))?;
        let (filled, to_decode) = sync_channel::<(AlignedBuffer, usize)>(BUFFERS);
        let (recycle, spare) = sync_channel::<AlignedBuffer>(BUFFERS);
        for _ in 0..BUFFERS {
            // Cannot fail: the channel holds BUFFERS and its receiver is alive.
            let _ = recycle.send(AlignedBuffer::new(RECEIVE_CHUNK));
        }
        let socket = &self.socket;
        std::thread::scope(|scope| {
            let decoder = scope.spawn(move || {
                priority.apply_to_this_thread();
                decode(to_decode, recycle, on_entry)
            });
            let received = receive_dump(
                socket,
                || spare.recv().ok(),
                |buffer, length| filled.send((buffer, length)).is_ok(),
            );
            // Ends the decoder's loop once it has decoded what was received.
            drop(filled);
            let decoded = decoder
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            received.and(decoded)
        })
    }

    /// Dumps the table and throws the replies away undecoded; returns the bytes received.
    /// What this costs is what the kernel costs: the reference for [`dump_overlapped`].
    ///
    /// [`dump_overlapped`]: ConntrackSocket::dump_overlapped
    pub fn dump_undecoded(&mut self, family: Option<Family>) -> Result<u64, Error> {
        let sequence = self.next_sequence();
        self.socket
            .send(OPERATION, &request::dump(sequence, family))?;
        let spare = Cell::new(Some(AlignedBuffer::new(RECEIVE_CHUNK)));
        let mut bytes = 0u64;
        receive_dump(
            &self.socket,
            || spare.take(),
            |buffer, length| {
                bytes += length as u64;
                spare.set(Some(buffer));
                true
            },
        )?;
        Ok(bytes)
    }
}

/// How the thread that decodes an overlapped dump is scheduled against the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecoderPriority {
    /// The caller's own.
    Caller,
    /// The caller's nice value raised by this much (to 19 at most): the decoding gives way
    /// whenever a thread of the caller's priority wants the core it runs on, and takes
    /// whatever is left. The receiving thread keeps the caller's priority, so the kernel's
    /// side of the dump does not wait.
    Lowered(u8),
}

impl DecoderPriority {
    /// Applies the priority to the calling thread (on Linux, a nice value is a thread's own).
    fn apply_to_this_thread(self) {
        let DecoderPriority::Lowered(by) = self else {
            return;
        };
        // SAFETY: reads the calling thread's nice value; no memory is passed.
        let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        // A failed read also returns -1, a valid nice value: the result is then one step off.
        let lowered = (nice + i32::from(by)).min(19);
        // Raising one's own nice value needs no privilege, so this fails only where a
        // seccomp filter forbids the call: the decoding then keeps the caller's priority,
        // which is slower for others but as correct.
        // SAFETY: sets the calling thread's nice value; no memory is passed.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, lowered) };
    }
}

/// Receives dump replies, each into a buffer from `take`, handed with its length to
/// `received`, until the datagram that ends the dump (or until `take` has no buffer or
/// `received` refuses one: the other end is gone).
fn receive_dump(
    socket: &NetlinkSocket,
    mut take: impl FnMut() -> Option<AlignedBuffer>,
    mut received: impl FnMut(AlignedBuffer, usize) -> bool,
) -> Result<(), Error> {
    while let Some(mut buffer) = take() {
        let length = match socket.read(OPERATION, &mut buffer, 0)? {
            Read::Data(length) => length,
            Read::Overrun => return Err(Read::lost_reply(OPERATION)),
            // A blocking socket without a receive timeout: the kernel never says this.
            Read::Empty => {
                let source = std::io::Error::from_raw_os_error(libc::EAGAIN);
                return Err(Error::system_call(OPERATION, source));
            }
        };
        let last = ends_dump(&buffer.bytes()[..length]);
        if !received(buffer, length) || last {
            break;
        }
    }
    Ok(())
}

/// Whether `datagram` holds the message that ends a dump: `NLMSG_DONE`, or `NLMSG_ERROR`
/// (the kernel refused it). Reads only the headers.
fn ends_dump(datagram: &[u8]) -> bool {
    frames(datagram).flatten().any(|frame| {
        Header::parse(frame).is_ok_and(|header| {
            let kind = i32::from(header.message_type);
            kind == libc::NLMSG_DONE || kind == libc::NLMSG_ERROR
        })
    })
}

/// The second thread of [`ConntrackSocket::dump_overlapped`]: decodes each received batch,
/// hands its entries to `on_entry` and gives the buffer back.
fn decode(
    to_decode: Receiver<(AlignedBuffer, usize)>,
    recycle: SyncSender<AlignedBuffer>,
    mut on_entry: impl FnMut(Result<EntryMessage, ParseError>),
) -> Result<DumpSummary, Error> {
    let mut summary = DumpSummary::default();
    let mut refused = None;
    for (buffer, length) in to_decode {
        for message in messages(&buffer.bytes()[..length]) {
            match message {
                Ok(Message::Entry(decoded)) => {
                    summary.entries += 1;
                    on_entry(Ok(decoded));
                }
                Ok(Message::Error(errno)) => {
                    let source = std::io::Error::from_raw_os_error(errno);
                    refused = Some(Error::from_errno(OPERATION, source, Origin::Kernel));
                }
                Ok(_) => {}
                Err(error) => {
                    summary.parse_errors += 1;
                    on_entry(Err(error));
                }
            }
        }
        // The receiving thread may have stopped taking buffers: nothing to give back to.
        let _ = recycle.send(buffer);
    }
    match refused {
        Some(error) => Err(error),
        None => Ok(summary),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: i32, length: u32) -> Vec<u8> {
        let mut bytes = length.to_ne_bytes().to_vec();
        bytes.extend_from_slice(&(kind as u16).to_ne_bytes());
        bytes.extend_from_slice(&[0; 10]);
        bytes.resize(length as usize, 0);
        bytes
    }

    #[test]
    fn a_dump_ends_with_done_or_an_error_and_not_before() {
        let entry = message(0x100, 20);
        let done = message(libc::NLMSG_DONE, 20);
        let error = message(libc::NLMSG_ERROR, 36);
        assert!(!ends_dump(&entry));
        assert!(!ends_dump(&[entry.clone(), entry.clone()].concat()));
        assert!(ends_dump(&[entry.clone(), done].concat()));
        assert!(ends_dump(&error));
        assert!(!ends_dump(&[]));
        // A framing error hides what follows; the decoder reports it, the dump goes on.
        assert!(!ends_dump(&[0xff; 16]));
    }
}
