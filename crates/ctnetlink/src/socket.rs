//! The netlink socket every other module of this crate talks through: opening and binding it,
//! sending, the one receive loop, and socket options.
//!
//! It owns an [`mnl::Socket`], which is not `Send`: keep each socket on the thread that
//! opened it.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use conntrack_codec::event_filter::Instruction;

use crate::error::Error;

/// What one read from a netlink socket brought.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Read {
    /// This many bytes arrived (for a batch read: this many datagrams).
    Data(usize),
    /// The receive queue overflowed and the kernel dropped messages (`ENOBUFS`). The kernel
    /// reports it once, on the next read, and then delivers what is still queued.
    Overrun,
    /// Nothing is queued: the read was non-blocking, or the receive timeout expired
    /// (`EAGAIN`).
    Empty,
}

impl Read {
    /// The error to report when a socket that joins no multicast group overruns: the kernel
    /// could not queue a reply, which is lost.
    pub(crate) fn lost_reply(operation: &'static str) -> Error {
        Error::system_call(operation, io::Error::from_raw_os_error(libc::ENOBUFS))
    }
}

/// A bound netlink socket.
pub(crate) struct NetlinkSocket {
    socket: mnl::Socket,
}

impl NetlinkSocket {
    /// Opens a socket on `bus`, bound to the multicast `groups` (legacy bitmask; 0 for none)
    /// with a port id chosen by the kernel.
    pub(crate) fn open(bus: mnl::Bus, groups: u32, operation: &'static str) -> Result<Self, Error> {
        let socket = mnl::Socket::open(bus).map_err(|e| Error::system_call(operation, e))?;
        socket
            .bind(groups, mnl::mnl_sys::MNL_SOCKET_AUTOPID)
            .map_err(|e| Error::system_call(operation, e))?;
        Ok(NetlinkSocket { socket })
    }

    /// The port id the kernel gave this socket, unique among the netlink sockets of its
    /// network namespace.
    pub(crate) fn port_id(&self) -> u32 {
        self.socket.portid()
    }

    /// Sends one datagram, whole.
    pub(crate) fn send(&self, operation: &'static str, datagram: &[u8]) -> Result<(), Error> {
        let sent = self
            .socket
            .send(datagram)
            .map_err(|e| Error::system_call(operation, e))?;
        if sent != datagram.len() {
            let source = io::Error::new(io::ErrorKind::WriteZero, "the request was sent in part");
            return Err(Error::Io { operation, source });
        }
        Ok(())
    }

    /// Reads one datagram into `buffer`. `flags` are `recv` flags, such as `MSG_DONTWAIT`.
    pub(crate) fn read(
        &self,
        operation: &'static str,
        buffer: &mut AlignedBuffer,
        flags: libc::c_int,
    ) -> Result<Read, Error> {
        let bytes = buffer.bytes_mut();
        read_retrying(operation, || {
            // SAFETY: `bytes` is valid for writes of its length, and exclusively borrowed
            // for the call.
            let received = unsafe {
                libc::recv(
                    self.as_raw_fd(),
                    bytes.as_mut_ptr().cast(),
                    bytes.len(),
                    flags,
                )
            };
            usize::try_from(received).map_err(|_| io::Error::last_os_error())
        })
    }

