//! Requests to the conntrack table: dump it, read its counters, create and delete entries.

use std::io;
use std::ops::ControlFlow;

use conntrack_codec::request::{self, NewEntry};
use conntrack_codec::{
    CpuStats, EntryMessage, Family, Message, ParseError, TableSize, Tuple, messages,
};

use crate::error::{Error, Origin};
use crate::socket::{AlignedBuffer, NetlinkSocket, Read};

mod overlapped;

pub use overlapped::DecoderPriority;

/// Receive buffer size for one `recv`. Dump replies are batched by the kernel into messages
/// of up to a page or more each; 64 KiB holds any batch it sends.
const RECEIVE_CHUNK: usize = 64 * 1024;

/// A socket for requests to the conntrack table: dump it, read its counters, and create or
/// delete entries.
pub struct ConntrackSocket {
    socket: NetlinkSocket,
    sequence: u32,
    buffer: AlignedBuffer,
}

/// What a dump saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DumpSummary {
    /// Entries decoded and handed to the callback.
    pub entries: u64,
    /// Messages that could not be decoded (each also handed to the callback as an error).
    pub parse_errors: u64,
}

impl ConntrackSocket {
    /// Opens a request socket. Needs no privilege by itself; the requests do.
    pub fn open() -> Result<Self, Error> {
        Ok(ConntrackSocket {
            socket: NetlinkSocket::open(mnl::Bus::Netfilter, 0, "opening a ctnetlink socket")?,
            sequence: 0,
            buffer: AlignedBuffer::new(RECEIVE_CHUNK),
        })
    }

    /// Streams every entry of the table (all families when `family` is `None`) to `on_entry`,
    /// one at a time, as the kernel sends them, each with the optional attributes that were
    /// malformed and left out. A message that cannot be decoded is handed over as an error
    /// and the dump goes on.
    pub fn dump(
        &mut self,
        family: Option<Family>,
        mut on_entry: impl FnMut(Result<EntryMessage, ParseError>),
    ) -> Result<DumpSummary, Error> {
        let mut summary = DumpSummary::default();
        let sequence = self.next_sequence();
        self.exchange(
            "dumping the conntrack table",
            &request::dump(sequence, family),
            |message| {
                match message {
                    Ok(Message::Entry(decoded)) => {
                        summary.entries += 1;
                        on_entry(Ok(decoded));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        summary.parse_errors += 1;
                        on_entry(Err(error));
                    }
                }
                ControlFlow::Continue(())
            },
        )?;
        Ok(summary)
    }

    /// Bytes of the buffer that replies are read into, held for the socket's life.
    pub fn buffer_bytes(&self) -> usize {
        self.buffer.len()
    }

    /// Creates an entry. Fails with a kernel error (see [`Error::is_already_present`])
    /// when an entry with the same tuple exists.
    pub fn create(&mut self, entry: &NewEntry) -> Result<(), Error> {
        let sequence = self.next_sequence();
        self.acknowledged(
            "creating a conntrack entry",
            &request::create(sequence, entry),
        )
    }

    /// Deletes the entry whose original tuple is `original` in `zone` (the default zone when
    /// `None`). Fails with a kernel error (see [`Error::is_not_found`]) when absent.
    pub fn delete(&mut self, original: &Tuple, zone: Option<u16>) -> Result<(), Error> {
        let sequence = self.next_sequence();
        let request = request::delete(sequence, original, zone);
        self.acknowledged("deleting a conntrack entry", &request)
    }

    /// Deletes every entry of `family` (all families when `None`).
    pub fn flush(&mut self, family: Option<Family>) -> Result<(), Error> {
        let sequence = self.next_sequence();
        self.acknowledged(
            "flushing the conntrack table",
            &request::flush(sequence, family),
        )
    }

    /// The table's current number of entries and its limit.
    pub fn table_size(&mut self) -> Result<TableSize, Error> {
        const OPERATION: &str = "reading the conntrack table size";
        let sequence = self.next_sequence();
        let mut size = None;
        self.exchange(
            OPERATION,
            &request::table_size(sequence),
            |message| match message {
                Ok(Message::TableSize(found)) => {
                    size = Some(found);
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            },
        )?;
        size.ok_or(Error::Parse {
            operation: OPERATION,
            source: ParseError::MissingAttribute("CTA_STATS_GLOBAL_ENTRIES"),
        })
    }

    /// Statistics of every CPU, as `conntrack -S` shows them.
    pub fn cpu_stats(&mut self) -> Result<Vec<CpuStats>, Error> {
        const OPERATION: &str = "reading conntrack statistics";
        let sequence = self.next_sequence();
        let mut all = Vec::new();
        let mut failure = None;
        self.exchange(OPERATION, &request::cpu_stats(sequence), |message| {
            match message {
                Ok(Message::CpuStats(stats)) => all.push(stats),
                Ok(_) => {}
                Err(error) => failure = Some(error),
            }
            ControlFlow::Continue(())
        })?;
        match failure {
            Some(source) => Err(Error::Parse {
                operation: OPERATION,
                source,
            }),
            None => Ok(all),
        }
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        self.sequence
    }

    fn acknowledged(&mut self, operation: &'static str, request: &[u8]) -> Result<(), Error> {
        self.exchange(operation, request, |_| ControlFlow::Continue(()))
    }

    /// Sends `request`, then hands every reply message to `on_message` until the kernel ends
    /// the exchange (done, acknowledgement or error) or `on_message` breaks.
    fn exchange(
        &mut self,
        operation: &'static str,
        request: &[u8],
        mut on_message: impl FnMut(Result<Message, ParseError>) -> ControlFlow<()>,
    ) -> Result<(), Error> {
        self.socket.send(operation, request)?;
        loop {
            let received = match self.socket.read(operation, &mut self.buffer, 0)? {
                Read::Data(received) => received,
                Read::Overrun => return Err(Read::lost_reply(operation)),
                // A blocking socket without a receive timeout: the kernel never says this.
                Read::Empty => {
                    let source = io::Error::from_raw_os_error(libc::EAGAIN);
                    return Err(Error::system_call(operation, source));
                }
            };
            for message in messages(&self.buffer.bytes()[..received]) {
                match message {
                    Ok(Message::Done) | Ok(Message::Ack) => return Ok(()),
                    Ok(Message::Error(errno)) => {
                        let error = io::Error::from_raw_os_error(errno);
                        return Err(Error::from_errno(operation, error, Origin::Kernel));
                    }
                    other => {
                        if on_message(other).is_break() {
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}
