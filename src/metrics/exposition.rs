//! The Prometheus text exposition format, version 0.0.4 (not OpenMetrics):
//! a size-limited [`Writer`] that only ever emits documents Prometheus's text
//! parser and `promtool check metrics` accept, builders that turn stored
//! gauge, counter, histogram and summary series into [`Family`] values, the
//! escaping, number and name rules of the format, and a strict [`parse`] /
//! [`check`] pair that tests use to prove a document is well formed.
//!
//! Names are sanitised rather than rejected, label sets are written in a
//! stable order (by name, with `le` and `quantile` last), and a series that
//! appears twice in one family is written once, with the value given last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// The `Content-Type` header value of a text exposition response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The label that carries a histogram bucket's upper bound.
const BUCKET_LABEL: &str = "le";
/// The label that carries a summary sample's quantile.
const QUANTILE_LABEL: &str = "quantile";

/// A list of label pairs, as the module passes them around internally.
type Labels = Vec<(String, String)>;

/// The type of a metric family, as written on its `# TYPE` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FamilyType {
    /// A monotonically increasing total; one sample per series.
    Counter,
    /// A value that goes up and down; one sample per series.
    Gauge,
    /// Cumulative `_bucket` samples plus `_sum` and `_count` per series.
    Histogram,
    /// Quantile samples plus `_sum` and `_count` per series.
    Summary,
    /// A value of unknown meaning; one sample per series.
    Untyped,
}

impl FamilyType {
    /// The word used for this type on a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            FamilyType::Counter => "counter",
            FamilyType::Gauge => "gauge",
            FamilyType::Histogram => "histogram",
            FamilyType::Summary => "summary",
            FamilyType::Untyped => "untyped",
        }
    }

    /// The sample name suffixes that samples of a family of this type may carry.
    pub fn allowed_suffixes(self) -> &'static [&'static str] {
        match self {
            FamilyType::Counter | FamilyType::Gauge | FamilyType::Untyped => &[""],
            FamilyType::Histogram => &["_bucket", "_sum", "_count"],
            FamilyType::Summary => &["", "_sum", "_count"],
        }
    }

    fn from_type_word(word: &str) -> Option<Self> {
        match word {
            "counter" => Some(FamilyType::Counter),
            "gauge" => Some(FamilyType::Gauge),
            "histogram" => Some(FamilyType::Histogram),
            "summary" => Some(FamilyType::Summary),
            "untyped" => Some(FamilyType::Untyped),
            _ => None,
        }
    }
}

impl fmt::Display for FamilyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric family: its `# HELP` and `# TYPE` lines and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// The family name; the writer sanitises it with [`sanitize_metric_name`].
    pub name: String,
    /// The help text; an empty one is written as the family name, so that
    /// every family carries help text (promtool reports a family without it).
    pub help: String,
    /// The family type.
    pub kind: FamilyType,
    /// The samples, in the order they are written.
    pub samples: Vec<Sample>,
}

/// One sample line of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Appended to the family name to form the sample name: `""` for
    /// counters, gauges, untyped families and summary quantiles; `"_bucket"`,
    /// `"_sum"` or `"_count"` for histograms and summaries (see
    /// [`FamilyType::allowed_suffixes`]).
    pub suffix: &'static str,
    /// The label pairs; names are sanitised and sorted by the writer.
    pub labels: Vec<(String, String)>,
    /// The sample value.
    pub value: f64,
    /// An optional timestamp in milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

/// Writes families into one exposition document, never exceeding a byte limit.
///
/// Every family is written whole or not at all. A family is refused when
/// writing it would take the families written so far past `max_bytes`; from
/// then on the writer is truncated and refuses every later family too. A
/// family is also rejected (without truncating) when its sanitised name, or
/// a sample name it implies (`_bucket`, `_sum`, `_count`), collides with a
/// family already written, or when a sample does not fit the family type
/// (a suffix the type does not allow, a bucket without `le`, a summary
/// quantile without `quantile`, or `le`/`quantile` on a `_sum` or `_count`):
/// Prometheus's parser would otherwise fail on, or silently misfile, it.
#[derive(Debug, Clone)]
pub struct Writer {
    out: String,
    max_bytes: usize,
    truncated: bool,
    omitted: usize,
    rejected: usize,
    claimed: HashSet<String>,
}

impl Writer {
    /// A writer whose families may take up at most `max_bytes` bytes.
    pub fn new(max_bytes: usize) -> Self {
        Writer {
            out: String::new(),
            max_bytes,
            truncated: false,
            omitted: 0,
            rejected: 0,
            claimed: HashSet::new(),
        }
    }

    /// Writes `# HELP`, `# TYPE` and the samples of `family`, and returns
    /// whether it was written. Nothing of the family is written when it is
    /// refused for the byte limit (or because an earlier family was) or
    /// rejected as described on [`Writer`]. Label names are sanitised, label
    /// pairs sorted by name with `le` and `quantile` last, a label name given
    /// twice keeps its last value, and a series (sample name and label set)
    /// given twice is written once, in its first place, with its last value.
    pub fn family(&mut self, family: &Family) -> bool {
        if self.truncated {
            self.omitted += 1;
            return false;
        }
        let name = sanitize_metric_name(&family.name);
        let claims = implied_names(&name, family.kind);
        let samples: Vec<NormalSample> = family
            .samples
            .iter()
            .map(|sample| NormalSample {
                suffix: sample.suffix,
                labels: normalize_labels(&sample.labels),
                value: sample.value,
                timestamp_ms: sample.timestamp_ms,
            })
            .collect();
        let collides = claims.iter().any(|claim| self.claimed.contains(claim));
        if collides || !samples.iter().all(|s| s.fits(family.kind)) {
            self.rejected += 1;
            return false;
        }
        let text = render_family(&name, &family.help, family.kind, samples);
        if self.out.len().saturating_add(text.len()) > self.max_bytes {
            self.truncated = true;
            self.omitted += 1;
            return false;
        }
        self.out.push_str(&text);
        self.claimed.extend(claims);
        true
    }

    /// Whether a family has been refused for the byte limit.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// How many families have been refused for the byte limit.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// How many families have been rejected for a name collision or a sample
    /// that does not fit their type.
    pub fn rejected(&self) -> usize {
        self.rejected
    }

    /// The document. Beyond the byte limit it may end with up to two comment
    /// lines: `# rejected: K families ...` when families were rejected, and
    /// `# truncated: output limit of N bytes reached, M families omitted`
    /// when the limit was reached.
    pub fn finish(self) -> String {
        let mut out = self.out;
        if self.rejected > 0 {
            out.push_str(&format!(
                "# rejected: {} families whose names collide with earlier families \
                 or whose samples do not fit their type\n",
                self.rejected
            ));
        }
        if self.truncated {
            out.push_str(&format!(
                "# truncated: output limit of {} bytes reached, {} families omitted\n",
                self.max_bytes, self.omitted
            ));
        }
        out
    }
}

/// A sample whose label names are already sanitised, deduplicated and sorted.
struct NormalSample {
    suffix: &'static str,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
}

impl NormalSample {
    fn has_label(&self, name: &str) -> bool {
        self.labels.iter().any(|(n, _)| n == name)
    }

    fn fits(&self, kind: FamilyType) -> bool {
        if !kind.allowed_suffixes().contains(&self.suffix) {
            return false;
        }
        match (kind, self.suffix) {
            (FamilyType::Histogram, "_bucket") => self.has_label(BUCKET_LABEL),
            (FamilyType::Histogram, _) => !self.has_label(BUCKET_LABEL),
            (FamilyType::Summary, "") => self.has_label(QUANTILE_LABEL),
            (FamilyType::Summary, _) => !self.has_label(QUANTILE_LABEL),
            (FamilyType::Counter | FamilyType::Gauge | FamilyType::Untyped, _) => true,
        }
    }
}

/// The family name plus every sample name Prometheus's parser would file
/// under the family.
fn implied_names(name: &str, kind: FamilyType) -> Vec<String> {
    let mut names = vec![name.to_string()];
    for suffix in kind.allowed_suffixes() {
        if !suffix.is_empty() {
            names.push(format!("{name}{suffix}"));
        }
    }
    names
}

fn render_family(name: &str, help: &str, kind: FamilyType, samples: Vec<NormalSample>) -> String {
    let help = if help.trim().is_empty() {
        escape_help(name)
    } else {
        escape_help(help)
    };
    let mut out = format!("# HELP {name} {help}\n# TYPE {name} {kind}\n");

    let mut unique: Vec<NormalSample> = Vec::with_capacity(samples.len());
    let mut seen: HashMap<(&'static str, Labels), usize> = HashMap::new();
    for sample in samples {
        let key = (sample.suffix, sample.labels.clone());
        match seen.get(&key) {
            Some(&index) => unique[index] = sample,
            None => {
                seen.insert(key, unique.len());
                unique.push(sample);
            }
        }
    }

    for sample in &unique {
        out.push_str(name);
        out.push_str(sample.suffix);
        if !sample.labels.is_empty() {
            out.push('{');
            for (i, (label, value)) in sample.labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(label);
                out.push_str("=\"");
                out.push_str(&escape_label_value(value));
                out.push('"');
            }
            out.push('}');
        }
        out.push(' ');
        out.push_str(&format_value(sample.value));
        if let Some(ts) = sample.timestamp_ms {
            out.push(' ');
            out.push_str(&ts.to_string());
        }
        out.push('\n');
    }
    out
}