    /// Reads up to `N` datagrams in one `recvmmsg`, each into its own `slot`-byte part of
    /// `buffer`, waiting for the first one only (unless `flags` say not to wait at all). On
    /// [`Read::Data`], `sizes` holds the size of each datagram that arrived.
    pub(crate) fn read_batch<const N: usize>(
        &self,
        operation: &'static str,
        buffer: &mut AlignedBuffer,
        slot: usize,
        sizes: &mut [Datagram; N],
        flags: libc::c_int,
    ) -> Result<Read, Error> {
        let mut vectors = [const {
            libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }
        }; N];
        for (vector, slot) in vectors
            .iter_mut()
            .zip(buffer.bytes_mut().chunks_exact_mut(slot))
        {
            vector.iov_base = slot.as_mut_ptr().cast();
            vector.iov_len = slot.len();
        }
        // SAFETY: `mmsghdr` is plain integers and pointers, for which all-zero bytes are
        // valid (null pointers, zero lengths).
        let mut headers: [libc::mmsghdr; N] = unsafe { std::mem::zeroed() };
        for (header, vector) in headers.iter_mut().zip(vectors.iter_mut()) {
            header.msg_hdr.msg_iov = vector;
            header.msg_hdr.msg_iovlen = 1;
        }
        // MSG_WAITFORONE: wait for the first datagram only (when blocking), then take what
        // is queued. MSG_TRUNC: netlink reports a datagram's full size even when it did not
        // fit, so that a truncated one can be told apart and named.
        let flags = libc::MSG_WAITFORONE | libc::MSG_TRUNC | flags;
        let count = libc::c_uint::try_from(N).unwrap_or(libc::c_uint::MAX);
        let read = read_retrying(operation, || {
            // SAFETY: `headers` holds N headers, each with no address, no control data and
            // one iovec from `vectors`, which outlives the call; each iovec is empty or covers
            // its own slot of `buffer`, disjoint from the others and exclusively borrowed for
            // the call. The timeout pointer may be null.
            let received = unsafe {
                libc::recvmmsg(
                    self.as_raw_fd(),
                    headers.as_mut_ptr(),
                    count,
                    flags,
                    std::ptr::null_mut(),
                )
            };
            usize::try_from(received).map_err(|_| io::Error::last_os_error())
        })?;
        if let Read::Data(received) = read {
            for (size, header) in sizes.iter_mut().zip(&headers[..received]) {
                *size = Datagram {
                    length: header.msg_len as usize,
                    truncated: header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                };
            }
        }
        Ok(read)
    }

    /// Sets a socket option whose value is a C `int` or a struct of them.
    pub(crate) fn set_option<T: OptionValue>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: T,
    ) -> io::Result<()> {
        // SAFETY: `value` lives for the call and its size is passed; `OptionValue` types have
        // no padding, so every byte the kernel reads is initialised.
        let result = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Attaches the classic BPF `program` (`SO_ATTACH_FILTER`), replacing any attached
    /// before; with `None`, detaches it (`SO_DETACH_FILTER`).
    pub(crate) fn attach_filter(&self, program: Option<&[Instruction]>) -> io::Result<()> {
        let Some(program) = program else {
            let detached = self.set_option(libc::SOL_SOCKET, libc::SO_DETACH_FILTER, 0);
            // ENOENT: nothing was attached.
            return match detached {
                Err(error) if error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                other => other,
            };
        };
        let mut instructions: Vec<libc::sock_filter> = program
            .iter()
            .map(|instruction| libc::sock_filter {
                code: instruction.code,
                jt: instruction.jt,
                jf: instruction.jf,
                k: instruction.k,
            })
            .collect();
        let length = u16::try_from(instructions.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        let program = libc::sock_fprog {
            len: length,
            filter: instructions.as_mut_ptr(),
        };
        // SAFETY: `program` points at `instructions`, `length` elements that live until the
        // call returns; the kernel copies and checks them (a program it cannot verify is
        // refused with EINVAL). The padding bytes of `sock_fprog` are not read.
        let result = unsafe {
            libc::setsockopt(
                self.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&raw const program).cast(),
                std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        };
        if result == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Reads a socket option whose value is a C `int`.
    pub(crate) fn int_option(&self, level: libc::c_int, name: libc::c_int) -> io::Result<i32> {
        let mut value: libc::c_int = 0;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `length` are valid for writes of the sizes passed.
        let result = unsafe {
            libc::getsockopt(
                self.as_raw_fd(),
                level,
                name,
                (&raw mut value).cast(),
                &mut length,
            )
        };
        if result == 0 {
            Ok(value)
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Sets or clears `O_NONBLOCK`.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        let fd = self.as_raw_fd();
        // SAFETY: fcntl with integer arguments on a descriptor this value owns.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if nonblocking {
            flags | libc::O_NONBLOCK
        } else {
            flags & !libc::O_NONBLOCK
        };
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl AsRawFd for NetlinkSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

/// The receive loop of every socket of this crate: retries a read interrupted by a signal
/// (`EINTR`), and turns the two errnos that are news rather than failures into a [`Read`]:
/// `ENOBUFS` (messages were dropped) and `EAGAIN` (nothing queued).
fn read_retrying(
    operation: &'static str,
    mut read: impl FnMut() -> io::Result<usize>,
) -> Result<Read, Error> {
    loop {
        match read() {
            Ok(received) => return Ok(Read::Data(received)),
            Err(error) => match error.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) => return Ok(Read::Overrun),
                Some(libc::EAGAIN) => return Ok(Read::Empty),
                _ => return Err(Error::system_call(operation, error)),
            },
        }
    }
}

/// Size of one datagram a batch read brought.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Datagram {
    /// Its full size (with `MSG_TRUNC`, also when it did not fit).
    pub length: usize,
    /// It did not fit in its slot.
    pub truncated: bool,
}

/// A value [`NetlinkSocket::set_option`] may pass to the kernel: C integers and structs of
/// them, with no padding bytes.
pub(crate) trait OptionValue: Copy {}

impl OptionValue for libc::c_int {}

/// `SO_RCVTIMEO`: two 64-bit integers on the targets this crate builds for.
impl OptionValue for libc::timeval {}

/// A heap buffer aligned for `nlmsghdr`, as `mnl` and libnftnl require.
pub(crate) struct AlignedBuffer {
    words: Box<[u64]>,
}

impl AlignedBuffer {
    /// A zeroed buffer of at least `bytes` bytes.
    pub(crate) fn new(bytes: usize) -> Self {
        AlignedBuffer {
            words: vec![0u64; bytes.div_ceil(8)].into_boxed_slice(),
        }
    }

    /// Its size in bytes.
    pub(crate) fn len(&self) -> usize {
        self.words.len() * 8
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: u64 has no padding and every byte pattern is a valid u8; the slice covers
        // exactly the allocation and borrows `self`.
        unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len() * 8) }
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and any u8 written leaves the u64s valid.
        unsafe {
            std::slice::from_raw_parts_mut(self.words.as_mut_ptr().cast(), self.words.len() * 8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failing(errno: i32) -> impl FnMut() -> io::Result<usize> {
        move || Err(io::Error::from_raw_os_error(errno))
    }

    #[test]
    fn an_interrupted_read_is_retried() {
        let mut calls = 0;
        let read = read_retrying("testing", || {
            calls += 1;
            if calls < 3 {
                Err(io::Error::from_raw_os_error(libc::EINTR))
            } else {
                Ok(42)
            }
        });
        assert_eq!(read.unwrap(), Read::Data(42));
        assert_eq!(calls, 3);
    }

    #[test]
    fn overruns_and_empty_queues_are_news_other_errnos_are_errors() {
        let read = |errno| read_retrying("testing", failing(errno));
        assert_eq!(read(libc::ENOBUFS).unwrap(), Read::Overrun);
        assert_eq!(read(libc::EAGAIN).unwrap(), Read::Empty);
        assert!(matches!(
            read(libc::EBADF),
            Err(Error::Io { operation: "testing", source }) if source.raw_os_error() == Some(libc::EBADF)
        ));
        assert!(matches!(
            read(libc::EPERM),
            Err(Error::PermissionDenied {
                operation: "testing"
            })
        ));
    }
}
