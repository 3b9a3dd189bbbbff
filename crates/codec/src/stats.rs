//! The kernel's own counters: table size and limit, and per-CPU statistics.

use crate::attr::Attrs;
use crate::error::ParseError;
use crate::wire::{stats_cpu, stats_global};

/// How full the conntrack table is (`IPCTNL_MSG_CT_GET_STATS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TableSize {
    /// Entries in the table now.
    pub entries: u32,
    /// The table's limit (`nf_conntrack_max`).
    pub max_entries: u32,
}

impl TableSize {
    pub(crate) fn parse(attributes: &[u8]) -> Result<TableSize, ParseError> {
        let mut size = TableSize::default();
        for attr in Attrs::new(attributes) {
            let attr = attr?;
            match attr.kind {
                stats_global::ENTRIES => size.entries = attr.u32_be("CTA_STATS_GLOBAL_ENTRIES")?,
                stats_global::MAX_ENTRIES => {
                    size.max_entries = attr.u32_be("CTA_STATS_GLOBAL_MAX_ENTRIES")?
                }
                _ => {}
            }
        }
        Ok(size)
    }
}

/// One CPU's conntrack statistics (`IPCTNL_MSG_CT_GET_STATS_CPU`), as `conntrack -S` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuStats {
    /// CPU number.
    pub cpu: u16,
    /// Lookups that found an entry.
    pub found: u32,
    /// Packets that could not be tracked.
    pub invalid: u32,
    /// Entries inserted.
    pub insert: u32,
    /// Inserts that failed (a clash with an existing entry).
    pub insert_failed: u32,
    /// Packets dropped because an entry could not be created (often: table full).
    pub drop: u32,
    /// Entries evicted early to make room.
    pub early_drop: u32,
    /// ICMP errors that could not be matched to a connection.
    pub error: u32,
    /// Lookups restarted because the table changed underneath.
    pub search_restart: u32,
    /// Clashes resolved.
    pub clash_resolve: u32,
    /// Hash chains found too long.
    pub chain_too_long: u32,
}

impl CpuStats {
    pub(crate) fn parse(cpu: u16, attributes: &[u8]) -> Result<CpuStats, ParseError> {
        let mut stats = CpuStats {
            cpu,
            ..CpuStats::default()
        };
        for attr in Attrs::new(attributes) {
            let attr = attr?;
            let field = match attr.kind {
                stats_cpu::FOUND => &mut stats.found,
                stats_cpu::INVALID => &mut stats.invalid,
                stats_cpu::INSERT => &mut stats.insert,
                stats_cpu::INSERT_FAILED => &mut stats.insert_failed,
                stats_cpu::DROP => &mut stats.drop,
                stats_cpu::EARLY_DROP => &mut stats.early_drop,
                stats_cpu::ERROR => &mut stats.error,
                stats_cpu::SEARCH_RESTART => &mut stats.search_restart,
                stats_cpu::CLASH_RESOLVE => &mut stats.clash_resolve,
                stats_cpu::CHAIN_TOOLONG => &mut stats.chain_too_long,
                _ => continue,
            };
            *field = attr.u32_be("CTA_STATS_*")?;
        }
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attr::AttrWriter;

    #[test]
    fn every_cpu_counter_comes_from_its_own_attribute() {
        // Attribute n carries 100 + n, for every number the kernel has ever used (1 to 15)
        // and one it has not yet (16): each field must show its own number.
        let mut buf = Vec::new();
        let mut attrs = AttrWriter::new(&mut buf);
        for kind in 1..=16u16 {
            attrs.u32_be(kind, 100 + u32::from(kind));
        }
        let stats = CpuStats::parse(3, &buf).unwrap();
        assert_eq!(
            stats,
            CpuStats {
                cpu: 3,
                found: 102,
                invalid: 104,
                insert: 108,
                insert_failed: 109,
                drop: 110,
                early_drop: 111,
                error: 112,
                search_restart: 113,
                clash_resolve: 114,
                chain_too_long: 115,
            }
        );
    }

    #[test]
    fn cpu_counters_absent_are_zero() {
        assert_eq!(
            CpuStats::parse(1, &[]),
            Ok(CpuStats {
                cpu: 1,
                ..CpuStats::default()
            })
        );
    }

    #[test]
    fn table_size_and_limit() {
        let mut buf = Vec::new();
        AttrWriter::new(&mut buf)
            .u32_be(stats_global::MAX_ENTRIES, 65_536)
            .u32_be(3, 1)
            .u32_be(stats_global::ENTRIES, 12);
        assert_eq!(
            TableSize::parse(&buf),
            Ok(TableSize {
                entries: 12,
                max_entries: 65_536
            })
        );
    }

    #[test]
    fn malformed_statistics_are_errors() {
        let mut buf = Vec::new();
        AttrWriter::new(&mut buf).u16_be(stats_global::ENTRIES, 1);
        assert_eq!(
            TableSize::parse(&buf),
            Err(ParseError::AttributeLength {
                attribute: "CTA_STATS_GLOBAL_ENTRIES",
                length: 2,
                expected: 4
            })
        );
        assert!(matches!(
            CpuStats::parse(0, &[12, 0, stats_cpu::DROP as u8, 0, 0, 0, 0, 1]),
            Err(ParseError::AttributeFraming { length: 12, .. })
        ));
    }
}