/// Sanitises label names, keeps the last value of a name given twice, and
/// sorts by name with `le` and `quantile` last.
fn normalize_labels(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(labels.len());
    for (name, value) in labels {
        let name = sanitize_label_name(name);
        match out.iter_mut().find(|(existing, _)| *existing == name) {
            Some(pair) => pair.1.clone_from(value),
            None => out.push((name, value.clone())),
        }
    }
    out.sort_by(|a, b| label_sort_key(&a.0).cmp(&label_sort_key(&b.0)));
    out
}

fn label_sort_key(name: &str) -> (bool, &str) {
    (name == BUCKET_LABEL || name == QUANTILE_LABEL, name)
}

/// Normalises a series' labels for a histogram or summary builder, renaming a
/// user label that would clash with the type's own label to `exported_<name>`.
fn builder_labels(labels: &[(String, String)], reserved: Option<&str>) -> Vec<(String, String)> {
    let renamed: Vec<(String, String)> = labels
        .iter()
        .map(|(name, value)| {
            let name = sanitize_label_name(name);
            match reserved {
                Some(r) if name == r => (format!("exported_{r}"), value.clone()),
                _ => (name, value.clone()),
            }
        })
        .collect();
    normalize_labels(&renamed)
}

fn with_label(labels: &[(String, String)], name: &str, value: String) -> Vec<(String, String)> {
    let mut out = labels.to_vec();
    out.push((name.to_string(), value));
    out
}

/// Escapes a label value: `\` becomes `\\`, `"` becomes `\"` and a line feed
/// becomes `\n`; everything else, including any Unicode, is kept as is.
pub fn escape_label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out
}

/// Escapes help text: `\` becomes `\\` and a line feed becomes `\n`.
pub fn escape_help(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
    out
}

/// Formats a sample value (or an `le` / `quantile` label value) the way
/// Prometheus reads it back exactly: `NaN`, `+Inf` and `-Inf`; the shortest
/// decimal that round-trips for magnitudes from 1e-4 up to 1e15 (so whole
/// numbers have no fraction: `1`, `42`); and the shortest exponent form
/// (`1e-7`, `1.5e300`) outside that range.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    }
    if v.is_infinite() {
        return if v > 0.0 { "+Inf" } else { "-Inf" }.to_string();
    }
    let magnitude = v.abs();
    if magnitude == 0.0 || (1e-4..1e15).contains(&magnitude) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// Turns any stored name into a valid metric name `[a-zA-Z_:][a-zA-Z0-9_:]*`:
/// every other character becomes `_`, a leading digit gets a `_` in front,
/// and an empty name becomes `_`.
pub fn sanitize_metric_name(name: &str) -> String {
    sanitize_name(name, true)
}

/// Turns any stored name into a valid label name `[a-zA-Z_][a-zA-Z0-9_]*`
/// that does not start with the reserved `__`: every other character becomes
/// `_`, a leading digit gets a `_` in front, leading underscores collapse to
/// one, and an empty name becomes `_`.
pub fn sanitize_label_name(name: &str) -> String {
    let out = sanitize_name(name, false);
    if out.starts_with("__") {
        format!("_{}", out.trim_start_matches('_'))
    } else {
        out
    }
}

fn sanitize_name(name: &str, allow_colon: bool) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    for c in name.chars() {
        let valid = c.is_ascii_alphanumeric() || c == '_' || (allow_colon && c == ':');
        if out.is_empty() && c.is_ascii_digit() {
            out.push('_');
        }
        out.push(if valid { c } else { '_' });
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

/// Builds a gauge family with one sample per label set, holding the value
/// given for it (a gauge's last value). A label set given twice (after label
/// names are sanitised) keeps the value given last; series are sorted by
/// label set.
pub fn gauge_family(name: &str, help: &str, series: &[(Vec<(String, String)>, f64)]) -> Family {
    simple_family(name, help, FamilyType::Gauge, series)
}

/// Builds a counter family with one sample per label set, holding the running
/// total given for it. The samples are named exactly `name` (no `_total` is
/// appended: the caller names the counter). A label set given twice keeps the
/// total given last; series are sorted by label set.
pub fn counter_family(name: &str, help: &str, series: &[(Vec<(String, String)>, f64)]) -> Family {
    simple_family(name, help, FamilyType::Counter, series)
}

fn simple_family(
    name: &str,
    help: &str,
    kind: FamilyType,
    series: &[(Vec<(String, String)>, f64)],
) -> Family {
    let mut by_labels: BTreeMap<Vec<(String, String)>, f64> = BTreeMap::new();
    for (labels, value) in series {
        by_labels.insert(normalize_labels(labels), *value);
    }
    Family {
        name: name.to_string(),
        help: help.to_string(),
        kind,
        samples: by_labels
            .into_iter()
            .map(|(labels, value)| Sample {
                suffix: "",
                labels,
                value,
                timestamp_ms: None,
            })
            .collect(),
    }
}

/// The state of one histogram series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistogramData {
    /// Cumulative counts, one per bound: observations less than or equal to it.
    pub bucket_counts: Vec<u64>,
    /// The number of observations.
    pub count: u64,
    /// The sum of the observations.
    pub sum: f64,
}

/// Builds a histogram family: per series, one cumulative `_bucket` sample per
/// bound (`le` formatted by [`format_value`]), then `le="+Inf"`, `_sum` and
/// `_count`. The output is always valid even for inconsistent input: bounds
/// that are not finite are dropped (the `+Inf` bucket is always written), the
/// remaining bounds are sorted and a repeated bound keeps its last count, a
/// count without a bound is ignored, a bound without a count gets the last
/// count given when that already equals `count` (so `HistogramData::default()`
/// writes zero buckets) and is left out otherwise, counts are
/// raised where needed to be non-decreasing, and `_count` and the `+Inf`
/// bucket are the larger of `count` and the last bucket. A user label named
/// `le` is renamed `exported_le`. A label set given twice keeps the data
/// given last; series are sorted by label set.
pub fn histogram_family(
    name: &str,
    help: &str,
    bounds: &[f64],
    series: &[(Vec<(String, String)>, HistogramData)],
) -> Family {
    let mut by_labels: BTreeMap<Vec<(String, String)>, &HistogramData> = BTreeMap::new();
    for (labels, data) in series {
        by_labels.insert(builder_labels(labels, Some(BUCKET_LABEL)), data);
    }
    let mut samples = Vec::new();
    for (labels, data) in by_labels {
        let last_given = data.bucket_counts.last().copied().unwrap_or(0);
        let padding = (last_given == data.count).then_some(last_given);
        let mut buckets: Vec<(f64, u64)> = bounds
            .iter()
            .enumerate()
            .filter(|(_, bound)| bound.is_finite())
            .filter_map(|(i, bound)| {
                let count = data.bucket_counts.get(i).copied().or(padding)?;
                Some((*bound, count))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut repaired: Vec<(f64, u64)> = Vec::with_capacity(buckets.len());
        for (bound, count) in buckets {
            match repaired.last_mut() {
                Some(last) if last.0 == bound => last.1 = count,
                _ => repaired.push((bound, count)),
            }
        }
        let mut running = 0;
        for bucket in &mut repaired {
            running = running.max(bucket.1);
            bucket.1 = running;
        }
        let total = data.count.max(running);
        for (bound, count) in repaired {
            samples.push(Sample {
                suffix: "_bucket",
                labels: with_label(&labels, BUCKET_LABEL, format_value(bound)),
                value: count as f64,
                timestamp_ms: None,
            });
        }
        samples.push(Sample {
            suffix: "_bucket",
            labels: with_label(&labels, BUCKET_LABEL, format_value(f64::INFINITY)),
            value: total as f64,
            timestamp_ms: None,
        });
        samples.push(Sample {
            suffix: "_sum",
            labels: labels.clone(),
            value: data.sum,
            timestamp_ms: None,
        });
        samples.push(Sample {
            suffix: "_count",
            labels,
            value: total as f64,
            timestamp_ms: None,
        });
    }
    Family {
        name: name.to_string(),
        help: help.to_string(),
        kind: FamilyType::Histogram,
        samples,
    }
}

/// The state of one summary series.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SummaryData {
    /// `(quantile, value)` pairs, such as `(0.5, v)`, `(0.9, v)`, `(0.99, v)`.
    pub quantiles: Vec<(f64, f64)>,
    /// The number of observations.
    pub count: u64,
    /// The sum of the observations.
    pub sum: f64,
}

/// Builds a summary family: per series, one sample per quantile (label
/// `quantile`, sorted ascending), then `_sum` and `_count`. Quantiles outside
/// `[0, 1]` (or NaN) are dropped and a repeated quantile keeps its last
/// value. A user label named `quantile` is renamed `exported_quantile`. A
/// label set given twice keeps the data given last; series are sorted by
/// label set.
pub fn summary_family(
    name: &str,
    help: &str,
    series: &[(Vec<(String, String)>, SummaryData)],
) -> Family {
    let mut by_labels: BTreeMap<Vec<(String, String)>, &SummaryData> = BTreeMap::new();
    for (labels, data) in series {
        by_labels.insert(builder_labels(labels, Some(QUANTILE_LABEL)), data);
    }
    let mut samples = Vec::new();
    for (labels, data) in by_labels {
        let mut quantiles: Vec<(f64, f64)> = data
            .quantiles
            .iter()
            .copied()
            .filter(|(q, _)| (0.0..=1.0).contains(q))
            .collect();
        quantiles.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut unique: Vec<(f64, f64)> = Vec::with_capacity(quantiles.len());
        for (q, v) in quantiles {
            match unique.last_mut() {
                Some(last) if last.0 == q => last.1 = v,
                _ => unique.push((q, v)),
            }
        }
        for (q, v) in unique {
            samples.push(Sample {
                suffix: "",
                labels: with_label(&labels, QUANTILE_LABEL, format_value(q)),
                value: v,
                timestamp_ms: None,
            });
        }
        samples.push(Sample {
            suffix: "_sum",
            labels: labels.clone(),
            value: data.sum,
            timestamp_ms: None,
        });
        samples.push(Sample {
            suffix: "_count",
            labels,
            value: data.count as f64,
            timestamp_ms: None,
        });
    }
    Family {
        name: name.to_string(),
        help: help.to_string(),
        kind: FamilyType::Summary,
        samples,
    }
}

/// Why a document failed to parse: the 1-based line and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What was wrong with the line.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A family read back by [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedFamily {
    /// The family name.
    pub name: String,
    /// The text of its `# HELP` line (possibly empty), or `None` without one.
    pub help: Option<String>,
    /// The type from its `# TYPE` line, or `Untyped` without one.
    pub kind: FamilyType,
    /// Its samples, in document order.
    pub samples: Vec<ParsedSample>,
}

