//! One parser of the Prometheus text exposition format, for everything that reads the
//! exporter's metrics page: samples with their labels, and the families `# TYPE` and
//! `# HELP` describe.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use crate::host_counts::HostCounts;

/// The per-host families with the original exporter's names (`naming = "seed"`), in the
/// order opening, open, closing, closed.
pub const SEED_FAMILIES: [&str; 4] = [
    "conntrack_opening_connections_total",
    "conntrack_open_connections_total",
    "conntrack_closing_connections_total",
    "conntrack_closed_connections_total",
];

/// The same families with `naming = "plain"`.
pub const PLAIN_FAMILIES: [&str; 4] = [
    "conntrack_opening_connections",
    "conntrack_open_connections",
    "conntrack_closing_connections",
    "conntrack_closed_connections",
];

/// One sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name.
    pub name: String,
    /// Labels, by name.
    pub labels: BTreeMap<String, String>,
    /// Value.
    pub value: f64,
}

/// What the comment lines say about a family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Family {
    /// Its type from `# TYPE`: `counter`, `gauge`, `histogram`, `summary` or `untyped`.
    pub kind: Option<String>,
    /// Its help text from `# HELP`, unescaped.
    pub help: Option<String>,
}

/// A line that is not valid in the text format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// Its line number, from 1.
    pub line: usize,
    /// The line.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: {:?}", self.line, self.reason, self.text)
    }
}

impl std::error::Error for ParseError {}

/// A parsed metrics page.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The page as served.
    pub text: String,
    /// Every sample on it, in order.
    pub samples: Vec<Sample>,
    /// The families described by `# TYPE` and `# HELP` lines, by name.
    pub families: BTreeMap<String, Family>,
}

impl Scrape {
    /// Parses the text exposition format.
    pub fn parse(text: &str) -> Result<Scrape, ParseError> {
        let mut samples = Vec::new();
        let mut families: BTreeMap<String, Family> = BTreeMap::new();
        for (index, line) in text.lines().enumerate() {
            let error = |reason| ParseError {
                line: index + 1,
                text: line.to_owned(),
                reason,
            };
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let Some(comment) = line.strip_prefix('#') else {
                samples.push(parse_sample(line).map_err(error)?);
                continue;
            };
            let mut words = comment.trim_start().splitn(3, ' ');
            let (keyword, name, rest) = (words.next(), words.next(), words.next());
            match (keyword, name) {
                (Some("TYPE"), Some(name)) => {
                    let kind = rest.map(str::trim).filter(|kind| is_type(kind));
                    let kind = kind.ok_or_else(|| error("not a metric type"))?;
                    families.entry(name.to_owned()).or_default().kind = Some(kind.to_owned());
                }
                (Some("HELP"), Some(name)) => {
                    let help = unescape(rest.unwrap_or_default(), false).map_err(error)?;
                    families.entry(name.to_owned()).or_default().help = Some(help);
                }
                // Any other comment carries nothing.
                _ => {}
            }
        }
        Ok(Scrape {
            text: text.to_owned(),
            samples,
            families,
        })
    }

