//! One line per connection event on standard output, in the conntrack tool's format or as
//! JSON, for shipping to log processors and for audit. The collector formats the lines here
//! and hands them to a [`LineQueue`](crate::line_queue::LineQueue), so that a standard
//! output nobody reads never holds up event processing. With names shown, a line carries
//! the remote address's name when it is already known (never waiting for a lookup).

use std::fmt::Write as _;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use conntrack_codec::{Entry, EntryKind, Layer4, Status, Tuple};
use metrics::Counter;
use serde::Serialize;
use tracker::{Classification, StateGroup};

use crate::line_queue::LineQueue;
use crate::names::Names;
use crate::settings::EventFormat;

/// Event lines that may wait for standard output: about 4 MiB of typical lines. A burst
/// beyond that, while the reader lags, loses lines (they are counted), never events.
const QUEUE_LINES: usize = 16_384;
/// At exit, how long the lines still queued may take to reach standard output.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Formats event lines.
#[derive(Debug, Clone)]
pub(crate) struct EventLog {
    format: EventFormat,
    /// The names of remote addresses, when names are shown.
    names: Option<Arc<Names>>,
}

impl EventLog {
    /// A log in `format`.
    pub(crate) fn new(format: EventFormat) -> EventLog {
        EventLog {
            format,
            names: None,
        }
    }

    /// Adds the remote address's name to lines, when `names` knows it.
    pub(crate) fn with_names(self, names: Arc<Names>) -> EventLog {
        EventLog {
            names: Some(names),
            ..self
        }
    }

    /// Starts the thread that writes the lines to standard output, and returns the queue
    /// to hand them to; lines it drops are counted in `dropped`.
    pub(crate) fn start_writer(&self, dropped: Counter) -> io::Result<LineQueue> {
        LineQueue::start(
            "event-log",
            "standard output (the event log)",
            io::stdout(),
            QUEUE_LINES,
            DRAIN_LIMIT,
            dropped,
        )
    }

    /// The line for one event (without the trailing newline); `netns` names the network
    /// namespace it happened in when the exporter watches several.
    pub(crate) fn line(
        &self,
        kind: EntryKind,
        entry: &Entry,
        class: &Classification,
        netns: Option<&str>,
    ) -> String {
        let name = self
            .names
            .as_ref()
            .and_then(|names| names.known(class.remote_host));
        let event = Logged {
            kind,
            entry,
            class,
            remote_name: name.as_deref(),
            netns,
        };
        match self.format {
            EventFormat::Netfilter => netfilter_line(&event),
            EventFormat::Json => json_line(&event),
        }
    }
}

/// What one line tells: the event, its classification, the remote address's name when
/// known, and the namespace when the exporter watches several.
#[derive(Clone, Copy)]
struct Logged<'a> {
    kind: EntryKind,
    entry: &'a Entry,
    class: &'a Classification,
    remote_name: Option<&'a str>,
    netns: Option<&'a str>,
}

fn event_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::New => "new",
        EntryKind::Update => "update",
        EntryKind::Destroy => "destroy",
        EntryKind::Dumped => "dump",
    }
}

/// The state as the original exporter's logs name it.
fn state_name(group: Option<StateGroup>) -> Option<&'static str> {
    group.map(|group| match group {
        StateGroup::Opening => "Opening",
        StateGroup::Open => "Open",
        StateGroup::Closing => "Closing",
        StateGroup::Closed => "Closed",
    })
}

fn remote_endpoint(class: &Classification) -> String {
    endpoint(class.remote_host, class.remote_port)
}

/// `    [NEW] tcp      6 120 SYN_SENT src=… dst=… sport=… dport=… [UNREPLIED] src=… … remote=… [remote_name=…] state=opening`,
/// then ` netns=…` when the namespace is named.
fn netfilter_line(event: &Logged) -> String {
    let Logged {
        kind,
        entry,
        class,
        remote_name,
        netns,
    } = *event;
    let mut line = String::with_capacity(256);
    let tag = format!("[{}]", event_name(kind).to_uppercase());
    let protocol = entry.original.protocol;
    let _ = write!(line, "{tag:>9} {:<8} {}", protocol.to_string(), protocol.0);
    if let Some(timeout) = entry.timeout {
        let _ = write!(line, " {timeout}");
    }
    if let Some(state) = entry.tcp_state {
        let _ = write!(line, " {}", state.name());
    }
    write_tuple(&mut line, &entry.original);
    let status = entry.status.unwrap_or_default();
    if !status.contains(Status::SEEN_REPLY) {
        line.push_str(" [UNREPLIED]");
    }
    if let Some(reply) = &entry.reply {
        write_tuple(&mut line, reply);
    }
    if status.contains(Status::ASSURED) {
        line.push_str(" [ASSURED]");
    }
    if let Some(mark) = entry.mark {
        let _ = write!(line, " mark={mark}");
    }
    if let Some(zone) = entry.zone {
        let _ = write!(line, " zone={zone}");
    }
    let _ = write!(line, " remote={}", remote_endpoint(class));
    if let Some(name) = remote_name {
        let _ = write!(line, " remote_name={name}");
    }
    if let Some(group) = class.group {
        let _ = write!(line, " state={}", group.name());
    }
    if let Some(netns) = netns {
        let _ = write!(line, " netns={netns}");
    }
    line
}

