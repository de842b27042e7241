//! PromQL-style series selectors: `name{label="v", code=~"5.."}`.
//!
//! Only the instant-vector selector syntax is understood: no functions, no
//! ranges, no offsets. Regex matchers use the subset in [`super::pattern`].

use std::fmt;
use std::str::FromStr;

use super::model::Sample;
use super::pattern::{Pattern, PatternError};

/// A metric name plus label matchers, e.g. `http_requests_total{code=~"5.."}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    /// The sample name to select, e.g. `http_requests_total` or
    /// `http_request_duration_seconds_bucket`.
    pub name: String,
    /// Matchers that must all hold.
    pub matchers: Vec<LabelMatcher>,
}

/// How a [`LabelMatcher`] compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: the value equals the string.
    Equal,
    /// `!=`: the value differs from the string.
    NotEqual,
    /// `=~`: the regex matches the whole value.
    RegexMatch,
    /// `!~`: the regex does not match the whole value.
    RegexNoMatch,
}

/// One `label op "value"` condition.
///
/// As in PromQL, a missing label has the value `""`, and `=~` / `!~` match the
/// whole value (`5..` behaves as `^(?:5..)$`). The regex operators support a
/// subset of RE2, implemented without a regex crate:
///
/// - literal chars, and `\` followed by ASCII punctuation (`\.`, `\|`, `\[`);
/// - `.`, which matches any char (newlines too, as in Prometheus);
/// - classes such as `[0-9]`, `[45]`, `[a-zA-Z_]`, negated `[^...]`; a leading
///   `]` and a leading or trailing `-` are literals;
/// - `*`, `+` and `?` after a literal, `.` or class (so `.*`, `.+`, `[0-9]+`);
/// - `|` between whole alternatives (`2..|3..`), not inside groups.
///
/// Anything else (groups `( )`, anchors `^ $`, counted repetition `{n}`,
/// `\d`-style escapes, lazy repetition, POSIX classes, flags such as `(?i)`)
/// is rejected when the matcher is built, never silently misread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelMatcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The compiled `value`, for the regex operators.
    pattern_opt: Option<Pattern>,
}

/// Why a selector string was rejected; offsets are in bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The selector does not start with a metric name.
    #[error("expected metric name at offset {offset}")]
    ExpectedMetricName {
        /// Byte offset of the problem.
        offset: usize,
    },
    /// `{` or `,` is not followed by a label name or `}`.
    #[error("expected label name or '}}' at offset {offset}")]
    ExpectedLabelName {
        /// Byte offset of the problem.
        offset: usize,
    },
    /// A label name is not followed by `=`, `!=`, `=~` or `!~`.
    #[error("expected '=', '!=', '=~' or '!~' at offset {offset}")]
    ExpectedOperator {
        /// Byte offset of the problem.
        offset: usize,
    },
    /// An operator is not followed by a quoted string.
    #[error("expected quoted label value at offset {offset}")]
    ExpectedValue {
        /// Byte offset of the problem.
        offset: usize,
    },
    /// A string has no closing quote on its line.
    #[error("unterminated string at offset {offset}")]
    UnterminatedString {
        /// Byte offset of the opening quote.
        offset: usize,
    },
    /// A string holds an escape sequence PromQL does not know.
    #[error("unknown escape sequence at offset {offset}")]
    UnknownEscape {
        /// Byte offset of the backslash.
        offset: usize,
    },
    /// A matcher is not followed by `,` or `}`.
    #[error("expected ',' or '}}' at offset {offset}")]
    ExpectedCommaOrBrace {
        /// Byte offset of the problem.
        offset: usize,
    },
    /// Something follows the selector.
    #[error("unexpected text at offset {offset}")]
    TrailingCharacters {
        /// Byte offset of the problem.
        offset: usize,
    },
    /// A `=~` or `!~` value is outside the supported regex subset.
    #[error("invalid regex for label {label:?}")]
    InvalidRegex {
        /// The label the regex is for.
        label: String,
        /// What is wrong with the regex.
        #[source]
        source: PatternError,
    },
}

// === impl Selector ===

impl Selector {
    /// Parses a selector such as `http_requests_total{code=~"5..",method!="GET"}`.
    ///
    /// Blanks may surround every token, a trailing comma may close the
    /// matchers, and values may be quoted with `"`, `'` or (raw) backticks.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut cursor = Cursor { text, pos: 0 };
        cursor.skip_whitespace();
        let name = cursor.take_ident(true);
        if name.is_empty() {
            return Err(SelectorError::ExpectedMetricName { offset: cursor.pos });
        }
        let mut matchers = Vec::new();
        cursor.skip_whitespace();
        if cursor.eat(b'{') {
            loop {
                cursor.skip_whitespace();
                if cursor.eat(b'}') {
                    break;
                }
                matchers.push(cursor.matcher()?);
                cursor.skip_whitespace();
                if !cursor.eat(b',') && cursor.peek() != Some(b'}') {
                    return Err(SelectorError::ExpectedCommaOrBrace { offset: cursor.pos });
                }
            }
        }
        cursor.skip_whitespace();
        if cursor.pos < text.len() {
            return Err(SelectorError::TrailingCharacters { offset: cursor.pos });
        }
        Ok(Selector {
            name: name.to_owned(),
            matchers,
        })
    }

    /// Returns whether `sample` has the selected name and satisfies every matcher.
    pub fn matches(&self, sample: &Sample<'_>) -> bool {
        sample.name == self.name && self.matches_labels(sample)
    }

    /// Returns whether `sample`'s labels satisfy every matcher.
    pub(super) fn matches_labels(&self, sample: &Sample<'_>) -> bool {
        matchers_match(&self.matchers, sample)
    }
}