    /// The value of the sample `name` with exactly `labels`, if present.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|sample| sample.name == name && sample.labels == wanted)
            .map(|sample| sample.value)
    }

    /// The sum of every sample named `name`, whatever its labels; 0 when there is none.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|sample| sample.name == name)
            .map(|sample| sample.value)
            .sum()
    }

    /// Whether any sample is named `name`.
    pub fn has_family(&self, name: &str) -> bool {
        self.samples.iter().any(|sample| sample.name == name)
    }

    /// The type `# TYPE` gives the family `name`, if any.
    pub fn kind(&self, name: &str) -> Option<&str> {
        self.families.get(name)?.kind.as_deref()
    }

    /// The hosts in any of the per-host `families`, with their four numbers summed over any
    /// other labels. Fails when a label set lacks one of the families: every label set shows
    /// all four, zeros included.
    pub fn host_counts(&self, families: [&str; 4]) -> Result<HostCounts, String> {
        self.host_counts_where(families, None)
    }

    /// Like [`host_counts`](Self::host_counts), for the label sets whose label `name` is
    /// `value` only (`("netns", "pod-a")`: one namespace's hosts).
    pub fn host_counts_with(
        &self,
        families: [&str; 4],
        name: &str,
        value: &str,
    ) -> Result<HostCounts, String> {
        self.host_counts_where(families, Some((name, value)))
    }

    fn host_counts_where(
        &self,
        families: [&str; 4],
        only: Option<(&str, &str)>,
    ) -> Result<HostCounts, String> {
        let mut counts = HostCounts::new();
        for (labels, numbers) in self.label_set_counts(families)? {
            if let Some((name, value)) = only
                && labels.get(name).map(String::as_str) != Some(value)
            {
                continue;
            }
            let host = labels
                .get("host")
                .ok_or_else(|| format!("{labels:?} without a host label"))?;
            let host: IpAddr = host
                .parse()
                .map_err(|_| format!("host label {host:?} is not an address"))?;
            let sum = counts.entry(host).or_default();
            for (total, number) in sum.iter_mut().zip(numbers) {
                *total += number;
            }
        }
        Ok(counts)
    }

    /// Every label set in any of the per-connection `families`, with its four numbers. Fails
    /// when a label set lacks one of the families or has two samples in one.
    pub fn label_set_counts(
        &self,
        families: [&str; 4],
    ) -> Result<BTreeMap<BTreeMap<String, String>, [u64; 4]>, String> {
        let mut found: BTreeMap<&BTreeMap<String, String>, [Option<u64>; 4]> = BTreeMap::new();
        for sample in &self.samples {
            let Some(group) = families.iter().position(|name| *name == sample.name) else {
                continue;
            };
            let labels = &sample.labels;
            let slot = &mut found.entry(labels).or_default()[group];
            if slot.is_some() {
                return Err(format!("{} has two samples for {labels:?}", sample.name));
            }
            if sample.value < 0.0 || sample.value.fract() != 0.0 {
                return Err(format!("{} {labels:?} = {}", sample.name, sample.value));
            }
            *slot = Some(sample.value as u64);
        }
        found
            .into_iter()
            .map(|(labels, counts)| {
                let mut complete = [0; 4];
                for (group, count) in counts.into_iter().enumerate() {
                    complete[group] =
                        count.ok_or_else(|| format!("{labels:?} lacks {}", families[group]))?;
                }
                Ok((labels.clone(), complete))
            })
            .collect()
    }
}

fn is_type(kind: &str) -> bool {
    matches!(
        kind,
        "counter" | "gauge" | "histogram" | "summary" | "untyped"
    )
}

/// `name{label="value",...} value [timestamp]`
fn parse_sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(['{', ' ', '\t'])
        .ok_or("a sample without a value")?;
    let name = &line[..name_end];
    if !is_metric_name(name) {
        return Err("not a metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("a sample without a value")?;
    let value = value.parse().map_err(|_| "a value that is not a number")?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| "a timestamp that is not an integer")?;
    }
    if fields.next().is_some() {
        return Err("more than a value and a timestamp after the labels");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads `label="value",...}` into `labels`; returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (name, after) = rest.split_once('=').ok_or("a label without a value")?;
        let name = name.trim();
        if !is_label_name(name) {
            return Err("not a label name");
        }
        let quoted = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let end = closing_quote(quoted).ok_or("a label value without its closing quote")?;
        let value = unescape(&quoted[..end], true)?;
        if labels.insert(name.to_owned(), value).is_some() {
            return Err("a label given twice");
        }
        rest = quoted[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("labels not separated by commas");
        }
    }
}

/// The index of the first quote in `text` that no backslash escapes.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        match c {
            '"' if !escaped => return Some(index),
            '\\' => escaped = !escaped,
            _ => escaped = false,
        }
    }
    None
}

