//! A single-pass tokenizer and parser for the text exposition format 0.0.4.
//!
//! The grammar follows Prometheus' own scrape parser (`model/textparse`):
//! blanks (space, tab) may surround every token, a trailing comma may close a
//! label set, unknown escape sequences in label values and HELP texts are kept
//! verbatim, and values are Go floats (`+Inf`, `-Inf`, `NaN`, exponents; no
//! hex floats, no underscores). Carriage returns are not whitespace, as in
//! Prometheus, so CRLF scrapes are rejected with a reason that says so.

use std::borrow::Cow;
use std::fmt;

use super::model::{Exposition, Label, MetricFamily, MetricType, Sample};

/// Bounds on what one scrape may hold, so a hostile target cannot make the
/// agent allocate without limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most lines a scrape may have (a final newline does not count).
    pub max_lines: usize,
    /// The most labels one sample may have.
    pub max_labels_per_sample: usize,
}

impl Default for Limits {
    /// 200 000 lines (a scrape of ~10 MiB) and 64 labels per sample.
    fn default() -> Self {
        Limits {
            max_lines: 200_000,
            max_labels_per_sample: 64,
        }
    }
}

/// Why a scrape was rejected: the 1-based line and what was wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ParseError {
    /// The 1-based line number of the malformed line.
    pub line: usize,
    /// What was wrong with it.
    pub kind: ParseErrorKind,
}

/// The reasons a line can be malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParseErrorKind {
    /// A line does not start with a metric name, or HELP/TYPE lacks one.
    ExpectedMetricName,
    /// `{` or `,` is not followed by a label name or `}`.
    ExpectedLabelName,
    /// A label name is not followed by `=`.
    ExpectedEquals,
    /// `=` is not followed by a quoted label value.
    ExpectedLabelValue,
    /// A label value's closing quote is missing.
    UnterminatedLabelValue,
    /// A label value is not followed by `,` or `}`.
    ExpectedCommaOrBrace,
    /// A sample repeats a label name.
    DuplicateLabel,
    /// A sample has more labels than [`Limits::max_labels_per_sample`].
    TooManyLabels {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A sample has no value.
    MissingValue,
    /// A sample's value is not a float.
    InvalidValue,
    /// The token after the value is not an integer timestamp.
    InvalidTimestamp,
    /// Something follows the timestamp.
    TrailingCharacters,
    /// A sample line ends in `\r`.
    CarriageReturn,
    /// `# TYPE name` is not followed by a known type.
    InvalidMetricType,
    /// The scrape has more lines than [`Limits::max_lines`].
    TooManyLines {
        /// The limit that was exceeded.
        max: usize,
    },
}

impl fmt::Display for ParseErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseErrorKind::ExpectedMetricName => f.write_str("expected metric name"),
            ParseErrorKind::ExpectedLabelName => f.write_str("expected label name or '}'"),
            ParseErrorKind::ExpectedEquals => f.write_str("expected '=' after label name"),
            ParseErrorKind::ExpectedLabelValue => {
                f.write_str("expected '\"' to start the label value")
            }
            ParseErrorKind::UnterminatedLabelValue => f.write_str("unterminated label value"),
            ParseErrorKind::ExpectedCommaOrBrace => {
                f.write_str("expected ',' or '}' after label value")
            }
            ParseErrorKind::DuplicateLabel => f.write_str("duplicate label name"),
            ParseErrorKind::TooManyLabels { max } => write!(f, "more than {max} labels"),
            ParseErrorKind::MissingValue => f.write_str("expected sample value"),
            ParseErrorKind::InvalidValue => f.write_str("invalid sample value"),
            ParseErrorKind::InvalidTimestamp => f.write_str("invalid timestamp"),
            ParseErrorKind::TrailingCharacters => f.write_str("unexpected text after timestamp"),
            ParseErrorKind::CarriageReturn => {
                f.write_str("carriage return in sample line (lines must end with '\\n' only)")
            }
            ParseErrorKind::InvalidMetricType => {
                f.write_str("expected metric type counter, gauge, histogram, summary or untyped")
            }
            ParseErrorKind::TooManyLines { max } => write!(f, "more than {max} lines"),
        }
    }
}

/// Parses one scrape body with the default [`Limits`].
///
/// Rejects the whole scrape on the first malformed line. Never panics.
pub fn parse(text: &str) -> Result<Exposition<'_>, ParseError> {
    parse_with_limits(text, &Limits::default())
}

/// Parses one scrape body, rejecting it past `limits`.
///
/// Rejects the whole scrape on the first malformed line. Never panics.
pub fn parse_with_limits<'a>(text: &'a str, limits: &Limits) -> Result<Exposition<'a>, ParseError> {
    let mut parser = Parser {
        families: Vec::new(),
        help_declared: false,
        type_declared: false,
        max_labels: limits.max_labels_per_sample,
    };
    // `split_terminator` does not yield an empty line after a final newline.
    for (line_idx, line) in text.split_terminator('\n').enumerate() {
        let line_no = line_idx + 1;
        if line_no > limits.max_lines {
            return Err(ParseError {
                line: line_no,
                kind: ParseErrorKind::TooManyLines {
                    max: limits.max_lines,
                },
            });
        }
        parser.line(line).map_err(|kind| ParseError {
            line: line_no,
            kind,
        })?;
    }
    Ok(Exposition {
        families: parser.families,
    })
}

