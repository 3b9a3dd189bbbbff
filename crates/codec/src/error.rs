//! The one error of the codec: bytes that do not decode.

/// A message or attribute from the kernel that could not be decoded.
///
/// Every malformed input maps to one of these; the parser never panics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Fewer bytes remain than a header or fixed-size part needs.
    #[error("truncated {what}: needs {needed} bytes, {available} available")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes it needs.
        needed: usize,
        /// Bytes that were left.
        available: usize,
    },
    /// A netlink message header whose length is below the header size or beyond the buffer.
    #[error("netlink message length {length} is invalid ({available} bytes available)")]
    MessageFraming {
        /// The length the header claims.
        length: usize,
        /// Bytes that were left in the buffer.
        available: usize,
    },
    /// An attribute header whose length is below the header size or beyond its container.
    #[error("attribute length {length} is invalid ({available} bytes available)")]
    AttributeFraming {
        /// The length the attribute header claims.
        length: usize,
        /// Bytes that were left in the container.
        available: usize,
    },
    /// An attribute whose payload has the wrong size for its type.
    #[error("attribute {attribute} has {length} bytes, expected {expected}")]
    AttributeLength {
        /// The attribute's name as in the kernel headers.
        attribute: &'static str,
        /// The payload size found.
        length: usize,
        /// The payload size its type requires.
        expected: usize,
    },
    /// A required attribute is absent.
    #[error("missing attribute {0}")]
    MissingAttribute(&'static str),
    /// A tuple whose source and destination belong to different address families.
    #[error("tuple mixes IPv4 and IPv6 addresses")]
    MixedFamilies,
}