/// Undoes the format's escapes: `\\` and `\n` everywhere, `\"` in label values.
fn unescape(text: &str, quotes: bool) -> Result<String, &'static str> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('"') if quotes => out.push('"'),
            _ => return Err("an unknown escape"),
        }
    }
    Ok(out)
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP conntrack_open_connections_total How many open connections are there to the remote host?
# TYPE conntrack_open_connections_total gauge
conntrack_open_connections_total{host=\"10.0.0.9\"} 3
conntrack_open_connections_total{host=\"fd00::9\"} 0

# HELP conntrack_exporter_events_total Events applied, by type \\\\ kind.\\nSecond line.
# TYPE conntrack_exporter_events_total counter
conntrack_exporter_events_total{type=\"new\"} 12
conntrack_exporter_events_total{type=\"destroy\" , } 5 1700000000000
# a comment that describes nothing
odd_labels{a=\"x\\\"y\",b=\"back\\\\slash\\nnew line\",c=\"}, {\"} +Inf
not_a_number NaN
";

    fn page() -> Scrape {
        Scrape::parse(PAGE).unwrap()
    }

    #[test]
    fn samples_keep_their_labels_and_values() {
        let scrape = page();
        assert_eq!(scrape.samples.len(), 6);
        let open = "conntrack_open_connections_total";
        assert_eq!(scrape.value(open, &[("host", "10.0.0.9")]), Some(3.0));
        assert_eq!(scrape.value(open, &[("host", "fd00::9")]), Some(0.0));
        assert_eq!(scrape.value(open, &[]), None);
        assert_eq!(
            scrape.value(open, &[("host", "10.0.0.9"), ("x", "y")]),
            None
        );
        let events = "conntrack_exporter_events_total";
        assert_eq!(scrape.value(events, &[("type", "destroy")]), Some(5.0));
        assert_eq!(scrape.sum(events), 17.0);
        assert_eq!(scrape.sum("absent"), 0.0);
        assert!(scrape.has_family(events));
        assert!(!scrape.has_family("conntrack_exporter_events"));
        assert!(scrape.value("not_a_number", &[]).unwrap().is_nan());
    }

    #[test]
    fn label_values_are_unescaped() {
        let scrape = page();
        let odd = &scrape.samples[4];
        assert_eq!(odd.name, "odd_labels");
        assert_eq!(odd.labels["a"], "x\"y");
        assert_eq!(odd.labels["b"], "back\\slash\nnew line");
        assert_eq!(odd.labels["c"], "}, {");
        assert_eq!(odd.value, f64::INFINITY);
    }

    #[test]
    fn families_carry_type_and_help() {
        let scrape = page();
        assert_eq!(
            scrape.kind("conntrack_exporter_events_total"),
            Some("counter")
        );
        assert_eq!(
            scrape.kind("conntrack_open_connections_total"),
            Some("gauge")
        );
        assert_eq!(scrape.kind("odd_labels"), None);
        let help = scrape.families["conntrack_exporter_events_total"]
            .help
            .as_deref();
        assert_eq!(help, Some("Events applied, by type \\ kind.\nSecond line."));
    }

    #[test]
    fn host_counts_need_all_four_families_for_every_host() {
        let families = ["a", "b", "c", "d"];
        let page = "a{host=\"10.0.0.1\"} 1\nb{host=\"10.0.0.1\"} 2\nc{host=\"10.0.0.1\"} 0\n\
                    d{host=\"10.0.0.1\"} 4\nother{host=\"10.0.0.2\"} 1\n";
        let counts = Scrape::parse(page).unwrap().host_counts(families).unwrap();
        assert_eq!(counts.len(), 1);
        assert_eq!(counts[&"10.0.0.1".parse().unwrap()], [1, 2, 0, 4]);

        let missing = Scrape::parse("a{host=\"10.0.0.1\"} 1\n").unwrap();
        let error = missing.host_counts(families).unwrap_err();
        assert_eq!(error, "{\"host\": \"10.0.0.1\"} lacks b");
        let fraction = Scrape::parse("a{host=\"10.0.0.1\"} 0.5\n").unwrap();
        assert!(fraction.host_counts(families).is_err());
        let no_host = Scrape::parse("a{hst=\"10.0.0.1\"} 1\n").unwrap();
        assert!(no_host.host_counts(families).is_err());
    }

    #[test]
    fn host_counts_sum_over_other_labels() {
        let families = ["a", "b", "c", "d"];
        let mut page = String::new();
        for (port, numbers) in [("80", [1, 2, 3, 4]), ("443", [10, 20, 30, 40])] {
            for (family, number) in families.iter().zip(numbers) {
                let labels = format!("host=\"fd00::1\",service_port=\"{port}\"");
                page.push_str(&format!("{family}{{{labels}}} {number}\n"));
            }
        }
        let scrape = Scrape::parse(&page).unwrap();
        let counts = scrape.host_counts(families).unwrap();
        assert_eq!(counts[&"fd00::1".parse().unwrap()], [11, 22, 33, 44]);
        assert_eq!(scrape.label_set_counts(families).unwrap().len(), 2);
    }

    #[test]
    fn invalid_lines_are_errors_naming_the_line() {
        for (page, reason) in [
            ("ok 1\nbroken{a=\"1\" 2\n", "labels not separated by commas"),
            (
                "ok 1\nbroken{a=\"1} 2\n",
                "a label value without its closing quote",
            ),
            ("ok 1\nbroken{a=1} 2\n", "a label value without quotes"),
            ("ok 1\nbroken{1a=\"1\"} 2\n", "not a label name"),
            ("ok 1\nbroken{a=\"1\",a=\"2\"} 2\n", "a label given twice"),
            ("ok 1\nbroken{a=\"\\t\"} 2\n", "an unknown escape"),
            ("ok 1\nbroken\n", "a sample without a value"),
            ("ok 1\nbroken one\n", "a value that is not a number"),
            (
                "ok 1\nbroken 1 2 3\n",
                "more than a value and a timestamp after the labels",
            ),
            (
                "ok 1\nbroken 1 soon\n",
                "a timestamp that is not an integer",
            ),
            ("ok 1\n9broken 1\n", "not a metric name"),
            ("ok 1\n# TYPE broken meter\n", "not a metric type"),
        ] {
            let error = Scrape::parse(page).unwrap_err();
            assert_eq!((error.line, error.reason), (2, reason), "{page:?}: {error}");
        }
    }
}
