//! Netlink attributes (`struct nlattr` + payload): reading them from a byte slice and
//! writing them into a message under construction.
//!
//! Reading never panics and never trusts a length field: every slice is bounds-checked and a
//! bad length becomes a [`ParseError`].

use crate::error::ParseError;
use crate::wire::{NLA_F_NESTED, NLA_HDRLEN, NLA_TYPE_MASK};

/// Rounds `len` up to the 4-byte netlink alignment.
pub(crate) const fn align(len: usize) -> usize {
    (len + 3) & !3
}

/// One attribute: its type (flags masked off) and its payload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attr<'a> {
    pub kind: u16,
    pub payload: &'a [u8],
}

impl<'a> Attr<'a> {
    /// The attributes nested inside this one.
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.payload)
    }

    pub fn u8(&self, name: &'static str) -> Result<u8, ParseError> {
        Ok(self.exact::<1>(name)?[0])
    }

    pub fn u16_be(&self, name: &'static str) -> Result<u16, ParseError> {
        Ok(u16::from_be_bytes(self.exact(name)?))
    }

    pub fn u32_be(&self, name: &'static str) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.exact(name)?))
    }

    pub fn u64_be(&self, name: &'static str) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.exact(name)?))
    }

    /// The payload as exactly `N` bytes.
    pub fn exact<const N: usize>(&self, name: &'static str) -> Result<[u8; N], ParseError> {
        self.payload
            .try_into()
            .map_err(|_| ParseError::AttributeLength {
                attribute: name,
                length: self.payload.len(),
                expected: N,
            })
    }
}

/// Iterator over consecutive attributes in a byte slice.
///
/// Yields an error once and then stops if an attribute header is cut short or claims more
/// bytes than remain: nothing after such a point can be framed reliably.
#[derive(Debug, Clone)]
pub(crate) struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Attrs { rest: bytes }
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<Attr<'a>, ParseError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let Some((header, _)) = self.rest.split_first_chunk::<NLA_HDRLEN>() else {
            let available = self.rest.len();
            self.rest = &[];
            return Some(Err(ParseError::Truncated {
                what: "attribute header",
                needed: NLA_HDRLEN,
                available,
            }));
        };
        let length = usize::from(u16::from_ne_bytes([header[0], header[1]]));
        let kind = u16::from_ne_bytes([header[2], header[3]]) & NLA_TYPE_MASK;
        if length < NLA_HDRLEN || length > self.rest.len() {
            let available = self.rest.len();
            self.rest = &[];
            return Some(Err(ParseError::AttributeFraming { length, available }));
        }
        let payload = &self.rest[NLA_HDRLEN..length];
        // The last attribute may omit its padding.
        self.rest = self.rest.get(align(length)..).unwrap_or(&[]);
        Some(Ok(Attr { kind, payload }))
    }
}

/// Writes netlink attributes into a message buffer, keeping 4-byte alignment.
#[derive(Debug)]
pub(crate) struct AttrWriter<'a> {
    buf: &'a mut Vec<u8>,
}

impl<'a> AttrWriter<'a> {
    pub fn new(buf: &'a mut Vec<u8>) -> Self {
        AttrWriter { buf }
    }

    pub fn bytes(&mut self, kind: u16, payload: &[u8]) -> &mut Self {
        let length = NLA_HDRLEN + payload.len();
        self.header(kind, length);
        self.buf.extend_from_slice(payload);
        self.pad();
        self
    }

    pub fn u8(&mut self, kind: u16, value: u8) -> &mut Self {
        self.bytes(kind, &[value])
    }

    pub fn u16_be(&mut self, kind: u16, value: u16) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    pub fn u32_be(&mut self, kind: u16, value: u32) -> &mut Self {
        self.bytes(kind, &value.to_be_bytes())
    }

    /// Writes a nested attribute whose members `fill` writes.
    pub fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut AttrWriter<'_>)) -> &mut Self {
        let start = self.buf.len();
        self.header(kind | NLA_F_NESTED, 0);
        fill(&mut AttrWriter::new(self.buf));
        let length = u16::try_from(self.buf.len() - start).expect("nested attribute over 64 KiB");
        self.buf[start..start + 2].copy_from_slice(&length.to_ne_bytes());
        self
    }

    fn header(&mut self, kind: u16, length: usize) {
        let length = u16::try_from(length).expect("attribute over 64 KiB");
        self.buf.extend_from_slice(&length.to_ne_bytes());
        self.buf.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        self.buf.resize(align(self.buf.len()), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_attributes_read_back() {
        let mut buf = Vec::new();
        AttrWriter::new(&mut buf)
            .u8(1, 7)
            .nested(2, |inner| {
                inner.u16_be(1, 0x1234).u32_be(2, 0xdead_beef);
            })
            .u16_be(3, 80);
        assert_eq!(buf.len() % 4, 0);
        let attrs: Vec<_> = Attrs::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0].u8("a").unwrap(), 7);
        let inner: Vec<_> = attrs[1].nested().collect::<Result<_, _>>().unwrap();
        assert_eq!(inner[0].u16_be("b").unwrap(), 0x1234);
        assert_eq!(inner[1].u32_be("c").unwrap(), 0xdead_beef);
        assert_eq!(attrs[2].kind, 3);
    }

    #[test]
    fn overlong_length_is_an_error_not_a_panic() {
        let buf = [200, 0, 1, 0, 0, 0, 0, 0];
        let mut attrs = Attrs::new(&buf);
        assert!(matches!(
            attrs.next(),
            Some(Err(ParseError::AttributeFraming { length: 200, .. }))
        ));
        assert!(attrs.next().is_none());
    }

    #[test]
    fn short_header_and_zero_length_are_errors() {
        assert!(Attrs::new(&[1, 0]).next().unwrap().is_err());
        assert!(Attrs::new(&[0, 0, 1, 0]).next().unwrap().is_err());
    }

    #[test]
    fn wrong_payload_size_names_the_attribute() {
        let attr = Attr {
            kind: 1,
            payload: &[1, 2, 3],
        };
        assert_eq!(
            attr.u32_be("CTA_MARK"),
            Err(ParseError::AttributeLength {
                attribute: "CTA_MARK",
                length: 3,
                expected: 4
            })
        );
    }
}
