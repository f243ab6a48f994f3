//! The alert rule expression language: a small, PromQL-flavoured grammar in
//! which a rule's `query` names what to watch (a metric or `events`), which
//! label values to keep, how to aggregate over a time window and, optionally,
//! what threshold makes the rule true. Rules are parsed once, when they are
//! created or updated, so that every mistake is reported to the user with the
//! character position where it starts instead of surfacing at evaluation time.
//!
//! ```text
//! expr       := term [ comparison ]
//! term       := selector
//!             | func '(' selector range ')' [ by_clause ]
//!             | func by_clause '(' selector range ')'
//! selector   := name [ '{' [ matcher { ',' matcher } [','] ] '}' ]
//! matcher    := label_name ( '=' | '!=' | '=~' | '!~' ) string
//! range      := '[' duration ']'
//! by_clause  := 'by' '(' [ label_name { ',' label_name } ] ')'
//! comparison := ( '>' | '>=' | '<' | '<=' | '==' | '!=' ) number
//! ```
//!
//! The name `events` selects events instead of a metric; its matcher labels
//! `source`, `level` and `event_type` address the event's own fields and any
//! other label name addresses one of its tags. Events can only be counted
//! (`count`) or turned into a per-second rate (`rate`). Function names and
//! the `by` keyword are lower-case. All positions are 0-based indexes of
//! characters (not bytes) in the input.

use std::collections::BTreeMap;
use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// Longest accepted expression, in characters.
pub const MAX_EXPR_CHARS: usize = 4096;

/// Longest accepted metric name, label name or string literal, in characters.
pub const MAX_NAME_CHARS: usize = 1024;

/// Longest accepted range window, in seconds (30 days).
pub const MAX_WINDOW_SECS: u64 = 30 * 86_400;

/// Largest compiled size of a matcher's regular expression, in bytes.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The selector name that selects events instead of a metric.
const EVENTS: &str = "events";

const EVENTS_NEED_FUNCTION: &str =
    "events need a function and a range, e.g. count(events{level=\"error\"}[5m])";

/// Why an expression was rejected, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 0-based character position at which the problem starts.
    pub position: usize,
    /// Human-readable description of the problem.
    pub message: String,
}

impl ParseError {
    fn new(position: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            position,
            message: message.into(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.position, self.message)
    }
}

impl std::error::Error for ParseError {}

/// A parsed alert rule expression.
///
/// Its [`Display`](fmt::Display) form is canonical: parsing it yields an
/// equal expression.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertExpr {
    /// What is selected: a metric by name, or events.
    pub source: Source,
    /// Label matchers that every selected series must satisfy.
    pub matchers: Vec<Matcher>,
    /// Aggregation over the window; `None` means the latest value of each series.
    pub function: Option<Aggregation>,
    /// Length of the window in seconds; present exactly when `function` is.
    pub window_secs: Option<u64>,
    /// Labels to group by; empty means one group per distinct series for an
    /// instant selector and a single group for a function.
    pub by: Vec<String>,
    /// The condition, when the expression states one itself.
    pub comparison: Option<Comparison>,
}

impl AlertExpr {
    /// Returns a copy whose comparison is filled from `op_default` and
    /// `threshold` when the expression does not state one; an expression
    /// that has its own comparison is returned unchanged.
    pub fn with_threshold(&self, op_default: CmpOp, threshold: f64) -> AlertExpr {
        let mut copy = self.clone();
        if copy.comparison.is_none() {
            copy.comparison = Some(Comparison {
                op: op_default,
                threshold,
            });
        }
        copy
    }
}

/// What an expression selects.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Samples of the metric with this name.
    Metric(String),
    /// Events, written `events` in an expression.
    Events,
}

/// An aggregation function applied over a window is the metrics domain's
/// [`Aggregation`], written by its lowercase name (`avg`, `p99`, ...).
pub use crate::metrics::aggregate::Aggregation;

/// Whether an aggregation applies to events (which have no values to
/// aggregate, only a count).
fn applies_to_events(function: Aggregation) -> bool {
    matches!(function, Aggregation::Count | Aggregation::Rate)
}

/// A condition on the expression's value: `value <op> threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// How the value is compared.
    pub op: CmpOp,
    /// What the value is compared with; always finite when parsed.
    pub threshold: f64,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CmpOp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl CmpOp {
    /// Whether `lhs <op> rhs` holds (IEEE semantics: NaN only satisfies `!=`).
    pub fn apply(self, lhs: f64, rhs: f64) -> bool {
        match self {
            CmpOp::Gt => lhs > rhs,
            CmpOp::Ge => lhs >= rhs,
            CmpOp::Lt => lhs < rhs,
            CmpOp::Le => lhs <= rhs,
            CmpOp::Eq => lhs == rhs,
            CmpOp::Ne => lhs != rhs,
        }
    }

    /// The operator as written in expressions, e.g. `">="`.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
        }
    }
}

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchOp {
    /// `=`: equal to the string.
    Eq,
    /// `!=`: not equal to the string.
    Ne,
    /// `=~`: matches the fully anchored regex.
    Re,
    /// `!~`: does not match the fully anchored regex.
    Nre,
}

impl MatchOp {
    /// The operator as written in expressions, e.g. `"=~"`.
    pub fn symbol(self) -> &'static str {
        match self {
            MatchOp::Eq => "=",
            MatchOp::Ne => "!=",
            MatchOp::Re => "=~",
            MatchOp::Nre => "!~",
        }
    }
}