/// A sample read back by [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample {
    /// The full sample name, such as `http_duration_seconds_bucket`.
    pub name: String,
    /// The label pairs, unescaped, in document order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
    /// The timestamp in milliseconds, when the line has one.
    pub timestamp_ms: Option<i64>,
    /// The 1-based line the sample is on.
    pub line: usize,
}

impl ParsedSample {
    /// The value of the label `name`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a text exposition document strictly. It accepts what Prometheus's
/// text parser accepts, except that it also rejects: a `# HELP` or `# TYPE`
/// line without a metric name, one whose name is a `_bucket`, `_sum` or
/// `_count` sample name of an earlier histogram or summary, a `# TYPE` line
/// whose type word is missing or not lowercase, and quoted (UTF-8) metric or
/// label names. Families
/// are returned in order of first appearance; a sample is filed under its
/// own name or, for `_bucket`, `_sum` and `_count`, under the histogram or
/// summary it belongs to, as Prometheus does; a sample without a family
/// starts an untyped one. Families without samples are kept.
pub fn parse(text: &str) -> Result<Vec<ParsedFamily>, ParseError> {
    parse_document(text).map(|doc| doc.families)
}

/// Parses `text` with [`parse`] and checks the invariants a correct exposition
/// keeps: every family with samples has a `# TYPE` line before them; all lines
/// of a family are contiguous; histogram samples are `_bucket`, `_sum` or
/// `_count`; no series (sample name and label set) appears twice; each
/// histogram series has buckets with strictly increasing `le`, non-negative
/// and non-decreasing counts, ending with `le="+Inf"` equal to `_count`, plus
/// `_sum` and `_count` without `le`; each summary series has quantiles in
/// `[0, 1]` without repeats, plus `_sum` and `_count` without `quantile`.
/// The error names the line. It does not lint: `promtool check metrics` also
/// reports (and exits with status 3 for) conventions such as counters not
/// named `*_total`, missing help, camelCase or non-base units in names.
pub fn check(text: &str) -> Result<(), String> {
    let doc = parse_document(text).map_err(|e| e.to_string())?;
    check_contiguous(&doc)?;
    for (family, meta) in doc.families.iter().zip(&doc.meta) {
        if let (Some(first), None) = (family.samples.first(), meta.type_line) {
            return Err(format!(
                "line {}: sample `{}` has no # TYPE line for its family",
                first.line, first.name
            ));
        }
        check_no_duplicate_series(family)?;
        match family.kind {
            FamilyType::Histogram => check_histogram(family)?,
            FamilyType::Summary => check_summary(family)?,
            FamilyType::Counter | FamilyType::Gauge | FamilyType::Untyped => {}
        }
    }
    Ok(())
}

#[derive(Default)]
struct Document {
    families: Vec<ParsedFamily>,
    meta: Vec<FamilyMeta>,
    by_name: HashMap<String, usize>,
    /// `(family index, line)` for every HELP, TYPE and sample line.
    sequence: Vec<(usize, usize)>,
}

#[derive(Default)]
struct FamilyMeta {
    type_line: Option<usize>,
}

const BLANKS: [char; 2] = [' ', '\t'];

impl Document {
    /// The family a name belongs to, as Prometheus's parser files it.
    fn resolve(&self, name: &str) -> Option<usize> {
        if let Some(&index) = self.by_name.get(name) {
            return Some(index);
        }
        let with_kind = |suffixes: &[&str], kind: FamilyType| {
            suffixes.iter().find_map(|suffix| {
                let base = name.strip_suffix(suffix).filter(|b| !b.is_empty())?;
                let &index = self.by_name.get(base)?;
                (self.families[index].kind == kind).then_some(index)
            })
        };
        with_kind(&["_count", "_sum"], FamilyType::Summary)
            .or_else(|| with_kind(&["_count", "_sum", "_bucket"], FamilyType::Histogram))
    }

    fn create(&mut self, name: &str) -> usize {
        let index = self.families.len();
        self.families.push(ParsedFamily {
            name: name.to_string(),
            help: None,
            kind: FamilyType::Untyped,
            samples: Vec::new(),
        });
        self.meta.push(FamilyMeta::default());
        self.by_name.insert(name.to_string(), index);
        index
    }

    /// The family a HELP or TYPE line names; it must be the family itself.
    fn metadata_family(&mut self, name: &str, keyword: &str) -> Result<usize, String> {
        match self.resolve(name) {
            Some(index) if self.families[index].name == name => Ok(index),
            Some(index) => Err(format!(
                "# {keyword} for `{name}`, which is a sample name of {} family `{}`",
                self.families[index].kind, self.families[index].name
            )),
            None => Ok(self.create(name)),
        }
    }
}

fn parse_document(text: &str) -> Result<Document, ParseError> {
    let mut doc = Document::default();
    let segments: Vec<&str> = text.split('\n').collect();
    let last = segments.len() - 1;
    for (i, raw) in segments.iter().enumerate() {
        let line = i + 1;
        let content = raw.trim_start_matches(BLANKS);
        if i == last {
            // The text after the final line feed: only blanks may stand there.
            if content.is_empty() {
                break;
            }
            return Err(ParseError {
                line,
                message: "the last line does not end with a line feed".to_string(),
            });
        }
        let result = if content.is_empty() {
            Ok(())
        } else if let Some(comment) = content.strip_prefix('#') {
            parse_comment(&mut doc, comment, line)
        } else {
            parse_sample(&mut doc, content, line)
        };
        result.map_err(|message| ParseError { line, message })?;
    }
    Ok(doc)
}

fn parse_comment(doc: &mut Document, comment: &str, line: usize) -> Result<(), String> {
    let comment = comment.trim_start_matches(BLANKS);
    let (keyword, rest) = comment.split_at(comment.find(BLANKS).unwrap_or(comment.len()));
    if keyword != "HELP" && keyword != "TYPE" {
        return Ok(());
    }
    let rest = rest.trim_start_matches(BLANKS);
    let name_len = metric_name_len(rest);
    if name_len == 0 {
        return Err(format!("# {keyword} line without a valid metric name"));
    }
    let (name, rest) = rest.split_at(name_len);
    if !rest.is_empty() && !rest.starts_with(BLANKS) {
        return Err(format!("invalid metric name in # {keyword} line"));
    }
    let rest = rest.trim_start_matches(BLANKS);
    let index = doc.metadata_family(name, keyword)?;
    if keyword == "HELP" {
        if doc.families[index].help.is_some() {
            return Err(format!("second # HELP line for `{name}`"));
        }
        doc.families[index].help = Some(unescape_help(rest)?);
    } else {
        if doc.meta[index].type_line.is_some() {
            return Err(format!("second # TYPE line for `{name}`"));
        }
        if !doc.families[index].samples.is_empty() {
            return Err(format!("# TYPE line for `{name}` after its samples"));
        }
        let kind = FamilyType::from_type_word(rest)
            .ok_or_else(|| format!("unknown metric type `{rest}`"))?;
        doc.families[index].kind = kind;
        doc.meta[index].type_line = Some(line);
    }
    doc.sequence.push((index, line));
    Ok(())
}

fn parse_sample(doc: &mut Document, content: &str, line: usize) -> Result<(), String> {
    let name_len = metric_name_len(content);
    if name_len == 0 {
        return Err(format!(
            "invalid metric name at `{}`",
            content.chars().take(20).collect::<String>()
        ));
    }
    let (name, mut rest) = content.split_at(name_len);
    if rest.is_empty() {
        return Err(format!("sample `{name}` has no value"));
    }
    let had_blank = rest.starts_with(BLANKS);
    rest = rest.trim_start_matches(BLANKS);
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
        rest = rest.trim_start_matches(BLANKS);
    } else if !had_blank {
        return Err(format!("invalid character after metric name `{name}`"));
    }