/// Parses a float the way Prometheus does (Go's `strconv.ParseFloat` without
/// hex floats and underscores).
pub(super) fn parse_float(token: &str) -> Option<f64> {
    // Rust and Go agree on decimal floats and on case-insensitive `inf`,
    // `infinity` and `nan`, except that Go rejects a sign before NaN.
    let unsigned = token.strip_prefix(['+', '-']).unwrap_or(token);
    if unsigned.len() != token.len() && unsigned.starts_with(['n', 'N']) {
        return None;
    }
    token.parse().ok()
}

/// What has been parsed so far; the last family is the one lines attach to.
struct Parser<'a> {
    families: Vec<MetricFamily<'a>>,
    /// Whether the last family got its HELP / TYPE from a comment line.
    help_declared: bool,
    type_declared: bool,
    max_labels: usize,
}

impl<'a> Parser<'a> {
    fn line(&mut self, line: &'a str) -> Result<(), ParseErrorKind> {
        let mut cursor = Cursor::new(line);
        cursor.skip_blanks();
        match cursor.peek() {
            None => Ok(()),
            Some(b'#') => {
                cursor.bump();
                self.comment(cursor)
            }
            Some(_) => self.sample(cursor),
        }
    }

    /// Parses what follows a `#`: HELP, TYPE, or a comment to ignore.
    fn comment(&mut self, mut cursor: Cursor<'a>) -> Result<(), ParseErrorKind> {
        if cursor.skip_blanks() == 0 {
            return Ok(());
        }
        let keyword = cursor.take_while(|b| b != b' ' && b != b'\t');
        let is_help = match keyword {
            "HELP" => true,
            "TYPE" => false,
            _ => return Ok(()),
        };
        // Like Prometheus, a bare `# HELP` or `# TYPE` is only a comment.
        if cursor.skip_blanks() == 0 {
            return Ok(());
        }
        let name = cursor.take_metric_name();
        if name.is_empty() || !matches!(cursor.peek(), None | Some(b' ' | b'\t')) {
            return Err(ParseErrorKind::ExpectedMetricName);
        }
        cursor.skip_blanks();
        if is_help {
            let help = unescape(cursor.rest(), false);
            let family = self.family_for_metadata(name, self.help_declared);
            family.help = Some(help);
            self.help_declared = true;
        } else {
            let metric_type = MetricType::from_keyword(cursor.rest().trim_end_matches([' ', '\t']))
                .ok_or(ParseErrorKind::InvalidMetricType)?;
            let family = self.family_for_metadata(name, self.type_declared);
            family.metric_type = metric_type;
            self.type_declared = true;
        }
        Ok(())
    }