/// One label condition of a selector, such as `env=~"prod|stage"`.
///
/// Build it with [`Matcher::new`], which compiles the regex; changing
/// `value` afterwards does not recompile it.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label's name.
    pub label: String,
    /// How the label's value is compared.
    pub op: MatchOp,
    /// The string, or the regex source for `=~` and `!~`.
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.label == other.label && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Validates the label name and, for `=~` and `!~`, compiles `value` as a
    /// regex anchored at both ends (`^(?:value)$`), within [`REGEX_SIZE_LIMIT`].
    pub fn new(label: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        check_label_name(label)?;
        if value.chars().count() > MAX_NAME_CHARS {
            return Err(format!("value is longer than {MAX_NAME_CHARS} characters"));
        }
        let regex = match op {
            MatchOp::Eq | MatchOp::Ne => None,
            MatchOp::Re | MatchOp::Nre => Some(compile_anchored(value)?),
        };
        Ok(Matcher {
            label: label.to_string(),
            op,
            value: value.to_string(),
            regex,
        })
    }

    /// Whether a label value satisfies this matcher. A missing label
    /// behaves like the empty string, as in Prometheus.
    pub fn matches(&self, value: Option<&str>) -> bool {
        let actual = value.unwrap_or("");
        match self.op {
            MatchOp::Eq => actual == self.value,
            MatchOp::Ne => actual != self.value,
            MatchOp::Re => self.regex_matches(actual),
            MatchOp::Nre => !self.regex_matches(actual),
        }
    }

    fn regex_matches(&self, actual: &str) -> bool {
        match &self.regex {
            Some(re) => re.is_match(actual),
            None => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}{}",
            self.label,
            self.op.symbol(),
            quote(&self.value)
        )
    }
}

/// Whether a label set satisfies every matcher (true for no matchers).
pub fn matches_all(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers
        .iter()
        .all(|m| m.matches(labels.get(&m.label).map(String::as_str)))
}

fn check_label_name(label: &str) -> Result<(), String> {
    let mut chars = label.chars();
    let Some(first) = chars.next() else {
        return Err("label name is empty".to_string());
    };
    if label.chars().count() > MAX_NAME_CHARS {
        return Err(format!(
            "label name is longer than {MAX_NAME_CHARS} characters"
        ));
    }
    if !is_label_start(first) || !chars.all(is_label_char) {
        return Err(format!(
            "invalid label name '{label}': use letters, digits and '_', not starting with a digit"
        ));
    }
    Ok(())
}