    let value_len = rest.find(BLANKS).unwrap_or(rest.len());
    let (value_text, rest) = rest.split_at(value_len);
    if value_text.is_empty() {
        return Err(format!("sample `{name}` has no value"));
    }
    let value = parse_float(value_text)
        .ok_or_else(|| format!("expected a number as value, got `{value_text}`"))?;
    let mut timestamp_ms = None;
    if !rest.is_empty() {
        let rest = rest.trim_start_matches(BLANKS);
        if rest.is_empty() {
            return Err("trailing whitespace after the value".to_string());
        }
        let ts_len = rest.find(BLANKS).unwrap_or(rest.len());
        let (ts_text, after) = rest.split_at(ts_len);
        let ts = ts_text
            .parse::<i64>()
            .map_err(|_| format!("expected an integer timestamp, got `{ts_text}`"))?;
        if !after.is_empty() {
            return Err("unexpected text after the timestamp".to_string());
        }
        timestamp_ms = Some(ts);
    }

    let index = match doc.resolve(name) {
        Some(index) => index,
        None => doc.create(name),
    };
    doc.families[index].samples.push(ParsedSample {
        name: name.to_string(),
        labels,
        value,
        timestamp_ms,
        line,
    });
    doc.sequence.push((index, line));
    Ok(())
}

/// Parses label pairs after `{` up to and including `}`; returns the rest.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, String> {
    loop {
        rest = rest.trim_start_matches(BLANKS);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let name_len = label_name_len(rest);
        if name_len == 0 {
            return Err("invalid label name".to_string());
        }
        let (name, after_name) = rest.split_at(name_len);
        if name == "__name__" {
            return Err("label name `__name__` is reserved".to_string());
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("duplicate label name `{name}`"));
        }
        let after_eq = after_name
            .trim_start_matches(BLANKS)
            .strip_prefix('=')
            .ok_or_else(|| format!("expected `=` after label name `{name}`"))?;
        let after_quote = after_eq
            .trim_start_matches(BLANKS)
            .strip_prefix('"')
            .ok_or_else(|| format!("expected `\"` to open the value of label `{name}`"))?;
        let (value, after_value) = read_label_value(after_quote)
            .map_err(|message| format!("label `{name}`: {message}"))?;
        labels.push((name.to_string(), value));
        rest = after_value.trim_start_matches(BLANKS);
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma;
        } else if !rest.starts_with('}') {
            return Err(format!(
                "expected `,` or `}}` after the value of label `{name}`"
            ));
        }
    }
}

/// Reads an escaped label value up to its closing quote; returns the value
/// and the text after the quote.
fn read_label_value(text: &str) -> Result<(String, &str), String> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, '\\')) => out.push('\\'),
                Some((_, '"')) => out.push('"'),
                Some((_, 'n')) => out.push('\n'),
                Some((_, other)) => return Err(format!("invalid escape sequence `\\{other}`")),
                None => break,
            },
            other => out.push(other),
        }
    }
    Err("unterminated value".to_string())
}

fn unescape_help(text: &str) -> Result<String, String> {
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
            Some('"') => out.push('"'),
            Some(other) => return Err(format!("invalid escape sequence `\\{other}` in help")),
            None => return Err("help ends with a lone backslash".to_string()),
        }
    }
    Ok(out)
}

/// The length of the metric name at the start of `text` (0 when none).
fn metric_name_len(text: &str) -> usize {
    name_len(text, true)
}

/// The length of the label name at the start of `text` (0 when none).
fn label_name_len(text: &str) -> usize {
    name_len(text, false)
}

fn name_len(text: &str, allow_colon: bool) -> usize {
    let mut len = 0;
    for (i, b) in text.bytes().enumerate() {
        let valid = b.is_ascii_alphabetic()
            || b == b'_'
            || (allow_colon && b == b':')
            || (i > 0 && b.is_ascii_digit());
        if !valid {
            break;
        }
        len = i + 1;
    }
    len
}

