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