fn compile_anchored(source: &str) -> Result<Regex, String> {
    RegexBuilder::new(&format!("^(?:{source})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("invalid regex: {}", brief_regex_error(&e)))
}

/// The regex crate's syntax errors span several lines and show the anchored
/// pattern; keep only the line that names the problem.
fn brief_regex_error(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => text
            .lines()
            .rev()
            .find_map(|line| line.trim().strip_prefix("error: "))
            .unwrap_or("syntax error")
            .to_string(),
        regex::Error::CompiledTooBig(limit) => {
            format!("it is too large once compiled (limit {limit} bytes)")
        }
        other => other.to_string(),
    }
}

fn is_label_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn is_name_start(c: char) -> bool {
    is_label_start(c) || c == ':'
}

fn is_name_char(c: char) -> bool {
    is_label_char(c) || c == ':'
}

/// Parses an alert rule expression.
pub fn parse(input: &str) -> Result<AlertExpr, ParseError> {
    if input.chars().nth(MAX_EXPR_CHARS).is_some() {
        return Err(ParseError::new(
            MAX_EXPR_CHARS,
            format!("expression is longer than {MAX_EXPR_CHARS} characters"),
        ));
    }
    if input.trim().is_empty() {
        return Err(ParseError::new(0, "expression is empty"));
    }
    Parser {
        chars: input.chars().collect(),
        pos: 0,
    }
    .parse_expr()
}

/// The part of an expression before its comparison.
struct Term {
    source: Source,
    matchers: Vec<Matcher>,
    function: Option<Aggregation>,
    window_secs: Option<u64>,
    by: Vec<String>,
}

/// Recursive-descent parser over the input's characters.
struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn parse_expr(mut self) -> Result<AlertExpr, ParseError> {
        self.skip_ws();
        let term = self.parse_term()?;
        self.skip_ws();
        let comparison = self.parse_comparison()?;
        self.skip_ws();
        if !self.at_end() {
            return Err(self.error_here(format!(
                "unexpected {} after a complete expression",
                self.describe_next()
            )));
        }
        Ok(AlertExpr {
            source: term.source,
            matchers: term.matchers,
            function: term.function,
            window_secs: term.window_secs,
            by: term.by,
            comparison,
        })
    }

    fn parse_term(&mut self) -> Result<Term, ParseError> {
        let start = self.pos;
        let Some(name) = self.scan_name()? else {
            return Err(self.error_here(format!(
                "expected a metric name, `events` or a function, found {}",
                self.describe_next()
            )));
        };
        self.skip_ws();
        if let Some(function) = name.parse::<Aggregation>().ok()
            && (self.peek() == Some('(') || self.peek_keyword("by"))
        {
            return self.parse_function(function, start);
        }
        if self.peek() == Some('(') {
            return Err(ParseError::new(
                start,
                format!(
                    "unknown function '{name}'; expected one of {}",
                    function_list()
                ),
            ));
        }
        let (source, matchers) = self.parse_selector_rest(name)?;
        self.skip_ws();
        if source == Source::Events {
            return Err(ParseError::new(start, EVENTS_NEED_FUNCTION));
        }
        if self.peek() == Some('[') {
            return Err(
                self.error_here("a range selector needs a function, e.g. avg(cpu_usage[5m])")
            );
        }
        if self.peek_keyword("by") {
            return Err(self.error_here(
                "'by' needs a function, e.g. sum(http_requests_total[5m]) by (status)",
            ));
        }
        Ok(Term {
            source,
            matchers,
            function: None,
            window_secs: None,
            by: Vec::new(),
        })
    }

    /// Parses a function application; the function's name has been consumed
    /// and `start` is where it began.
    fn parse_function(&mut self, function: Aggregation, start: usize) -> Result<Term, ParseError> {
        let fname = function.as_str();
        let mut by = None;
        if self.peek_keyword("by") {
            by = Some(self.parse_by()?);
            self.skip_ws();
        }
        self.expect('(', &format!("after {fname}"))?;
        self.skip_ws();
        let Some(name) = self.scan_name()? else {
            return Err(self.error_here(format!(
                "expected a metric name or `events` inside {fname}(...), found {}",
                self.describe_next()
            )));
        };
        let (source, matchers) = self.parse_selector_rest(name)?;
        if source == Source::Events && !applies_to_events(function) {
            return Err(ParseError::new(
                start,
                format!(
                    "{fname} does not apply to events; use count or rate, \
                     e.g. count(events{{level=\"error\"}}[5m])"
                ),
            ));
        }
        self.skip_ws();
        match self.peek() {
            Some('[') => {}
            Some('(') => return Err(self.error_here("functions cannot be nested")),
            _ => {
                return Err(self.error_here(format!(
                    "{fname} needs a range after the selector, e.g. {fname}(cpu_usage[5m])"
                )));
            }
        }
        let window_secs = self.parse_range()?;
        self.skip_ws();
        self.expect(')', &format!("to close {fname}("))?;
        self.skip_ws();
        if self.peek_keyword("by") {
            if by.is_some() {
                return Err(self.error_here("'by' is given twice"));
            }
            by = Some(self.parse_by()?);
        }
        Ok(Term {
            source,
            matchers,
            function: Some(function),
            window_secs: Some(window_secs),
            by: by.unwrap_or_default(),
        })
    }

    /// Parses `by ( label, ... )`; the cursor is on `by`.
    fn parse_by(&mut self) -> Result<Vec<String>, ParseError> {
        self.pos += 2;
        self.skip_ws();
        self.expect('(', "after 'by'")?;
        let mut labels: Vec<String> = Vec::new();
        self.skip_ws();
        if self.eat(')') {
            return Ok(labels);
        }
        loop {
            self.skip_ws();
            let start = self.pos;
            let Some(label) = self.scan_label()? else {
                return Err(self.error_here(format!(
                    "expected a label name in 'by (...)', found {}",
                    self.describe_next()
                )));
            };
            if labels.contains(&label) {
                return Err(ParseError::new(
                    start,
                    format!("label '{label}' appears twice in 'by (...)'"),
                ));
            }
            labels.push(label);
            self.skip_ws();
            if self.eat(',') {
                continue;
            }
            if self.eat(')') {
                return Ok(labels);
            }
            return Err(self.error_here(format!(
                "expected ',' or ')' in 'by (...)', found {}",
                self.describe_next()
            )));
        }
    }

    /// Parses the optional `{...}` after a selector's name.
    fn parse_selector_rest(&mut self, name: String) -> Result<(Source, Vec<Matcher>), ParseError> {
        let source = if name == EVENTS {
            Source::Events
        } else {
            Source::Metric(name)
        };
        self.skip_ws();
        let mut matchers = Vec::new();
        if !self.eat('{') {
            return Ok((source, matchers));
        }
        loop {
            self.skip_ws();
            if self.eat('}') {
                return Ok((source, matchers));
            }
            let Some(label) = self.scan_label()? else {
                return Err(self.error_here(format!(
                    "expected a label name or '}}', found {}",
                    self.describe_next()
                )));
            };
            self.skip_ws();
            let op = self.parse_match_op(&label)?;
            self.skip_ws();
            let value_start = self.pos;
            let value = self.parse_string()?;
            let matcher = Matcher::new(&label, op, &value)
                .map_err(|message| ParseError::new(value_start, message))?;
            matchers.push(matcher);
            self.skip_ws();
            if self.eat(',') {
                continue;
            }
            if self.eat('}') {
                return Ok((source, matchers));
            }
            return Err(self.error_here(format!(
                "expected ',' or '}}' after a matcher, found {}",
                self.describe_next()
            )));
        }
    }

    fn parse_match_op(&mut self, label: &str) -> Result<MatchOp, ParseError> {
        for op in [MatchOp::Re, MatchOp::Nre, MatchOp::Ne, MatchOp::Eq] {
            if self.eat_str(op.symbol()) {
                return Ok(op);
            }
        }
        Err(self.error_here(format!(
            "expected '=', '!=', '=~' or '!~' after label '{label}', found {}",
            self.describe_next()
        )))
    }

    /// Parses a single- or double-quoted string and returns its value.
    fn parse_string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let quote = match self.peek() {
            Some(c @ ('"' | '\'')) => c,
            _ => {
                return Err(self.error_here(format!(
                    "expected a quoted string, found {}",
                    self.describe_next()
                )));
            }
        };
        self.pos += 1;
        let mut value = String::new();
        let mut length = 0usize;
        loop {
            let Some(c) = self.bump() else {
                return Err(ParseError::new(start, "string is not closed"));
            };
            let decoded = match c {
                c if c == quote => break,
                '\\' => match self.bump() {
                    Some('\\') => '\\',
                    Some('"') => '"',
                    Some('\'') => '\'',
                    Some('n') => '\n',
                    Some('t') => '\t',
                    None => return Err(ParseError::new(start, "string is not closed")),
                    Some(other) => {
                        return Err(ParseError::new(
                            self.pos - 2,
                            format!("unknown escape '\\{other}'; use \\\\, \\\", \\', \\n or \\t"),
                        ));
                    }
                },
                c => c,
            };
            value.push(decoded);
            length += 1;
        }
        if length > MAX_NAME_CHARS {
            return Err(ParseError::new(
                start,
                format!("string is longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        Ok(value)
    }

    /// Parses `[ duration ]`; the cursor is on `[`.
    fn parse_range(&mut self) -> Result<u64, ParseError> {
        self.pos += 1;
        self.skip_ws();
        let secs = self.parse_duration()?;
        self.skip_ws();
        self.expect(']', "to close the range")?;
        Ok(secs)
    }

    fn parse_duration(&mut self) -> Result<u64, ParseError> {
        let start = self.pos;
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(self.error_here(format!(
                "expected a duration such as 30s, 5m, 1h or 1h30m, found {}",
                self.describe_next()
            )));
        }
        let mut total: u64 = 0;
        let mut previous_rank: Option<usize> = None;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            let mut amount: Option<u64> = Some(0);
            while let Some(digit) = self.peek().and_then(|c| c.to_digit(10)) {
                amount = amount
                    .and_then(|a| a.checked_mul(10))
                    .and_then(|a| a.checked_add(u64::from(digit)));
                self.pos += 1;
            }
            let unit_start = self.pos;
            let unit = self.scan_while(|c| c.is_ascii_alphabetic());
            let (rank, unit_secs) = match unit.as_str() {
                "w" => (0, 604_800),
                "d" => (1, 86_400),
                "h" => (2, 3_600),
                "m" => (3, 60),
                "s" => (4, 1),
                "" => {
                    return Err(ParseError::new(
                        unit_start,
                        "duration is missing its unit (s, m, h, d or w)",
                    ));
                }
                other => {
                    return Err(ParseError::new(
                        unit_start,
                        format!("unknown duration unit '{other}'; use s, m, h, d or w"),
                    ));
                }
            };
            if previous_rank.is_some_and(|previous| rank <= previous) {
                return Err(ParseError::new(
                    unit_start,
                    "duration units must go from largest to smallest without repeats, e.g. 1h30m",
                ));
            }
            previous_rank = Some(rank);
            total = amount
                .and_then(|a| a.checked_mul(unit_secs))
                .and_then(|part| total.checked_add(part))
                .unwrap_or(u64::MAX);
        }
        if total == 0 {
            return Err(ParseError::new(start, "range must be greater than zero"));
        }
        if total > MAX_WINDOW_SECS {
            return Err(ParseError::new(start, "range must be at most 30d"));
        }
        Ok(total)
    }

    fn parse_comparison(&mut self) -> Result<Option<Comparison>, ParseError> {
        let start = self.pos;
        let ops = [
            CmpOp::Ge,
            CmpOp::Le,
            CmpOp::Eq,
            CmpOp::Ne,
            CmpOp::Gt,
            CmpOp::Lt,
        ];
        let Some(op) = ops.into_iter().find(|op| self.eat_str(op.symbol())) else {
            if self.peek() == Some('=') {
                return Err(ParseError::new(start, "use '==' to compare for equality"));
            }
            return Ok(None);
        };
        self.skip_ws();
        let number_start = self.pos;
        if matches!(self.peek(), Some('+' | '-')) {
            self.pos += 1;
        }
        let mut mantissa_digits = self.scan_while(|c| c.is_ascii_digit()).len();
        if self.peek() == Some('.') {
            self.pos += 1;
            mantissa_digits += self.scan_while(|c| c.is_ascii_digit()).len();
        }
        if mantissa_digits == 0 {
            return Err(ParseError::new(
                number_start,
                format!("expected a number after '{}'", op.symbol()),
            ));
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            let exponent_start = self.pos;
            self.pos += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.pos += 1;
            }
            if self.scan_while(|c| c.is_ascii_digit()).is_empty() {
                return Err(ParseError::new(
                    exponent_start,
                    "exponent needs at least one digit",
                ));
            }
        }
        let text: String = self.chars[number_start..self.pos].iter().collect();
        let threshold: f64 = text
            .parse()
            .map_err(|_| ParseError::new(number_start, format!("invalid number '{text}'")))?;
        if !threshold.is_finite() {
            return Err(ParseError::new(
                number_start,
                "threshold must be a finite number",
            ));
        }
        Ok(Some(Comparison { op, threshold }))
    }

    /// Scans a metric name (or function name) and enforces its length limit.
    fn scan_name(&mut self) -> Result<Option<String>, ParseError> {
        self.scan_identifier(is_name_start, is_name_char, "name")
    }

    /// Scans a label name and enforces its length limit.
    fn scan_label(&mut self) -> Result<Option<String>, ParseError> {
        self.scan_identifier(is_label_start, is_label_char, "label name")
    }

    fn scan_identifier(
        &mut self,
        first: fn(char) -> bool,
        rest: fn(char) -> bool,
        what: &str,
    ) -> Result<Option<String>, ParseError> {
        let start = self.pos;
        if !self.peek().is_some_and(first) {
            return Ok(None);
        }
        let text = self.scan_while(rest);
        if self.pos - start > MAX_NAME_CHARS {
            return Err(ParseError::new(
                start,
                format!("{what} is longer than {MAX_NAME_CHARS} characters"),
            ));
        }
        Ok(Some(text))
    }

    fn scan_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let start = self.pos;
        while self.peek().is_some_and(&keep) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// Whether the keyword starts at the cursor and is not the prefix of a
    /// longer name.
    fn peek_keyword(&self, keyword: &str) -> bool {
        let length = keyword.chars().count();
        self.starts_with(keyword)
            && !self
                .chars
                .get(self.pos + length)
                .is_some_and(|&c| is_name_char(c))
    }

    fn starts_with(&self, text: &str) -> bool {
        (self.pos..)
            .zip(text.chars())
            .all(|(index, c)| self.chars.get(index) == Some(&c))
    }

    fn eat_str(&mut self, text: &str) -> bool {
        if self.starts_with(text) {
            self.pos += text.chars().count();
            true
        } else {
            false
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char, context: &str) -> Result<(), ParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error_here(format!(
                "expected '{c}' {context}, found {}",
                self.describe_next()
            )))
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn describe_next(&self) -> String {
        match self.peek() {
            None => "the end of the expression".to_string(),
            Some(c) => format!("'{c}'"),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.pos, message)
    }
}