/// Parses a number as Prometheus does: decimal or exponent notation, and
/// `NaN` / `Inf` / `Infinity` in any case with an optional sign; no hex, no
/// underscores, and no finite number so large it overflows.
fn parse_float(text: &str) -> Option<f64> {
    if text.contains(['p', 'P', '_', 'x', 'X']) {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if value.is_infinite() {
        let word = text.trim_start_matches(['+', '-']).to_ascii_lowercase();
        if word != "inf" && word != "infinity" {
            return None;
        }
    }
    Some(value)
}

fn check_contiguous(doc: &Document) -> Result<(), String> {
    let mut finished = HashSet::new();
    let mut current = None;
    for &(index, line) in &doc.sequence {
        if current == Some(index) {
            continue;
        }
        if finished.contains(&index) {
            return Err(format!(
                "line {line}: family `{}` continues after another family began",
                doc.families[index].name
            ));
        }
        if let Some(previous) = current {
            finished.insert(previous);
        }
        current = Some(index);
    }
    Ok(())
}

fn sorted_labels(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut sorted = labels.to_vec();
    sorted.sort();
    sorted
}

fn check_no_duplicate_series(family: &ParsedFamily) -> Result<(), String> {
    let mut seen = HashSet::new();
    for sample in &family.samples {
        if !seen.insert((sample.name.as_str(), sorted_labels(&sample.labels))) {
            return Err(format!(
                "line {}: duplicate series `{}` {}",
                sample.line,
                sample.name,
                describe_labels(&sample.labels)
            ));
        }
    }
    Ok(())
}

fn describe_labels(labels: &[(String, String)]) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|(n, v)| format!("{n}=\"{}\"", escape_label_value(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

/// Groups the samples of a histogram or summary by their labels without
/// `special`, in order of first appearance.
fn group_series<'a>(
    family: &'a ParsedFamily,
    special: &str,
) -> Vec<(Labels, Vec<&'a ParsedSample>)> {
    let mut groups: Vec<(Labels, Vec<&ParsedSample>)> = Vec::new();
    let mut index: HashMap<Labels, usize> = HashMap::new();
    for sample in &family.samples {
        let key: Vec<(String, String)> = sorted_labels(&sample.labels)
            .into_iter()
            .filter(|(n, _)| n != special)
            .collect();
        match index.get(&key) {
            Some(&i) => groups[i].1.push(sample),
            None => {
                index.insert(key.clone(), groups.len());
                groups.push((key, vec![sample]));
            }
        }
    }
    groups
}

fn check_histogram(family: &ParsedFamily) -> Result<(), String> {
    let name = &family.name;
    for (labels, samples) in group_series(family, BUCKET_LABEL) {
        let series = format!("histogram series `{name}` {}", describe_labels(&labels));
        let mut previous: Option<(f64, f64)> = None;
        let mut sum_seen = false;
        let mut count: Option<f64> = None;
        let last_line = samples.last().map_or(0, |s| s.line);
        for sample in samples {
            let line = sample.line;
            let suffix = &sample.name[name.len().min(sample.name.len())..];
            match suffix {
                "_bucket" => {
                    let le_text = sample
                        .label(BUCKET_LABEL)
                        .ok_or_else(|| format!("line {line}: bucket of {series} has no `le`"))?;
                    let le = parse_float(le_text)
                        .filter(|le| !le.is_nan())
                        .ok_or_else(|| format!("line {line}: invalid le=\"{le_text}\""))?;
                    if sample.value.is_nan() || sample.value < 0.0 {
                        return Err(format!("line {line}: bucket count of {series} is negative"));
                    }
                    if let Some((prev_le, prev_count)) = previous {
                        if le <= prev_le {
                            return Err(format!(
                                "line {line}: bucket le=\"{le_text}\" of {series} does not \
                                 follow a smaller bound"
                            ));
                        }
                        if sample.value < prev_count {
                            return Err(format!(
                                "line {line}: bucket le=\"{le_text}\" of {series} counts less \
                                 than the bucket before it"
                            ));
                        }
                    }
                    previous = Some((le, sample.value));
                }
                "_sum" | "_count" => {
                    if sample.label(BUCKET_LABEL).is_some() {
                        return Err(format!(
                            "line {line}: `{}` carries an `le` label",
                            sample.name
                        ));
                    }
                    if suffix == "_sum" {
                        sum_seen = true;
                    } else {
                        count = Some(sample.value);
                    }
                }
                _ => {
                    return Err(format!(
                        "line {line}: sample `{}` of histogram `{name}` is not _bucket, _sum \
                         or _count",
                        sample.name
                    ));
                }
            }
        }
        let (top_le, top_count) =
            previous.ok_or_else(|| format!("line {last_line}: {series} has no buckets"))?;
        if top_le != f64::INFINITY {
            return Err(format!(
                "line {last_line}: {series} has no le=\"+Inf\" bucket"
            ));
        }
        let count = count.ok_or_else(|| format!("line {last_line}: {series} has no _count"))?;
        if count != top_count {
            return Err(format!(
                "line {last_line}: {series} has _count {} but its +Inf bucket is {}",
                format_value(count),
                format_value(top_count)
            ));
        }
        if !sum_seen {
            return Err(format!("line {last_line}: {series} has no _sum"));
        }
    }
    Ok(())
}

fn check_summary(family: &ParsedFamily) -> Result<(), String> {
    let name = &family.name;
    for (labels, samples) in group_series(family, QUANTILE_LABEL) {
        let series = format!("summary series `{name}` {}", describe_labels(&labels));
        let mut quantiles: Vec<f64> = Vec::new();
        let (mut sum_seen, mut count_seen) = (false, false);
        let last_line = samples.last().map_or(0, |s| s.line);
        for sample in samples {
            let line = sample.line;
            if sample.name == *name {
                let q_text = sample.label(QUANTILE_LABEL).ok_or_else(|| {
                    format!("line {line}: sample of {series} has no `quantile` label")
                })?;
                let q = parse_float(q_text)
                    .filter(|q| (0.0..=1.0).contains(q))
                    .ok_or_else(|| {
                        format!("line {line}: quantile=\"{q_text}\" is not a number in [0, 1]")
                    })?;
                if quantiles.contains(&q) {
                    return Err(format!("line {line}: {series} repeats quantile {q_text}"));
                }
                quantiles.push(q);
            } else {
                if sample.label(QUANTILE_LABEL).is_some() {
                    return Err(format!(
                        "line {line}: `{}` carries a `quantile` label",
                        sample.name
                    ));
                }
                if sample.name.ends_with("_sum") {
                    sum_seen = true;
                } else {
                    count_seen = true;
                }
            }
        }
        if !sum_seen {
            return Err(format!("line {last_line}: {series} has no _sum"));
        }
        if !count_seen {
            return Err(format!("line {last_line}: {series} has no _count"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn write_all(families: &[Family]) -> String {
        let mut writer = Writer::new(1 << 20);
        for family in families {
            assert!(
                writer.family(family),
                "family `{}` was refused",
                family.name
            );
        }
        writer.finish()
    }

    fn sample(suffix: &'static str, pairs: &[(&str, &str)], value: f64) -> Sample {
        Sample {
            suffix,
            labels: labels(pairs),
            value,
            timestamp_ms: None,
        }
    }

    fn family(name: &str, kind: FamilyType, samples: Vec<Sample>) -> Family {
        Family {
            name: name.to_string(),
            help: format!("Help for {name}."),
            kind,
            samples,
        }
    }

    fn sample_lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    /// Asserts that `check` rejects `doc` on `line` with a message containing `fragment`.
    fn assert_rejected(doc: &str, line: usize, fragment: &str) {
        match check(doc) {
            Ok(()) => panic!("check accepted {doc:?}"),
            Err(message) => assert!(
                message.starts_with(&format!("line {line}: ")) && message.contains(fragment),
                "check of {doc:?} said {message:?}, expected line {line} and {fragment:?}"
            ),
        }
    }

    #[test]
    fn escape_label_value_escapes_backslashes_quotes_and_newlines() {
        assert_eq!(escape_label_value("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_label_value("C:\\\\share"), "C:\\\\\\\\share");
    }

    #[test]
    fn escape_label_value_leaves_unicode_tabs_and_empty_values_alone() {
        assert_eq!(escape_label_value(""), "");
        assert_eq!(escape_label_value("zürich 東京 🚀\t"), "zürich 東京 🚀\t");
    }

    #[test]
    fn escape_help_escapes_backslashes_and_newlines_but_not_quotes() {
        assert_eq!(
            escape_help("say \"hi\"\\now\nthen"),
            "say \"hi\"\\\\now\\nthen"
        );
    }

    #[test]
    fn format_value_spells_nan_and_infinities_as_prometheus_does() {
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn format_value_writes_whole_numbers_without_a_fraction() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(100_000_000_000_000.0), "100000000000000");
        assert_eq!(format_value(0.005), "0.005");
        assert_eq!(format_value(2.5), "2.5");
    }

    #[test]
    fn format_value_uses_the_exponent_form_for_tiny_and_huge_magnitudes() {
        assert_eq!(format_value(1e-7), "1e-7");
        assert_eq!(format_value(-2.5e-5), "-2.5e-5");
        assert_eq!(format_value(1e15), "1e15");
        assert_eq!(format_value(1.5e300), "1.5e300");
    }

    #[test]
    fn every_formatted_value_parses_back_to_the_same_number() {
        let values = [
            0.1,
            1.0 / 3.0,
            std::f64::consts::PI,
            -0.0,
            1e-4,
            9.999e-5,
            999_999_999_999_999.0,
            123_456_789.123_456_78,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            -f64::MAX,
            f64::EPSILON,
        ];
        for v in values {
            let text = format_value(v);
            let back = parse_float(&text).unwrap_or_else(|| panic!("{text} did not parse"));
            assert_eq!(back.to_bits(), v.to_bits(), "{v} was written as {text}");
        }
        let series: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (labels(&[("i", &i.to_string())]), *v))
            .collect();
        let text = write_all(&[gauge_family("values", "Values.", &series)]);
        let parsed = parse(&text).expect("the document parses");
        for s in &parsed[0].samples {
            let i: usize = s.label("i").and_then(|i| i.parse().ok()).expect("label i");
            assert_eq!(s.value.to_bits(), values[i].to_bits());
        }
    }

    #[test]
    fn sanitize_metric_name_replaces_every_invalid_character() {
        assert_eq!(
            sanitize_metric_name("http.requests-total"),
            "http_requests_total"
        );
        assert_eq!(sanitize_metric_name("cpu usage %"), "cpu_usage__");
        assert_eq!(sanitize_metric_name("température"), "temp_rature");
        assert_eq!(sanitize_metric_name("9lives"), "_9lives");
        assert_eq!(sanitize_metric_name("job:rate5m"), "job:rate5m");
        assert_eq!(sanitize_metric_name(""), "_");
    }

    #[test]
    fn sanitize_label_name_never_starts_with_a_double_underscore() {
        assert_eq!(sanitize_label_name("__name__"), "_name__");
        assert_eq!(sanitize_label_name("___"), "_");
        assert_eq!(sanitize_label_name("a:b"), "a_b");
        assert_eq!(sanitize_label_name("1st"), "_1st");
        assert_eq!(sanitize_label_name("région"), "r_gion");
        assert_eq!(sanitize_label_name(""), "_");
        assert_eq!(sanitize_label_name("host"), "host");
    }

    #[test]
    fn sanitized_names_always_match_the_name_grammar() {
        let inputs = [
            "", "_", "__", "0", "00", "-", "a b", "é", "🚀🚀", "__9", ":x", "x:", "a.b.c",
            "__name__", "\n", "\"", "\\", "le", "9:",
        ];
        for input in inputs {
            let metric = sanitize_metric_name(input);
            assert_eq!(
                metric_name_len(&metric),
                metric.len(),
                "metric {input:?} -> {metric:?}"
            );
            let label = sanitize_label_name(input);
            assert_eq!(
                label_name_len(&label),
                label.len(),
                "label {input:?} -> {label:?}"
            );
            assert!(!label.starts_with("__"), "label {input:?} -> {label:?}");
        }
    }

    #[test]
    fn tricky_label_values_survive_a_round_trip_through_writer_and_parser() {
        let values = [
            "back\\slash",
            "\\",
            "ends with \\",
            "say \"hi\"",
            "two\nlines\n",
            "zürich 東京 🚀",
            "",
            "tab\there",
            "braces {a=\"b\"}, commas",
            "\\n is not a newline",
        ];
        let series: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (labels(&[("v", v), ("i", &i.to_string())]), i as f64))
            .collect();
        let text = write_all(&[gauge_family("tricky", "Tricky\nhelp \\ text.", &series)]);
        check(&text).expect("the writer's output passes check");
        let parsed = parse(&text).expect("the document parses");
        assert_eq!(parsed[0].help.as_deref(), Some("Tricky\nhelp \\ text."));
        assert_eq!(parsed[0].samples.len(), values.len());
        for s in &parsed[0].samples {
            let i = s.value as usize;
            assert_eq!(s.label("v"), Some(values[i]), "value {i}");
        }
    }

    #[test]
    fn writer_sorts_labels_by_name_with_le_and_quantile_last() {
        let text = write_all(&[
            family(
                "h",
                FamilyType::Histogram,
                vec![
                    sample(
                        "_bucket",
                        &[("le", "+Inf"), ("zone", "z"), ("app", "a")],
                        1.0,
                    ),
                    sample("_sum", &[("zone", "z"), ("app", "a")], 1.0),
                    sample("_count", &[("zone", "z"), ("app", "a")], 1.0),
                ],
            ),
            family(
                "s",
                FamilyType::Summary,
                vec![
                    sample("", &[("quantile", "0.5"), ("b", "2"), ("a", "1")], 1.0),
                    sample("_sum", &[("b", "2"), ("a", "1")], 1.0),
                    sample("_count", &[("b", "2"), ("a", "1")], 1.0),
                ],
            ),
        ]);
        let lines = sample_lines(&text);
        assert_eq!(lines[0], "h_bucket{app=\"a\",zone=\"z\",le=\"+Inf\"} 1");
        assert_eq!(lines[3], "s{a=\"1\",b=\"2\",quantile=\"0.5\"} 1");
        check(&text).expect("the output passes check");
    }

    #[test]
    fn writer_writes_help_and_type_once_per_family() {
        let text = write_all(&[gauge_family(
            "temp_celsius",
            "Temperature.",
            &[
                (labels(&[("room", "a")]), 20.0),
                (labels(&[("room", "b")]), 21.0),
            ],
        )]);
        assert_eq!(text.matches("# HELP temp_celsius ").count(), 1);
        assert_eq!(text.matches("# TYPE temp_celsius gauge\n").count(), 1);
        assert!(text.starts_with("# HELP temp_celsius Temperature.\n# TYPE temp_celsius gauge\n"));
    }

    #[test]
    fn writer_keeps_the_last_value_of_a_repeated_series_in_its_first_place() {
        let text = write_all(&[family(
            "jobs",
            FamilyType::Gauge,
            vec![
                sample("", &[("q", "a")], 1.0),
                sample("", &[("q", "b")], 2.0),
                sample("", &[("q", "a")], 3.0),
            ],
        )]);
        assert_eq!(sample_lines(&text), ["jobs{q=\"a\"} 3", "jobs{q=\"b\"} 2"]);
        check(&text).expect("no duplicate series remain");
    }

    #[test]
    fn writer_keeps_the_last_value_of_a_label_name_given_twice() {
        let text = write_all(&[family(
            "jobs",
            FamilyType::Gauge,
            vec![sample("", &[("a.b", "first"), ("a_b", "second")], 1.0)],
        )]);
        assert_eq!(sample_lines(&text), ["jobs{a_b=\"second\"} 1"]);
    }

    #[test]
    fn gauge_family_keeps_the_last_value_of_a_repeated_label_set() {
        let fam = gauge_family(
            "queue_depth",
            "Depth.",
            &[
                (labels(&[("q", "b")]), 1.0),
                (labels(&[("q", "a")]), 2.0),
                (labels(&[("q", "b")]), 7.0),
            ],
        );
        let values: Vec<(String, f64)> = fam
            .samples
            .iter()
            .map(|s| (s.labels[0].1.clone(), s.value))
            .collect();
        assert_eq!(values, [("a".to_string(), 2.0), ("b".to_string(), 7.0)]);
        check(&write_all(&[fam])).expect("the family passes check");
    }

    #[test]
    fn counter_family_names_its_samples_exactly_as_the_caller_did() {
        let text = write_all(&[
            counter_family(
                "requests_total",
                "Requests.",
                &[(labels(&[("code", "200")]), 12.0)],
            ),
            counter_family("errors", "Errors.", &[(vec![], 3.0)]),
        ]);
        assert!(text.contains("# TYPE requests_total counter\nrequests_total{code=\"200\"} 12\n"));
        assert!(text.contains("# TYPE errors counter\nerrors 3\n"));
        assert!(!text.contains("errors_total"));
        check(&text).expect("the output passes check");
    }

    #[test]
    fn histogram_family_writes_cumulative_buckets_then_inf_sum_and_count() {
        let text = write_all(&[histogram_family(
            "http_request_duration_seconds",
            "Request latency.",
            &[0.1, 0.5, 1.0],
            &[(
                labels(&[("route", "/a")]),
                HistogramData {
                    bucket_counts: vec![1, 3, 4],
                    count: 5,
                    sum: 2.75,
                },
            )],
        )]);
        let expected = "\
# HELP http_request_duration_seconds Request latency.
# TYPE http_request_duration_seconds histogram
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.1\"} 1
http_request_duration_seconds_bucket{route=\"/a\",le=\"0.5\"} 3
http_request_duration_seconds_bucket{route=\"/a\",le=\"1\"} 4
http_request_duration_seconds_bucket{route=\"/a\",le=\"+Inf\"} 5
http_request_duration_seconds_sum{route=\"/a\"} 2.75
http_request_duration_seconds_count{route=\"/a\"} 5
";
        assert_eq!(text, expected);
        check(&text).expect("the histogram passes check");
    }

    #[test]
    fn histogram_family_repairs_inconsistent_data_into_a_valid_histogram() {
        let fam = histogram_family(
            "h",
            "H.",
            &[1.0, 0.1, f64::INFINITY, f64::NAN, 0.1],
            &[(
                vec![],
                HistogramData {
                    bucket_counts: vec![5, 2, 9, 9, 3],
                    count: 4,
                    sum: 1.5,
                },
            )],
        );
        let text = write_all(&[fam]);
        assert_eq!(
            sample_lines(&text),
            [
                "h_bucket{le=\"0.1\"} 3",
                "h_bucket{le=\"1\"} 5",
                "h_bucket{le=\"+Inf\"} 5",
                "h_sum 1.5",
                "h_count 5",
            ]
        );
        check(&text).expect("the repaired histogram passes check");
    }

    #[test]
    fn histogram_family_pads_missing_counts_only_when_they_are_known() {
        let fam = histogram_family(
            "h",
            "H.",
            &[1.0, 2.0, 3.0],
            &[
                (labels(&[("s", "empty")]), HistogramData::default()),
                (
                    labels(&[("s", "full")]),
                    HistogramData {
                        bucket_counts: vec![2],
                        count: 2,
                        sum: 1.0,
                    },
                ),
                (
                    labels(&[("s", "unknown")]),
                    HistogramData {
                        bucket_counts: vec![1],
                        count: 3,
                        sum: 9.0,
                    },
                ),
            ],
        );
        let text = write_all(&[fam]);
        let buckets = |series: &str| -> Vec<&str> {
            sample_lines(&text)
                .into_iter()
                .filter(|l| l.starts_with(&format!("h_bucket{{s=\"{series}\"")))
                .collect()
        };
        assert_eq!(
            buckets("empty"),
            [
                "h_bucket{s=\"empty\",le=\"1\"} 0",
                "h_bucket{s=\"empty\",le=\"2\"} 0",
                "h_bucket{s=\"empty\",le=\"3\"} 0",
                "h_bucket{s=\"empty\",le=\"+Inf\"} 0",
            ]
        );
        assert_eq!(buckets("full").len(), 4);
        assert_eq!(
            buckets("unknown"),
            [
                "h_bucket{s=\"unknown\",le=\"1\"} 1",
                "h_bucket{s=\"unknown\",le=\"+Inf\"} 3",
            ]
        );
        check(&text).expect("the histogram passes check");
    }

    #[test]
    fn histogram_family_renames_a_user_le_label() {
        let text = write_all(&[histogram_family(
            "h",
            "H.",
            &[1.0],
            &[(
                labels(&[("le", "user")]),
                HistogramData {
                    bucket_counts: vec![1],
                    count: 1,
                    sum: 0.5,
                },
            )],
        )]);
        assert!(text.contains("h_bucket{exported_le=\"user\",le=\"1\"} 1\n"));
        assert!(text.contains("h_sum{exported_le=\"user\"} 0.5\n"));
        check(&text).expect("the histogram passes check");
    }

    #[test]
    fn histogram_family_writes_one_series_per_label_set_in_label_order() {
        let data = |n| HistogramData {
            bucket_counts: vec![n],
            count: n,
            sum: n as f64,
        };
        let fam = histogram_family(
            "h",
            "H.",
            &[1.0],
            &[
                (labels(&[("x", "b")]), data(1)),
                (labels(&[("x", "a")]), data(2)),
                (labels(&[("x", "b")]), data(3)),
            ],
        );
        let text = write_all(&[fam]);
        let counts: Vec<&str> = sample_lines(&text)
            .into_iter()
            .filter(|l| l.starts_with("h_count"))
            .collect();
        assert_eq!(counts, ["h_count{x=\"a\"} 2", "h_count{x=\"b\"} 3"]);
        check(&text).expect("the histogram passes check");
    }

    #[test]
    fn summary_family_writes_sorted_quantiles_then_sum_and_count() {
        let text = write_all(&[summary_family(
            "rpc_duration_seconds",
            "RPC latency.",
            &[(
                labels(&[("service", "api")]),
                SummaryData {
                    quantiles: vec![
                        (0.99, 1.5),
                        (0.5, 0.2),
                        (1.5, 9.0),
                        (f64::NAN, 9.0),
                        (0.9, 0.7),
                    ],
                    count: 40,
                    sum: 17.5,
                },
            )],
        )]);
        let expected = "\
# HELP rpc_duration_seconds RPC latency.
# TYPE rpc_duration_seconds summary
rpc_duration_seconds{service=\"api\",quantile=\"0.5\"} 0.2
rpc_duration_seconds{service=\"api\",quantile=\"0.9\"} 0.7
rpc_duration_seconds{service=\"api\",quantile=\"0.99\"} 1.5
rpc_duration_seconds_sum{service=\"api\"} 17.5
rpc_duration_seconds_count{service=\"api\"} 40
";
        assert_eq!(text, expected);
        check(&text).expect("the summary passes check");
    }

    #[test]
    fn summary_family_renames_a_user_quantile_label_and_writes_nan_quantiles() {
        let text = write_all(&[summary_family(
            "s",
            "S.",
            &[(
                labels(&[("quantile", "mine")]),
                SummaryData {
                    quantiles: vec![(0.5, f64::NAN)],
                    count: 0,
                    sum: 0.0,
                },
            )],
        )]);
        assert!(text.contains("s{exported_quantile=\"mine\",quantile=\"0.5\"} NaN\n"));
        check(&text).expect("the summary passes check");
    }

    #[test]
    fn writer_refuses_a_family_past_the_limit_and_every_family_after_it() {
        let small = gauge_family("a", "A.", &[(vec![], 1.0)]);
        let big = gauge_family("b", &"x".repeat(200), &[(vec![], 2.0)]);
        let tiny = gauge_family("c", "C.", &[(vec![], 3.0)]);
        let first = write_all(std::slice::from_ref(&small));
        let limit = first.len() + 50;

        let mut writer = Writer::new(limit);
        assert!(writer.family(&small));
        assert!(!writer.family(&big), "the big family exceeds the limit");
        assert!(writer.is_truncated());
        assert!(!writer.family(&tiny), "later families are refused too");
        assert_eq!(writer.omitted(), 2);
        let text = writer.finish();

        let comment =
            format!("# truncated: output limit of {limit} bytes reached, 2 families omitted\n");
        assert_eq!(text, format!("{first}{comment}"));
        assert!(text.len() - comment.len() <= limit);
        check(&text).expect("a truncated document still passes check");
    }

    #[test]
    fn writer_accepts_a_family_that_exactly_fills_the_limit() {
        let fam = gauge_family("a", "A.", &[(vec![], 1.0)]);
        let exact = write_all(std::slice::from_ref(&fam)).len();
        let mut writer = Writer::new(exact);
        assert!(writer.family(&fam));
        assert!(!writer.is_truncated());
        assert_eq!(writer.finish().len(), exact);
        let mut short = Writer::new(exact - 1);
        assert!(!short.family(&fam));
        assert!(short.finish().starts_with("# truncated: "));
    }

    #[test]
    fn writer_rejects_a_family_whose_names_collide_with_an_earlier_one() {
        let histogram = histogram_family(
            "latency",
            "Latency.",
            &[1.0],
            &[(
                vec![],
                HistogramData {
                    bucket_counts: vec![1],
                    count: 1,
                    sum: 1.0,
                },
            )],
        );
        let mut writer = Writer::new(1 << 20);
        assert!(writer.family(&gauge_family("a.b", "A.", &[(vec![], 1.0)])));
        assert!(!writer.family(&gauge_family(
            "a_b",
            "Same name once sanitised.",
            &[(vec![], 2.0)]
        )));
        assert!(writer.family(&histogram));
        assert!(!writer.family(&gauge_family("latency_count", "Clash.", &[(vec![], 3.0)])));
        assert!(writer.family(&gauge_family("other", "Fine.", &[(vec![], 4.0)])));
        assert_eq!(writer.rejected(), 2);
        assert!(!writer.is_truncated());
        let text = writer.finish();
        assert!(text.contains("# rejected: 2 families "));
        assert!(!text.contains("Clash."));
        check(&text).expect("the document without the rejected families passes check");
    }

    #[test]
    fn writer_rejects_a_gauge_written_before_a_histogram_that_claims_its_name() {
        let mut writer = Writer::new(1 << 20);
        assert!(writer.family(&gauge_family("latency_bucket", "G.", &[(vec![], 1.0)])));
        let histogram =
            histogram_family("latency", "H.", &[], &[(vec![], HistogramData::default())]);
        assert!(!writer.family(&histogram));
        check(&writer.finish()).expect("the document passes check");
    }

    #[test]
    fn writer_rejects_samples_that_do_not_fit_the_family_type() {
        let cases = [
            family("c", FamilyType::Counter, vec![sample("_total", &[], 1.0)]),
            family("g", FamilyType::Gauge, vec![sample("_sum", &[], 1.0)]),
            family("h", FamilyType::Histogram, vec![sample("", &[], 1.0)]),
            family(
                "h",
                FamilyType::Histogram,
                vec![sample("_bucket", &[], 1.0)],
            ),
            family(
                "h",
                FamilyType::Histogram,
                vec![sample("_sum", &[("le", "1")], 1.0)],
            ),
            family("s", FamilyType::Summary, vec![sample("", &[], 1.0)]),
            family(
                "s",
                FamilyType::Summary,
                vec![sample("_count", &[("quantile", "0.5")], 1.0)],
            ),
        ];
        for case in &cases {
            let mut writer = Writer::new(1 << 20);
            assert!(!writer.family(case), "{case:?} was written");
            assert_eq!(writer.rejected(), 1);
        }
    }

    #[test]
    fn writer_sanitises_family_and_label_names() {
        let text = write_all(&[gauge_family(
            "disk.free-bytes",
            "Free.",
            &[(labels(&[("mount point", "/"), ("__name__", "x")]), 1.0)],
        )]);
        assert!(text.contains("# TYPE disk_free_bytes gauge\n"));
        assert!(text.contains("disk_free_bytes{_name__=\"x\",mount_point=\"/\"} 1\n"));
        check(&text).expect("the output passes check");
    }

    #[test]
    fn writer_falls_back_to_the_name_when_help_is_empty() {
        let text = write_all(&[gauge_family("up", "  ", &[(vec![], 1.0)])]);
        assert!(text.starts_with("# HELP up up\n"));
        assert_eq!(parse(&text).expect("parses")[0].help.as_deref(), Some("up"));
    }

    #[test]
    fn writer_writes_timestamps_that_parse_back() {
        let mut fam = gauge_family("t", "T.", &[(vec![], 1.0)]);
        fam.samples[0].timestamp_ms = Some(1_700_000_000_123);
        let text = write_all(&[fam]);
        assert!(text.ends_with("t 1 1700000000123\n"));
        let parsed = parse(&text).expect("parses");
        assert_eq!(parsed[0].samples[0].timestamp_ms, Some(1_700_000_000_123));
    }

    #[test]
    fn nan_and_infinite_values_are_written_and_parsed_back() {
        let text = write_all(&[gauge_family(
            "odd",
            "Odd values.",
            &[
                (labels(&[("v", "nan")]), f64::NAN),
                (labels(&[("v", "pos")]), f64::INFINITY),
                (labels(&[("v", "neg")]), f64::NEG_INFINITY),
            ],
        )]);
        assert!(text.contains("odd{v=\"nan\"} NaN\n"));
        assert!(text.contains("odd{v=\"pos\"} +Inf\n"));
        assert!(text.contains("odd{v=\"neg\"} -Inf\n"));
        let parsed = parse(&text).expect("parses");
        let value = |v: &str| {
            parsed[0]
                .samples
                .iter()
                .find(|s| s.label("v") == Some(v))
                .map(|s| s.value)
                .expect("sample present")
        };
        assert!(value("nan").is_nan());
        assert_eq!(value("pos"), f64::INFINITY);
        assert_eq!(value("neg"), f64::NEG_INFINITY);
    }

    #[test]
    fn a_family_without_samples_is_written_and_passes_check() {
        let text = write_all(&[gauge_family("empty", "Nothing yet.", &[])]);
        assert_eq!(text, "# HELP empty Nothing yet.\n# TYPE empty gauge\n");
        check(&text).expect("an empty family is valid");
        assert!(parse(&text).expect("parses")[0].samples.is_empty());
    }

    #[test]
    fn check_accepts_a_document_built_from_every_builder() {
        let text = write_all(&[
            gauge_family("g", "G.", &[(labels(&[("a", "1")]), 1.5), (vec![], 2.0)]),
            counter_family("c_total", "C.", &[(labels(&[("a", "1")]), 10.0)]),
            histogram_family(
                "h_seconds",
                "H.",
                &[0.005, 0.01, 1.0, 10.0],
                &[
                    (
                        labels(&[("a", "1")]),
                        HistogramData {
                            bucket_counts: vec![0, 1, 1, 2],
                            count: 3,
                            sum: 12.0,
                        },
                    ),
                    (labels(&[("a", "2")]), HistogramData::default()),
                ],
            ),
            summary_family(
                "s_seconds",
                "S.",
                &[(
                    vec![],
                    SummaryData {
                        quantiles: vec![(0.5, 1.0), (0.9, 2.0)],
                        count: 2,
                        sum: 3.0,
                    },
                )],
            ),
        ]);
        check(&text).expect("every builder's output passes check");
        let parsed = parse(&text).expect("parses");
        let kinds: Vec<FamilyType> = parsed.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [
                FamilyType::Gauge,
                FamilyType::Counter,
                FamilyType::Histogram,
                FamilyType::Summary
            ]
        );
        assert_eq!(parsed[2].samples.len(), 2 * (4 + 3));
    }

    #[test]
    fn parse_reads_help_type_and_samples_with_their_escapes() {
        let text = "\
# A free comment is ignored.

# HELP req_total Requests \\\\ with \\n newline.
# TYPE req_total counter
req_total{path=\"/a\\\"b\",x=\"\"} 3 1700000000000
  req_total { path = \"/c\" , } 4
";
        let parsed = parse(text).expect("parses");
        assert_eq!(parsed.len(), 1);
        let fam = &parsed[0];
        assert_eq!(fam.name, "req_total");
        assert_eq!(fam.help.as_deref(), Some("Requests \\ with \n newline."));
        assert_eq!(fam.kind, FamilyType::Counter);
        assert_eq!(
            fam.samples[0].labels,
            labels(&[("path", "/a\"b"), ("x", "")])
        );
        assert_eq!(fam.samples[0].timestamp_ms, Some(1_700_000_000_000));
        assert_eq!(fam.samples[0].line, 5);
        assert_eq!(fam.samples[1].labels, labels(&[("path", "/c")]));
        assert_eq!(fam.samples[1].value, 4.0);
    }

    #[test]
    fn parse_files_bucket_sum_and_count_samples_under_their_histogram() {
        let text = "\
# TYPE h histogram
h_bucket{le=\"+Inf\"} 1
h_sum 2
h_count 1
";
        let parsed = parse(text).expect("parses");
        assert_eq!(parsed.len(), 1);
        let names: Vec<&str> = parsed[0].samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["h_bucket", "h_sum", "h_count"]);
    }

    #[test]
    fn parse_starts_an_untyped_family_for_a_sample_without_one_but_check_rejects_it() {
        let parsed = parse("loose 1\n").expect("Prometheus accepts untyped samples");
        assert_eq!(parsed[0].kind, FamilyType::Untyped);
        assert_eq!(parsed[0].help, None);
        assert_rejected("loose 1\n", 1, "has no # TYPE line");
    }

    #[test]
    fn parse_error_names_the_line() {
        let err = parse("# TYPE a gauge\n\na oops\n").expect_err("bad value");
        assert_eq!(err.line, 3);
        assert_eq!(err.to_string(), format!("line 3: {}", err.message));
        assert!(err.message.contains("oops"));
    }

    #[test]
    fn check_rejects_malformed_lines() {
        let cases = [
            ("# TYPE a gauge\na 1", 2, "does not end with a line feed"),
            ("# TYPE a gauge\n1a 1\n", 2, "invalid metric name"),
            (
                "# TYPE a gauge\na-b 1\n",
                2,
                "invalid character after metric name",
            ),
            ("# TYPE a gauge\na\n", 2, "has no value"),
            ("# TYPE a gauge\na{1x=\"v\"} 1\n", 2, "invalid label name"),
            (
                "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n",
                2,
                "duplicate label name `x`",
            ),
            ("# TYPE a gauge\na{__name__=\"b\"} 1\n", 2, "reserved"),
            ("# TYPE a gauge\na{x=\"v} 1\n", 2, "unterminated"),
            (
                "# TYPE a gauge\na{x=\"\\t\"} 1\n",
                2,
                "invalid escape sequence",
            ),
            ("# TYPE a gauge\na{x=v} 1\n", 2, "expected `\"`"),
            ("# TYPE a gauge\na{x\"v\"} 1\n", 2, "expected `=`"),
            (
                "# TYPE a gauge\na{x=\"v\" y=\"w\"} 1\n",
                2,
                "expected `,` or `}`",
            ),
            ("# TYPE a gauge\na one\n", 2, "expected a number"),
            ("# TYPE a gauge\na 0x1p4\n", 2, "expected a number"),
            ("# TYPE a gauge\na 1_000\n", 2, "expected a number"),
            ("# TYPE a gauge\na 1e400\n", 2, "expected a number"),
            ("# TYPE a gauge\na 1\r\n", 2, "expected a number"),
            ("# TYPE a gauge\na 1 \n", 2, "trailing whitespace"),
            ("# TYPE a gauge\na 1 12.5\n", 2, "integer timestamp"),
            ("# TYPE a gauge\na 1 12 x\n", 2, "after the timestamp"),
            ("# TYPE a gauges\n", 1, "unknown metric type"),
            ("# TYPE a GAUGE\n", 1, "unknown metric type"),
            ("# TYPE a\n", 1, "unknown metric type"),
            ("# HELP a bad \\t escape\n", 1, "invalid escape sequence"),
            ("# HELP a lone \\\n", 1, "lone backslash"),
            ("# HELP 9a x\n", 1, "without a valid metric name"),
            ("# HELP\n", 1, "without a valid metric name"),
            ("# HELP a-b x\n", 1, "invalid metric name in # HELP"),
        ];
        for (doc, line, fragment) in cases {
            assert_rejected(doc, line, fragment);
        }
    }

    #[test]
    fn check_rejects_broken_family_structure() {
        let cases = [
            ("a 1\n", 1, "has no # TYPE line"),
            ("# HELP a x\na 1\n", 2, "has no # TYPE line"),
            (
                "# TYPE a counter\na_total 1\n",
                2,
                "sample `a_total` has no # TYPE",
            ),
            ("# TYPE a gauge\na 1\n# TYPE a gauge\n", 3, "second # TYPE"),
            ("# HELP a x\n# HELP a y\n", 2, "second # HELP"),
            ("# HELP a x\na 1\n# TYPE a gauge\n", 3, "after its samples"),
            (
                "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"y\"} 2\n",
                5,
                "continues after another family",
            ),
            (
                "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n# HELP h_count x\n",
                5,
                "sample name of histogram family `h`",
            ),
            (
                "# TYPE s summary\ns_sum 1\ns_count 1\n# TYPE s_sum gauge\n",
                4,
                "sample name of summary family `s`",
            ),
            (
                "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n",
                3,
                "duplicate series",
            ),
            (
                "# TYPE a gauge\na{x=\"1\",y=\"2\"} 1\na{y=\"2\",x=\"1\"} 2\n",
                3,
                "duplicate series",
            ),
            ("# TYPE a gauge\na 1\na 2 1000\n", 3, "duplicate series"),
        ];
        for (doc, line, fragment) in cases {
            assert_rejected(doc, line, fragment);
        }
    }

    #[test]
    fn check_rejects_broken_histograms() {
        let h = "# TYPE h histogram\n";
        let cases = [
            (
                "h_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",
                4,
                "no le=\"+Inf\" bucket",
            ),
            (
                "h_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
                4,
                "has _count 3 but its +Inf bucket is 2",
            ),
            (
                "h_bucket{le=\"1\"} 3\nh_bucket{le=\"2\"} 2\nh_bucket{le=\"+Inf\"} 3\n",
                3,
                "counts less than the bucket before it",
            ),
            (
                "h_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\n",
                3,
                "does not follow a smaller bound",
            ),
            (
                "h_bucket{le=\"1\"} 1\nh_bucket{le=\"1.0\"} 1\nh_bucket{le=\"+Inf\"} 1\n",
                3,
                "does not follow a smaller bound",
            ),
            ("h_bucket{le=\"+Inf\"} 1\nh_count 1\n", 3, "has no _sum"),
            ("h_bucket{le=\"+Inf\"} 1\nh_sum 1\n", 3, "has no _count"),
            ("h_sum 1\nh_count 1\n", 3, "has no buckets"),
            ("h_bucket 1\n", 2, "has no `le`"),
            ("h_bucket{le=\"abc\"} 1\n", 2, "invalid le=\"abc\""),
            ("h_bucket{le=\"NaN\"} 1\n", 2, "invalid le=\"NaN\""),
            ("h_bucket{le=\"+Inf\"} -1\n", 2, "negative"),
            ("h 1\n", 2, "is not _bucket, _sum or _count"),
            (
                "h_bucket{le=\"+Inf\"} 1\nh_sum{le=\"1\"} 1\n",
                3,
                "carries an `le` label",
            ),
            (
                "h_bucket{x=\"a\",le=\"+Inf\"} 1\nh_sum{x=\"a\"} 1\nh_count{x=\"a\"} 1\n\
                 h_bucket{x=\"b\",le=\"+Inf\"} 1\nh_sum{x=\"b\"} 1\n",
                6,
                "histogram series `h` {x=\"b\"} has no _count",
            ),
        ];
        for (body, line, fragment) in cases {
            assert_rejected(&format!("{h}{body}"), line, fragment);
        }
    }

    #[test]
    fn check_rejects_broken_summaries() {
        let s = "# TYPE s summary\n";
        let cases = [
            (
                "s{quantile=\"1.5\"} 1\ns_sum 1\ns_count 1\n",
                2,
                "not a number in [0, 1]",
            ),
            (
                "s{quantile=\"-0.1\"} 1\ns_sum 1\ns_count 1\n",
                2,
                "not a number in [0, 1]",
            ),
            ("s 1\ns_sum 1\ns_count 1\n", 2, "has no `quantile` label"),
            (
                "s{quantile=\"0.5\"} 1\ns{quantile=\"0.50\"} 1\ns_sum 1\ns_count 1\n",
                3,
                "repeats quantile 0.50",
            ),
            ("s{quantile=\"0.5\"} 1\ns_count 1\n", 3, "has no _sum"),
            ("s{quantile=\"0.5\"} 1\ns_sum 1\n", 3, "has no _count"),
            (
                "s_sum 1\ns_count{quantile=\"0.5\"} 1\n",
                3,
                "carries a `quantile` label",
            ),
        ];
        for (body, line, fragment) in cases {
            assert_rejected(&format!("{s}{body}"), line, fragment);
        }
    }

    #[test]
    fn check_accepts_blank_lines_free_comments_and_a_summary_without_quantiles() {
        let text = "\
# a comment

# HELP s S.
# TYPE s summary
s_sum 0
s_count 0
#
";
        check(text).expect("valid document");
    }
}