/// Returns whether `sample` satisfies every matcher; `__name__` is the sample name.
pub(super) fn matchers_match(matchers: &[LabelMatcher], sample: &Sample<'_>) -> bool {
    matchers.iter().all(|matcher| {
        let value = if matcher.name == "__name__" {
            sample.name
        } else {
            sample.label(&matcher.name).unwrap_or("")
        };
        matcher.matches(value)
    })
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Selector::parse(text)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if self.matchers.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (idx, matcher) in self.matchers.iter().enumerate() {
            if idx > 0 {
                f.write_str(",")?;
            }
            write!(f, "{matcher}")?;
        }
        f.write_str("}")
    }
}

// === impl LabelMatcher ===

impl LabelMatcher {
    /// Builds a matcher, compiling `value` for the regex operators.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, PatternError> {
        let value = value.into();
        let pattern_opt = match op {
            MatchOp::Equal | MatchOp::NotEqual => None,
            MatchOp::RegexMatch | MatchOp::RegexNoMatch => Some(Pattern::new(&value)?),
        };
        Ok(LabelMatcher {
            name: name.into(),
            op,
            value,
            pattern_opt,
        })
    }

    /// Returns the label name this matcher looks at.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the comparison.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// Returns the string or regex source compared against.
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Returns whether a label value (`""` for a missing label) satisfies the matcher.
    pub fn matches(&self, label_value: &str) -> bool {
        let regex_matches = || {
            self.pattern_opt
                .as_ref()
                .is_some_and(|pattern| pattern.is_match(label_value))
        };
        match self.op {
            MatchOp::Equal => label_value == self.value,
            MatchOp::NotEqual => label_value != self.value,
            MatchOp::RegexMatch => regex_matches(),
            MatchOp::RegexNoMatch => !regex_matches(),
        }
    }
}

impl fmt::Display for LabelMatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}\"", self.name, self.op)?;
        for c in self.value.chars() {
            match c {
                '\\' => f.write_str("\\\\")?,
                '"' => f.write_str("\\\"")?,
                '\n' => f.write_str("\\n")?,
                _ => write!(f, "{c}")?,
            }
        }
        f.write_str("\"")
    }
}

// === impl MatchOp ===

impl MatchOp {
    /// Returns the operator as written in PromQL.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::RegexMatch => "=~",
            MatchOp::RegexNoMatch => "!~",
        }
    }
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Cursor ===

/// A position in a selector string; token boundaries are ASCII bytes.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn eat_str(&mut self, token: &str) -> bool {
        let found = self
            .text
            .as_bytes()
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(token.as_bytes()));
        if found {
            self.pos += token.len();
        }
        found
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes a metric name (`colons`) or label name; empty if there is none.
    fn take_ident(&mut self, colons: bool) -> &'a str {
        let start = self.pos;
        while let Some(b) = self.peek() {
            let ok = b.is_ascii_alphabetic()
                || b == b'_'
                || (colons && b == b':')
                || (self.pos > start && b.is_ascii_digit());
            if !ok {
                break;
            }
            self.pos += 1;
        }
        self.text.get(start..self.pos).unwrap_or("")
    }

    /// Parses `label op "value"`.
    fn matcher(&mut self) -> Result<LabelMatcher, SelectorError> {
        let name = self.take_ident(false);
        if name.is_empty() {
            return Err(SelectorError::ExpectedLabelName { offset: self.pos });
        }
        self.skip_whitespace();
        // Two-byte operators first, so `=~` is not read as `=`.
        let op = if self.eat_str("=~") {
            MatchOp::RegexMatch
        } else if self.eat_str("!~") {
            MatchOp::RegexNoMatch
        } else if self.eat_str("!=") {
            MatchOp::NotEqual
        } else if self.eat(b'=') {
            MatchOp::Equal
        } else {
            return Err(SelectorError::ExpectedOperator { offset: self.pos });
        };
        self.skip_whitespace();
        let value = self.string()?;
        LabelMatcher::new(name, op, value).map_err(|source| SelectorError::InvalidRegex {
            label: name.to_owned(),
            source,
        })
    }

    /// Parses a PromQL string: `"..."` or `'...'` with Go escapes (except
    /// numeric ones), or a raw `` `...` ``.
    fn string(&mut self) -> Result<String, SelectorError> {
        let open_offset = self.pos;
        let quote = match self.peek() {
            Some(quote @ (b'"' | b'\'' | b'`')) => quote,
            _ => {
                return Err(SelectorError::ExpectedValue {
                    offset: open_offset,
                })
            }
        };
        self.pos += 1;
        let unterminated = SelectorError::UnterminatedString {
            offset: open_offset,
        };
        let mut value = String::new();
        loop {
            let start = self.pos;
            while self
                .peek()
                .is_some_and(|b| b != quote && b != b'\n' && (quote == b'`' || b != b'\\'))
            {
                self.pos += 1;
            }
            value.push_str(self.text.get(start..self.pos).unwrap_or(""));
            match self.peek() {
                Some(b) if b == quote => {
                    self.pos += 1;
                    return Ok(value);
                }
                Some(b'\\') => {
                    let escape_offset = self.pos;
                    self.pos += 1;
                    let replacement = match self.peek() {
                        Some(b'\\') => '\\',
                        Some(b'n') => '\n',
                        Some(b't') => '\t',
                        Some(b'r') => '\r',
                        Some(b'a') => '\u{7}',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'v') => '\u{b}',
                        Some(b) if b == quote => char::from(quote),
                        None => return Err(unterminated),
                        Some(_) => {
                            return Err(SelectorError::UnknownEscape {
                                offset: escape_offset,
                            })
                        }
                    };
                    self.pos += 1;
                    value.push(replacement);
                }
                // A newline or the end of the text.
                _ => return Err(unterminated),
            }
        }
    }
}