fn function_list() -> String {
    Aggregation::ALL
        .iter()
        .map(|f| f.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Writes a string as a double-quoted literal that [`parse`] reads back.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes seconds with the largest units first, e.g. `5400` as `1h30m`.
fn format_duration(mut secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("m", 60),
        ("s", 1),
    ] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// Writes a threshold so that parsing it gives back the same `f64`: whole
/// numbers plainly, others in Rust's shortest round-trip form.
fn format_number(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{value}")
    } else {
        format!("{value:?}")
    }
}

impl fmt::Display for AlertExpr {
    /// Writes the canonical form: matchers in double quotes separated by
    /// `", "`, durations with the largest units first, `by` after the
    /// function, and single spaces around the comparison operator.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &self.source {
            Source::Metric(name) => name.as_str(),
            Source::Events => EVENTS,
        };
        let mut selector = name.to_string();
        if !self.matchers.is_empty() {
            let matchers: Vec<String> = self.matchers.iter().map(Matcher::to_string).collect();
            selector = format!("{selector}{{{}}}", matchers.join(", "));
        }
        match self.function {
            Some(function) => {
                write!(f, "{}({selector}", function.as_str())?;
                if let Some(window) = self.window_secs {
                    write!(f, "[{}]", format_duration(window))?;
                }
                write!(f, ")")?;
                if !self.by.is_empty() {
                    write!(f, " by ({})", self.by.join(", "))?;
                }
            }
            None => write!(f, "{selector}")?,
        }
        if let Some(comparison) = &self.comparison {
            write!(
                f,
                " {} {}",
                comparison.op.symbol(),
                format_number(comparison.threshold)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(input: &str) -> AlertExpr {
        match parse(input) {
            Ok(expr) => expr,
            Err(e) => panic!("{input:?} should parse but failed {e}"),
        }
    }

    fn err(input: &str) -> ParseError {
        match parse(input) {
            Ok(expr) => panic!("{input:?} should be rejected but parsed as {expr:?}"),
            Err(e) => e,
        }
    }

    fn assert_error(input: &str, position: usize, fragment: &str) {
        let e = err(input);
        assert_eq!(e.position, position, "position for {input:?}: {e}");
        assert!(
            e.message.contains(fragment),
            "message for {input:?} should mention {fragment:?}: {}",
            e.message
        );
    }

    fn matcher(label: &str, op: MatchOp, value: &str) -> Matcher {
        Matcher::new(label, op, value).expect("valid matcher")
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    // ---- valid forms -------------------------------------------------------

    #[test]
    fn an_instant_selector_with_a_comparison_parses() {
        let e = ok("cpu_usage > 80");
        assert_eq!(e.source, Source::Metric("cpu_usage".into()));
        assert!(e.matchers.is_empty());
        assert_eq!(e.function, None);
        assert_eq!(e.window_secs, None);
        assert!(e.by.is_empty());
        assert_eq!(
            e.comparison,
            Some(Comparison {
                op: CmpOp::Gt,
                threshold: 80.0
            })
        );
    }

    #[test]
    fn an_average_over_a_window_with_matchers_parses() {
        let e = ok(r#"avg(cpu_usage{host="a", env=~"prod|stage"}[5m]) >= 80"#);
        assert_eq!(e.source, Source::Metric("cpu_usage".into()));
        assert_eq!(
            e.matchers,
            vec![
                matcher("host", MatchOp::Eq, "a"),
                matcher("env", MatchOp::Re, "prod|stage"),
            ]
        );
        assert_eq!(e.function, Some(Aggregation::Avg));
        assert_eq!(e.window_secs, Some(300));
        assert_eq!(e.comparison.map(|c| c.op), Some(CmpOp::Ge));
        assert_eq!(e.comparison.map(|c| c.threshold), Some(80.0));
    }

    #[test]
    fn counting_events_by_level_and_source_parses() {
        let e = ok(r#"count(events{level="error", source="api"}[5m]) > 10"#);
        assert_eq!(e.source, Source::Events);
        assert_eq!(e.function, Some(Aggregation::Count));
        assert_eq!(e.matchers.len(), 2);
        assert_eq!(e.matchers[1].label, "source");
        assert_eq!(e.matchers[1].value, "api");
        assert_eq!(e.comparison.map(|c| c.threshold), Some(10.0));
    }

    #[test]
    fn a_rate_of_events_filtered_by_a_tag_parses() {
        let e = ok(r#"rate(events{event_type="deploy", region="eu"}[1h])"#);
        assert_eq!(e.source, Source::Events);
        assert_eq!(e.function, Some(Aggregation::Rate));
        assert_eq!(e.matchers[1].label, "region");
        assert_eq!(e.window_secs, Some(3600));
    }

    #[test]
    fn a_by_clause_after_the_function_parses() {
        let e = ok("sum(http_requests_total[1m]) by (status) > 5");
        assert_eq!(e.function, Some(Aggregation::Sum));
        assert_eq!(e.window_secs, Some(60));
        assert_eq!(e.by, vec!["status".to_string()]);
        assert_eq!(e.comparison.map(|c| c.threshold), Some(5.0));
    }

    #[test]
    fn a_by_clause_before_the_parentheses_parses() {
        let e = ok("p99 by (route) (latency_seconds[10m]) > 0.5");
        assert_eq!(e.function, Some(Aggregation::P99));
        assert_eq!(e.by, vec!["route".to_string()]);
        assert_eq!(e.window_secs, Some(600));
        assert_eq!(e.source, Source::Metric("latency_seconds".into()));
        assert_eq!(e.comparison.map(|c| c.threshold), Some(0.5));
    }

    #[test]
    fn a_bare_metric_name_parses_without_a_comparison() {
        let e = ok("cpu_usage");
        assert_eq!(e.source, Source::Metric("cpu_usage".into()));
        assert_eq!(e.comparison, None);
        assert_eq!(e.function, None);
    }

    #[test]
    fn whitespace_between_tokens_is_insignificant() {
        let spaced = ok(" sum  by ( a , b ) ( m { x = 'y' , } [ 5m ] ) >=  -2 ");
        let tight = ok("sum by(a,b)(m{x='y',}[5m])>=-2");
        assert_eq!(spaced, tight);
        assert_eq!(tight.by, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(tight.comparison.map(|c| c.threshold), Some(-2.0));
    }

    #[test]
    fn an_empty_brace_pair_and_a_trailing_comma_are_accepted() {
        assert!(ok("cpu{}").matchers.is_empty());
        assert_eq!(ok(r#"cpu{a="b",}"#).matchers.len(), 1);
    }

    #[test]
    fn an_empty_by_clause_means_no_grouping() {
        assert!(ok("sum by () (x[1m])").by.is_empty());
    }

    #[test]
    fn metric_names_may_contain_colons_and_reuse_function_names() {
        assert_eq!(
            ok("job:requests:rate5m > 1").source,
            Source::Metric("job:requests:rate5m".into())
        );
        let e = ok("rate > 1");
        assert_eq!(e.source, Source::Metric("rate".into()));
        assert_eq!(e.function, None);
        assert_eq!(ok("avg(count[5m])").source, Source::Metric("count".into()));
    }

    #[test]
    fn every_comparison_operator_parses() {
        for (text, op) in [
            (">", CmpOp::Gt),
            (">=", CmpOp::Ge),
            ("<", CmpOp::Lt),
            ("<=", CmpOp::Le),
            ("==", CmpOp::Eq),
            ("!=", CmpOp::Ne),
        ] {
            assert_eq!(
                ok(&format!("x {text} 1")).comparison.map(|c| c.op),
                Some(op)
            );
        }
    }

    #[test]
    fn thresholds_accept_signs_decimals_and_exponents() {
        for (text, value) in [
            ("5", 5.0),
            ("-5", -5.0),
            ("+5", 5.0),
            ("0.25", 0.25),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("2.5E-2", 0.025),
            ("-1e+2", -100.0),
        ] {
            let e = ok(&format!("x > {text}"));
            assert_eq!(e.comparison.map(|c| c.threshold), Some(value), "{text}");
        }
    }

    #[test]
    fn string_escapes_are_decoded_in_both_quote_styles() {
        let e = ok(r#"x{a="q\"s\'b\\n\n\t", b='it\'s "fine"'}"#);
        assert_eq!(e.matchers[0].value, "q\"s'b\\n\n\t");
        assert_eq!(e.matchers[1].value, "it's \"fine\"");
    }

    // ---- durations ---------------------------------------------------------

    #[test]
    fn durations_in_every_unit_convert_to_seconds() {
        for (text, secs) in [
            ("30s", 30),
            ("5m", 300),
            ("1h", 3_600),
            ("2d", 172_800),
            ("1w", 604_800),
            ("1h30m", 5_400),
            ("1d2h3m4s", 93_784),
            ("90m", 5_400),
            ("30d", 2_592_000),
            ("4w2d", 2_592_000),
            ("007m", 420),
        ] {
            assert_eq!(
                ok(&format!("avg(x[{text}])")).window_secs,
                Some(secs),
                "{text}"
            );
        }
    }

    #[test]
    fn a_zero_duration_is_rejected() {
        assert_error("avg(x[0s])", 6, "greater than zero");
        assert_error("avg(x[0h0m])", 6, "greater than zero");
    }

    #[test]
    fn a_duration_longer_than_thirty_days_is_rejected() {
        assert_error("avg(x[30d1s])", 6, "at most 30d");
        assert_error("avg(x[5w])", 6, "at most 30d");
        assert_error("avg(x[99999999999999999999999s])", 6, "at most 30d");
    }

    #[test]
    fn a_duration_with_an_unknown_or_missing_unit_is_rejected() {
        assert_error("avg(x[5ms])", 7, "unknown duration unit 'ms'");
        assert_error("avg(x[5])", 7, "missing its unit");
        assert_error("avg(x[5 m])", 7, "missing its unit");
        assert_error("avg(x[1.5h])", 7, "missing its unit");
        assert_error("avg(x[m])", 6, "expected a duration");
    }

    #[test]
    fn duration_units_out_of_order_or_repeated_are_rejected() {
        assert_error("avg(x[30m1h])", 10, "largest to smallest");
        assert_error("avg(x[1m1m])", 9, "largest to smallest");
    }

    #[test]
    fn a_range_that_is_not_closed_is_rejected() {
        assert_error("avg(x[5m)", 8, "expected ']'");
    }

    // ---- invalid forms -----------------------------------------------------

    #[test]
    fn a_range_selector_without_a_function_is_rejected() {
        assert_error("cpu[5m] > 1", 3, "needs a function");
        assert_error(r#"cpu{a="b"} [5m]"#, 11, "needs a function");
    }

    #[test]
    fn a_function_without_a_range_is_rejected() {
        assert_error("avg(cpu_usage) > 5", 13, "avg needs a range");
        assert_error("count(events)", 12, "count needs a range");
    }

    #[test]
    fn by_without_a_function_is_rejected() {
        assert_error("cpu_usage by (host) > 5", 10, "'by' needs a function");
    }

    #[test]
    fn by_given_on_both_sides_is_rejected() {
        assert_error("sum by (a) (x[1m]) by (b)", 19, "given twice");
    }

    #[test]
    fn a_duplicate_label_in_by_is_rejected() {
        assert_error("sum(x[1m]) by (a, b, a)", 21, "appears twice");
    }

    #[test]
    fn a_malformed_by_clause_is_rejected() {
        assert_error("sum(x[1m]) by (a,)", 17, "expected a label name");
        assert_error("sum(x[1m]) by (a b)", 17, "expected ',' or ')'");
        assert_error("sum(x[1m]) by a", 14, "expected '('");
        assert_error("sum(x[1m]) by (a:b)", 16, "expected ',' or ')'");
    }

    #[test]
    fn events_without_a_function_are_rejected() {
        assert_error("events > 3", 0, EVENTS_NEED_FUNCTION);
        assert_error(r#"  events{level="error"}"#, 2, EVENTS_NEED_FUNCTION);
    }

    #[test]
    fn events_with_a_function_other_than_count_or_rate_are_rejected() {
        assert_error("avg(events[5m])", 0, "does not apply to events");
    }

    #[test]
    fn an_unknown_function_is_rejected() {
        assert_error("median(x[5m])", 0, "unknown function 'median'");
    }

    #[test]
    fn nested_functions_are_rejected() {
        assert_error("avg(rate(x[5m]))", 8, "cannot be nested");
    }

    #[test]
    fn a_missing_selector_inside_a_function_is_rejected() {
        assert_error("avg([5m])", 4, "expected a metric name");
    }

    #[test]
    fn an_invalid_regex_is_rejected_at_its_string() {
        let e = err(r#"cpu{a="b", env=~"(prod"}"#);
        assert_eq!(e.position, 16);
        assert!(e.message.starts_with("invalid regex: "), "{}", e.message);
        assert!(
            !e.message.contains('\n'),
            "message is one line: {}",
            e.message
        );
        assert!(!e.message.contains("^(?:"), "no wrapper: {}", e.message);
    }

    #[test]
    fn a_regex_too_large_to_compile_is_rejected() {
        let e = err(r#"x{a=~"\\w{100}{100}"}"#);
        assert_eq!(e.position, 5);
        assert!(e.message.contains("too large"), "{}", e.message);
    }

    #[test]
    fn trailing_garbage_after_a_complete_expression_is_rejected() {
        assert_error("cpu > 5 6", 8, "after a complete expression");
        assert_error("cpu > 80%", 8, "'%'");
        assert_error("avg(x[5m]) extra", 11, "after a complete expression");
        assert_error("cpu }", 4, "after a complete expression");
    }

    #[test]
    fn empty_input_is_rejected() {
        assert_error("", 0, "empty");
        assert_error(" \t\n ", 0, "empty");
    }

    #[test]
    fn an_input_that_starts_with_something_other_than_a_name_is_rejected() {
        assert_error("> 5", 0, "expected a metric name");
        assert_error("5", 0, "expected a metric name");
    }

    #[test]
    fn names_and_strings_longer_than_the_limit_are_rejected() {
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        assert_error(&long, 0, "longer than 1024");
        assert!(parse(&"a".repeat(MAX_NAME_CHARS)).is_ok());
        assert_error(&format!("x{{{long}=\"v\"}}"), 2, "longer than 1024");
        assert_error(&format!("x{{a=\"{long}\"}}"), 4, "longer than 1024");
        assert_error(&format!("sum(x[1m]) by ({long})"), 15, "longer than 1024");
    }

    #[test]
    fn an_expression_longer_than_the_limit_is_rejected() {
        let padding = " ".repeat(MAX_EXPR_CHARS - 3);
        assert!(parse(&format!("cpu{padding}")).is_ok());
        assert_error(
            &format!("cpu {padding}"),
            MAX_EXPR_CHARS,
            "longer than 4096",
        );
    }

    #[test]
    fn broken_strings_are_rejected() {
        assert_error(r#"x{a="b}"#, 4, "not closed");
        assert_error(r#"x{a="b\"}"#, 4, "not closed");
        assert_error(r#"x{a="\x"}"#, 5, "unknown escape");
        assert_error("x{a=b}", 4, "expected a quoted string");
    }

    #[test]
    fn broken_matchers_are_rejected() {
        assert_error(r#"x{1a="b"}"#, 2, "expected a label name");
        assert_error(r#"x{a "b"}"#, 4, "expected '=', '!=', '=~' or '!~'");
        assert_error(r#"x{a="b" c="d"}"#, 8, "expected ',' or '}'");
        assert_error(r#"x{a="b""#, 7, "expected ',' or '}'");
        assert_error(r#"x{,}"#, 2, "expected a label name");
    }

    #[test]
    fn broken_comparisons_are_rejected() {
        assert_error("cpu = 5", 4, "use '=='");
        assert_error("cpu >", 5, "expected a number after '>'");
        assert_error("cpu > abc", 6, "expected a number");
        assert_error("cpu > - 5", 6, "expected a number");
        assert_error("cpu > 1e", 7, "exponent");
        assert_error("cpu > 1e999", 6, "finite");
    }

    #[test]
    fn positions_count_characters_rather_than_bytes() {
        assert_error(r#"cpu{a="ééé"} > x"#, 15, "expected a number");
    }

    #[test]
    fn a_parse_error_displays_its_position_and_message() {
        let e = err("cpu[5m]");
        assert_eq!(e.to_string(), format!("at position 3: {}", e.message));
        let boxed: Box<dyn std::error::Error> = Box::new(e);
        assert!(boxed.to_string().starts_with("at position 3: "));
    }

    // ---- matchers ----------------------------------------------------------

    #[test]
    fn regex_matchers_are_anchored_at_both_ends() {
        let m = matcher("env", MatchOp::Re, "prod");
        assert!(m.matches(Some("prod")));
        assert!(!m.matches(Some("production")));
        assert!(!m.matches(Some("preprod")));
        let alternatives = matcher("env", MatchOp::Re, "prod|stage");
        assert!(alternatives.matches(Some("stage")));
        assert!(!alternatives.matches(Some("prodstage")));
        let negated = matcher("env", MatchOp::Nre, "prod");
        assert!(negated.matches(Some("production")));
        assert!(!negated.matches(Some("prod")));
    }

    #[test]
    fn a_regex_backslash_is_written_doubled_inside_the_string() {
        let e = ok(r#"x{code=~"5\\d\\d"}"#);
        assert_eq!(e.matchers[0].value, r"5\d\d");
        assert!(e.matchers[0].matches(Some("503")));
        assert!(!e.matchers[0].matches(Some("5xx")));
        assert_error(r#"x{code=~"5\d"}"#, 10, "unknown escape");
    }

    #[test]
    fn a_missing_label_behaves_like_the_empty_string() {
        assert!(matcher("a", MatchOp::Ne, "x").matches(None));
        assert!(!matcher("a", MatchOp::Ne, "").matches(None));
        assert!(matcher("a", MatchOp::Eq, "").matches(None));
        assert!(!matcher("a", MatchOp::Eq, "x").matches(None));
        assert!(matcher("a", MatchOp::Nre, ".+").matches(None));
        assert!(!matcher("a", MatchOp::Nre, ".*").matches(None));
        assert!(matcher("a", MatchOp::Re, ".*").matches(None));
        assert!(!matcher("a", MatchOp::Re, ".+").matches(None));
    }

    #[test]
    fn matches_all_requires_every_matcher_and_accepts_none() {
        let ms = [
            matcher("host", MatchOp::Eq, "a"),
            matcher("env", MatchOp::Re, "prod|stage"),
            matcher("debug", MatchOp::Ne, "true"),
        ];
        assert!(matches_all(&ms, &labels(&[("host", "a"), ("env", "prod")])));
        assert!(!matches_all(
            &ms,
            &labels(&[("host", "b"), ("env", "prod")])
        ));
        assert!(!matches_all(&ms, &labels(&[("host", "a")])));
        assert!(!matches_all(
            &ms,
            &labels(&[("host", "a"), ("env", "prod"), ("debug", "true")])
        ));
        assert!(matches_all(&[], &labels(&[])));
    }

    #[test]
    fn matcher_new_rejects_invalid_label_names_and_regexes() {
        assert!(Matcher::new("", MatchOp::Eq, "x").is_err());
        assert!(Matcher::new("1abc", MatchOp::Eq, "x").is_err());
        assert!(Matcher::new("a-b", MatchOp::Eq, "x").is_err());
        assert!(Matcher::new("a:b", MatchOp::Eq, "x").is_err());
        let e = Matcher::new("a", MatchOp::Re, "[").expect_err("bad regex");
        assert!(e.starts_with("invalid regex"), "{e}");
        assert!(Matcher::new("_ok9", MatchOp::Nre, "a+").is_ok());
    }

    #[test]
    fn matchers_compare_equal_by_label_op_and_value() {
        assert_eq!(
            matcher("a", MatchOp::Re, "x"),
            matcher("a", MatchOp::Re, "x")
        );
        assert_ne!(
            matcher("a", MatchOp::Re, "x"),
            matcher("a", MatchOp::Nre, "x")
        );
        assert_ne!(
            matcher("a", MatchOp::Eq, "x"),
            matcher("b", MatchOp::Eq, "x")
        );
        assert_ne!(
            matcher("a", MatchOp::Eq, "x"),
            matcher("a", MatchOp::Eq, "y")
        );
    }

    // ---- enums -------------------------------------------------------------

    #[test]
    fn every_function_name_parses_back_to_the_same_function() {
        for f in Aggregation::ALL {
            assert_eq!(f.as_str().parse::<Aggregation>().ok(), Some(f));
            assert_eq!(ok(&format!("{}(x[1m])", f.as_str())).function, Some(f));
        }
        assert_eq!("AVG".parse::<Aggregation>().ok(), None);
    }

    #[test]
    fn only_percentile_functions_have_a_quantile() {
        assert_eq!(Aggregation::P50.quantile(), Some(0.5));
        assert_eq!(Aggregation::P90.quantile(), Some(0.9));
        assert_eq!(Aggregation::P95.quantile(), Some(0.95));
        assert_eq!(Aggregation::P99.quantile(), Some(0.99));
        assert_eq!(Aggregation::Avg.quantile(), None);
        assert_eq!(Aggregation::Rate.quantile(), None);
    }

    #[test]
    fn comparison_operators_apply_as_their_symbols_say() {
        assert!(CmpOp::Gt.apply(2.0, 1.0) && !CmpOp::Gt.apply(1.0, 1.0));
        assert!(CmpOp::Ge.apply(1.0, 1.0) && !CmpOp::Ge.apply(0.5, 1.0));
        assert!(CmpOp::Lt.apply(0.5, 1.0) && !CmpOp::Lt.apply(1.0, 1.0));
        assert!(CmpOp::Le.apply(1.0, 1.0) && !CmpOp::Le.apply(2.0, 1.0));
        assert!(CmpOp::Eq.apply(1.0, 1.0) && !CmpOp::Eq.apply(2.0, 1.0));
        assert!(CmpOp::Ne.apply(2.0, 1.0) && !CmpOp::Ne.apply(1.0, 1.0));
        assert!(!CmpOp::Gt.apply(f64::NAN, 1.0));
        assert!(CmpOp::Ne.apply(f64::NAN, 1.0));
        assert_eq!(CmpOp::Ge.symbol(), ">=");
        assert_eq!(CmpOp::Ne.symbol(), "!=");
    }

    #[test]
    fn enums_serialize_as_lower_snake_case_names() {
        assert_eq!(serde_json::to_string(&Aggregation::P99).unwrap(), "\"p99\"");
        assert_eq!(serde_json::to_string(&CmpOp::Ge).unwrap(), "\"ge\"");
        assert_eq!(serde_json::to_string(&MatchOp::Nre).unwrap(), "\"nre\"");
        assert_eq!(
            serde_json::from_str::<Aggregation>("\"count\"").unwrap(),
            Aggregation::Count
        );
        assert!(serde_json::from_str::<CmpOp>("\"Gt\"").is_err());
    }

    // ---- thresholds and display --------------------------------------------

    #[test]
    fn with_threshold_fills_only_a_missing_comparison() {
        let filled = ok("avg(x[5m])").with_threshold(CmpOp::Lt, 3.5);
        assert_eq!(
            filled.comparison,
            Some(Comparison {
                op: CmpOp::Lt,
                threshold: 3.5
            })
        );
        let kept = ok("avg(x[5m]) > 1").with_threshold(CmpOp::Lt, 3.5);
        assert_eq!(
            kept.comparison,
            Some(Comparison {
                op: CmpOp::Gt,
                threshold: 1.0
            })
        );
    }

    #[test]
    fn display_writes_the_canonical_form() {
        for (input, canonical) in [
            ("cpu_usage>80", "cpu_usage > 80"),
            (
                "p99 by (route) (latency_seconds[10m]) > 0.5",
                "p99(latency_seconds[10m]) by (route) > 0.5",
            ),
            (
                r#"avg(cpu{host='a',env=~"prod|stage",}[90m])>=8e1"#,
                r#"avg(cpu{host="a", env=~"prod|stage"}[1h30m]) >= 80"#,
            ),
            ("sum by () (x[7d])", "sum(x[1w])"),
            ("x > 1e300", "x > 1e300"),
            ("x < -0.000001", "x < -1e-6"),
            ("x{a='say \\'hi\\'\tnow'}", r#"x{a="say 'hi'\tnow"}"#),
        ] {
            assert_eq!(ok(input).to_string(), canonical, "{input}");
        }
    }

    #[test]
    fn parsing_the_display_form_gives_back_an_equal_expression() {
        let mut inputs: Vec<String> = [
            "cpu_usage > 80",
            r#"avg(cpu_usage{host="a", env=~"prod|stage"}[5m]) >= 80"#,
            r#"count(events{level="error", source="api"}[5m]) > 10"#,
            "sum(http_requests_total[1m]) by (status) > 5",
            "p99 by (route) (latency_seconds[10m]) > 0.5",
            "cpu_usage",
            r#"rate(events{event_type!~"heartbeat|ping", team="core"}[1h30m]) by (source, level)"#,
            r#"x{a="\\\"\'\n\t", b='"', c!="", d!~".*"}"#,
            "job:up:sum{x='é'} != -0",
            "min(m[1d2h3m4s]) <= 1.7976931348623157e308",
            "max(m[30d]) == 5e-324",
            "last(m[1s]) < 123456.789",
            "sum by (a,b,c) (m[4w2d])",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for f in Aggregation::ALL {
            for (op, n) in [(">", "0.1"), ("<=", "-42"), ("!=", "3.25e10")] {
                inputs.push(format!(
                    r#"{}(metric_{}{{k="v{}"}}[{}m]) by (k) {op} {n}"#,
                    f.as_str(),
                    f.as_str(),
                    op,
                    f.as_str().len()
                ));
            }
        }
        for input in &inputs {
            let first = ok(input);
            let shown = first.to_string();
            let second = ok(&shown);
            assert_eq!(first, second, "{input} -> {shown}");
            assert_eq!(shown, second.to_string(), "display is stable for {input}");
        }
    }

    #[test]
    fn a_threshold_filled_in_later_round_trips_through_display() {
        let e = ok("count(events[5m])").with_threshold(CmpOp::Ge, 0.1 + 0.2);
        assert_eq!(ok(&e.to_string()), e);
    }
}