    /// Returns the family a HELP or TYPE line for `name` describes: the last
    /// one if it has that name, no samples yet and not this line's kind of
    /// metadata (`declared`), else a new one.
    fn family_for_metadata(&mut self, name: &'a str, declared: bool) -> &mut MetricFamily<'a> {
        let reuse = !declared
            && self
                .families
                .last()
                .is_some_and(|family| family.name == name && family.samples.is_empty());
        if !reuse {
            self.start_family(name);
        }
        self.families
            .last_mut()
            .expect("a family was just reused or pushed")
    }

    fn start_family(&mut self, name: &'a str) {
        self.families.push(MetricFamily::new(name));
        self.help_declared = false;
        self.type_declared = false;
    }

    /// Parses `name [{labels}] value [timestamp]`.
    fn sample(&mut self, mut cursor: Cursor<'a>) -> Result<(), ParseErrorKind> {
        if cursor.line.ends_with('\r') {
            return Err(ParseErrorKind::CarriageReturn);
        }
        let name = cursor.take_metric_name();
        if name.is_empty() {
            return Err(ParseErrorKind::ExpectedMetricName);
        }
        cursor.skip_blanks();
        let labels = if cursor.eat(b'{') {
            self.labels(&mut cursor)?
        } else {
            Vec::new()
        };
        // As in Prometheus, no blank is needed between the name or `}` and
        // the value: the value is whatever runs up to the next blank.
        cursor.skip_blanks();
        let value_token = cursor.take_token();
        if value_token.is_empty() {
            return Err(ParseErrorKind::MissingValue);
        }
        let value = parse_float(value_token).ok_or(ParseErrorKind::InvalidValue)?;
        cursor.skip_blanks();
        let timestamp_ms = if cursor.at_end() {
            None
        } else {
            let token = cursor.take_token();
            let timestamp: i64 = token
                .parse()
                .map_err(|_| ParseErrorKind::InvalidTimestamp)?;
            cursor.skip_blanks();
            if !cursor.at_end() {
                return Err(ParseErrorKind::TrailingCharacters);
            }
            Some(timestamp)
        };

        let belongs = self
            .families
            .last()
            .is_some_and(|family| family.accepts(name));
        if !belongs {
            self.start_family(name);
        }
        let family = self
            .families
            .last_mut()
            .expect("a family was just checked or pushed");
        family.samples.push(Sample {
            name,
            labels,
            value,
            timestamp_ms,
        });
        Ok(())
    }

    /// Parses the label set after `{`, through the closing `}`.
    fn labels(&self, cursor: &mut Cursor<'a>) -> Result<Vec<Label<'a>>, ParseErrorKind> {
        let mut labels: Vec<Label<'a>> = Vec::new();
        loop {
            cursor.skip_blanks();
            if cursor.eat(b'}') {
                return Ok(labels);
            }
            let name = cursor.take_label_name();
            if name.is_empty() {
                return Err(ParseErrorKind::ExpectedLabelName);
            }
            cursor.skip_blanks();
            if !cursor.eat(b'=') {
                return Err(ParseErrorKind::ExpectedEquals);
            }
            cursor.skip_blanks();
            if !cursor.eat(b'"') {
                return Err(ParseErrorKind::ExpectedLabelValue);
            }
            let value = cursor.take_label_value()?;
            if labels.iter().any(|label| label.name == name) {
                return Err(ParseErrorKind::DuplicateLabel);
            }
            if labels.len() == self.max_labels {
                return Err(ParseErrorKind::TooManyLabels {
                    max: self.max_labels,
                });
            }
            labels.push(Label { name, value });
            cursor.skip_blanks();
            // A comma may also precede the closing brace.
            if !cursor.eat(b',') && cursor.peek() != Some(b'}') {
                return Err(ParseErrorKind::ExpectedCommaOrBrace);
            }
        }
    }
}

/// A position in one line. Every token boundary is an ASCII byte, so slicing
/// at `pos` always lands on a char boundary.
struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(line: &'a str) -> Self {
        Cursor { line, pos: 0 }
    }

    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.bump();
        }
        found
    }

    fn rest(&self) -> &'a str {
        self.line.get(self.pos..).unwrap_or("")
    }

    /// Skips spaces and tabs; returns how many there were.
    fn skip_blanks(&mut self) -> usize {
        let start = self.pos;
        self.take_while(|b| b == b' ' || b == b'\t');
        self.pos - start
    }

    /// Consumes bytes while `accept` holds. `accept` must reject every
    /// non-ASCII byte or accept all of them, to stay on char boundaries.
    fn take_while(&mut self, accept: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        let bytes = self.line.as_bytes();
        while self.pos < bytes.len() && accept(bytes[self.pos]) {
            self.pos += 1;
        }
        self.line.get(start..self.pos).unwrap_or("")
    }

    /// Consumes `[a-zA-Z_:][a-zA-Z0-9_:]*`; empty if there is none.
    fn take_metric_name(&mut self) -> &'a str {
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' || b == b':' => {
                self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            }
            _ => "",
        }
    }

    /// Consumes `[a-zA-Z_][a-zA-Z0-9_]*`; empty if there is none.
    fn take_label_name(&mut self) -> &'a str {
        match self.peek() {
            Some(b) if b.is_ascii_alphabetic() || b == b'_' => {
                self.take_while(|b| b.is_ascii_alphanumeric() || b == b'_')
            }
            _ => "",
        }
    }

    /// Consumes everything up to the next blank.
    fn take_token(&mut self) -> &'a str {
        self.take_while(|b| b != b' ' && b != b'\t')
    }

    /// Consumes a label value after its opening quote, through the closing
    /// quote, and returns it unescaped.
    fn take_label_value(&mut self) -> Result<Cow<'a, str>, ParseErrorKind> {
        let bytes = self.line.as_bytes();
        let start = self.pos;
        let mut i = start;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => {
                    self.pos = i + 1;
                    let raw = self.line.get(start..i).unwrap_or("");
                    return Ok(unescape(raw, true));
                }
                // Skip the escaped byte so that `\"` does not end the value;
                // a backslash at the end of the line leaves `i` past the end.
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        Err(ParseErrorKind::UnterminatedLabelValue)
    }
}

/// Unescapes `\\` and `\n` (and `\"` when `quotes`), keeping other escape
/// sequences verbatim like Prometheus does. Borrows when there is nothing to
/// unescape, and otherwise copies slice by slice.
fn unescape(raw: &str, quotes: bool) -> Cow<'_, str> {
    let bytes = raw.as_bytes();
    let Some(first) = bytes.iter().position(|&b| b == b'\\') else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    let mut copied_to = 0;
    let mut i = first;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let replacement = match bytes.get(i + 1) {
            Some(b'\\') => '\\',
            Some(b'n') => '\n',
            Some(b'"') if quotes => '"',
            // Unknown escape: keep the backslash and scan on from the next
            // byte, which may start a multi-byte char.
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(raw.get(copied_to..i).unwrap_or(""));
        out.push(replacement);
        i += 2;
        copied_to = i;
    }
    out.push_str(raw.get(copied_to..).unwrap_or(""));
    Cow::Owned(out)
}
