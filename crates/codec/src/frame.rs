//! Netlink framing: splitting a received buffer into whole messages, and reading a message's
//! header. Nothing here looks past the header, so it serves every netlink family, not only
//! ctnetlink (the nftables transaction of the `ctnetlink` crate reads its answers with it).

use crate::attr::align;
use crate::error::ParseError;
use crate::wire::NLMSG_HDRLEN;

/// The header every netlink message starts with (`struct nlmsghdr`), in host byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The message's length, header included.
    pub length: u32,
    /// The message type (for ctnetlink, `NFNL_SUBSYS_CTNETLINK << 8 | message`).
    pub message_type: u16,
    /// `NLM_F_*` flags.
    pub flags: u16,
    /// The sequence number of the request this message answers (0 for events).
    pub sequence: u32,
    /// The sending port (0 for the kernel).
    pub port: u32,
}

impl Header {
    /// Reads the header at the start of `message`.
    pub fn parse(message: &[u8]) -> Result<Header, ParseError> {
        let Some(header) = message.first_chunk::<NLMSG_HDRLEN>() else {
            return Err(ParseError::Truncated {
                what: "netlink header",
                needed: NLMSG_HDRLEN,
                available: message.len(),
            });
        };
        let u32_at = |at: usize| {
            u32::from_ne_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
        };
        Ok(Header {
            length: u32_at(0),
            message_type: u16::from_ne_bytes([header[4], header[5]]),
            flags: u16::from_ne_bytes([header[6], header[7]]),
            sequence: u32_at(8),
            port: u32_at(12),
        })
    }
}

/// Splits a received buffer into whole netlink messages (header included) without decoding
/// them.
///
/// A header whose length is below the header size or beyond the buffer yields an error and
/// ends the iteration: the messages after it cannot be located.
pub fn frames(buffer: &[u8]) -> Frames<'_> {
    Frames { rest: buffer }
}

/// Iterator returned by [`frames`].
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<&'a [u8], ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let available = self.rest.len();
        let length = match self.rest.first_chunk::<4>() {
            Some(bytes) => u32::from_ne_bytes(*bytes) as usize,
            None => available,
        };
        if available < NLMSG_HDRLEN || length < NLMSG_HDRLEN || length > available {
            self.rest = &[];
            return Some(Err(ParseError::MessageFraming { length, available }));
        }
        let message = &self.rest[..length];
        self.rest = self.rest.get(align(length)..).unwrap_or(&[]);
        Some(Ok(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_in_host_order() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&20u32.to_ne_bytes());
        bytes.extend_from_slice(&0x0102u16.to_ne_bytes());
        bytes.extend_from_slice(&0x0300u16.to_ne_bytes());
        bytes.extend_from_slice(&77u32.to_ne_bytes());
        bytes.extend_from_slice(&4242u32.to_ne_bytes());
        assert_eq!(
            Header::parse(&bytes),
            Ok(Header {
                length: 20,
                message_type: 0x0102,
                flags: 0x0300,
                sequence: 77,
                port: 4242
            })
        );
        assert_eq!(
            Header::parse(&bytes[..15]),
            Err(ParseError::Truncated {
                what: "netlink header",
                needed: 16,
                available: 15
            })
        );
    }
}