fn write_tuple(line: &mut String, tuple: &Tuple) {
    let _ = write!(line, " src={} dst={}", tuple.src, tuple.dst);
    match tuple.layer4 {
        Layer4::Ports { src, dst } => {
            let _ = write!(line, " sport={src} dport={dst}");
        }
        Layer4::Icmp { id, kind, code } => {
            let _ = write!(line, " type={kind} code={code} id={id}");
        }
        Layer4::None => {}
    }
}

/// The keys of the original exporter's JSON lines, so existing log pipelines keep working.
#[derive(Serialize)]
struct JsonEvent<'a> {
    event_type: &'a str,
    original_source_host: String,
    original_destination_host: String,
    reply_source_host: Option<String>,
    reply_destination_host: Option<String>,
    remote_host: String,
    /// The remote address's name, when names are shown and it is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    remote_name: Option<&'a str>,
    state: Option<&'a str>,
    /// Only when the exporter watches several namespaces.
    #[serde(skip_serializing_if = "Option::is_none")]
    netns: Option<&'a str>,
}

fn json_line(event: &Logged) -> String {
    let (entry, class) = (event.entry, event.class);
    let source = |tuple: &Tuple| endpoint(tuple.src, tuple.src_port());
    let destination = |tuple: &Tuple| endpoint(tuple.dst, tuple.dst_port());
    let json = JsonEvent {
        event_type: event_name(event.kind),
        original_source_host: source(&entry.original),
        original_destination_host: destination(&entry.original),
        reply_source_host: entry.reply.as_ref().map(source),
        reply_destination_host: entry.reply.as_ref().map(destination),
        remote_host: remote_endpoint(class),
        remote_name: event.remote_name,
        state: state_name(class.group),
        netns: event.netns,
    };
    serde_json::to_string(&json).unwrap_or_default()
}

fn endpoint(address: std::net::IpAddr, port: Option<u16>) -> String {
    match port {
        Some(port) => SocketAddr::new(address, port).to_string(),
        None => address.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conntrack_codec::TcpState;
    use tracker::Classifier;

    fn sample() -> (Entry, Classification) {
        let mut entry = Entry::new(Tuple::tcp(
            "fd00::1".parse().unwrap(),
            40806,
            "fd00::9".parse().unwrap(),
            443,
        ));
        entry.reply = Some(entry.original.inverted());
        entry.tcp_state = Some(TcpState::SynSent);
        entry.timeout = Some(120);
        entry.status = Some(Status::CONFIRMED);
        let mut classifier = Classifier::new(Vec::new());
        classifier.set_local_addresses(["fd00::1".parse().unwrap()].into());
        let class = classifier.classify(&entry).unwrap();
        (entry, class)
    }

    #[test]
    fn netfilter_lines_read_like_the_conntrack_tool() {
        let (entry, class) = sample();
        let line = EventLog::new(EventFormat::Netfilter).line(EntryKind::New, &entry, &class, None);
        assert_eq!(
            line,
            "    [NEW] tcp      6 120 SYN_SENT src=fd00::1 dst=fd00::9 sport=40806 dport=443 \
             [UNREPLIED] src=fd00::9 dst=fd00::1 sport=443 dport=40806 \
             remote=[fd00::9]:443 state=opening"
        );
    }

    #[test]
    fn json_lines_are_valid_json_with_the_original_keys() {
        let (entry, class) = sample();
        let line = EventLog::new(EventFormat::Json).line(EntryKind::Destroy, &entry, &class, None);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["event_type"], "destroy");
        assert_eq!(value["original_source_host"], "[fd00::1]:40806");
        assert_eq!(value["reply_source_host"], "[fd00::9]:443");
        assert_eq!(value["remote_host"], "[fd00::9]:443");
        assert_eq!(value["state"], "Opening");
        assert!(value.get("netns").is_none(), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn lines_name_the_namespace_when_there_are_several() {
        let (entry, class) = sample();
        let netns = Some("pod-a");
        let line =
            EventLog::new(EventFormat::Netfilter).line(EntryKind::New, &entry, &class, netns);
        assert!(line.ends_with(" state=opening netns=pod-a"), "{line}");
        let line = EventLog::new(EventFormat::Json).line(EntryKind::New, &entry, &class, netns);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["netns"], "pod-a");
    }
}
