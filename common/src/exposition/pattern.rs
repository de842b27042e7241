//! A tiny anchored regex matcher for the subset of RE2 that label matchers
//! need, so the agent does not pull in a regex engine.
//!
//! Supported: literal chars, `\` + ASCII punctuation as a literal, `.` (any
//! char, `\n` included, as Prometheus sets the `s` flag), classes `[0-9]`,
//! `[45]`, `[a-z_]`, `[^...]`, the repetitions `*`, `+` and `?` after any of
//! those, and `|` at the top level.
//! Everything else RE2 would read differently (groups, anchors, counted
//! repetition, `\d`-style escapes, lazy repetition, POSIX classes, flags) is
//! rejected, so a pattern never silently means something else here.
//!
//! Matching is a bit-parallel NFA simulation: linear in the input, no
//! backtracking, no allocation.

/// The longest sequence of items one alternative may hold (`a+` counts two),
/// so that one `u128` holds every state.
const MAX_ITEMS: usize = 127;

/// Why a regex was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern uses syntax outside the supported subset.
    #[error("unsupported regex syntax {0:?} (supported: literals, '.', [classes], '*', '+', '?', top-level '|')")]
    Unsupported(char),
    /// A backslash escapes something other than ASCII punctuation.
    #[error("unsupported escape sequence '\\{0}' (only punctuation may be escaped)")]
    UnsupportedEscape(char),
    /// The pattern ends in a lone backslash.
    #[error("trailing backslash")]
    TrailingBackslash,
    /// A repetition operator has nothing to repeat.
    #[error("missing argument to repetition operator {0:?}")]
    MissingRepeatArgument(char),
    /// A repetition operator follows another one (`a**`, or lazy `a*?`).
    #[error("repetition operator {0:?} follows another repetition")]
    NestedRepeat(char),
    /// A `[` class has no closing `]`.
    #[error("missing closing ']'")]
    UnterminatedClass,
    /// A class range runs backwards, e.g. `[9-0]`.
    #[error("invalid character class range {0:?}-{1:?}")]
    InvalidRange(char, char),
    /// An alternative has more than the supported number of items.
    #[error("pattern too long (at most {MAX_ITEMS} items per alternative)")]
    TooLong,
}

/// A compiled pattern that must match the whole input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Pattern {
    alternatives: Vec<Vec<Item>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    atom: Atom,
    repeat: Repeat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Atom {
    Literal(char),
    /// `.`: any char, `\n` included, because Prometheus compiles label
    /// regexes with the `s` flag.
    Any,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// How often an item may occur; `+` compiles to the item then `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    One,
    ZeroOrOne,
    ZeroOrMore,
}

// === impl Pattern ===

impl Pattern {
    /// Compiles `source`, rejecting syntax outside the supported subset.
    pub(super) fn new(source: &str) -> Result<Self, PatternError> {
        let mut alternatives = Vec::new();
        let mut items: Vec<Item> = Vec::new();
        // Whether the last item already carries a repetition operator.
        let mut repeated = false;
        let mut chars = source.chars();
        while let Some(c) = chars.next() {
            let atom = match c {
                '|' => {
                    alternatives.push(std::mem::take(&mut items));
                    repeated = false;
                    continue;
                }
                '*' | '+' | '?' => {
                    apply_repeat(&mut items, c, repeated)?;
                    repeated = true;
                    continue;
                }
                '.' => Atom::Any,
                '[' => parse_class(&mut chars)?,
                '\\' => Atom::Literal(escaped(chars.next())?),
                '(' | ')' | '{' | '}' | '^' | '$' => return Err(PatternError::Unsupported(c)),
                _ => Atom::Literal(c),
            };
            push_item(&mut items, atom, Repeat::One)?;
            repeated = false;
        }
        alternatives.push(items);
        Ok(Pattern { alternatives })
    }

    /// Returns whether the pattern matches all of `input`.
    pub(super) fn is_match(&self, input: &str) -> bool {
        self.alternatives
            .iter()
            .any(|items| sequence_matches(items, input))
    }
}

/// Applies `*`, `+` or `?` to the last item of `items`.
fn apply_repeat(items: &mut Vec<Item>, op: char, repeated: bool) -> Result<(), PatternError> {
    if repeated {
        return Err(PatternError::NestedRepeat(op));
    }
    let last = items
        .last_mut()
        .ok_or(PatternError::MissingRepeatArgument(op))?;
    match op {
        '*' => last.repeat = Repeat::ZeroOrMore,
        '?' => last.repeat = Repeat::ZeroOrOne,
        // `x+` is `x x*`.
        _ => {
            let atom = last.atom.clone();
            push_item(items, atom, Repeat::ZeroOrMore)?;
        }
    }
    Ok(())
}

fn push_item(items: &mut Vec<Item>, atom: Atom, repeat: Repeat) -> Result<(), PatternError> {
    if items.len() >= MAX_ITEMS {
        return Err(PatternError::TooLong);
    }
    items.push(Item { atom, repeat });
    Ok(())
}

/// Returns the char an escape stands for; only punctuation may be escaped,
/// because `\d`, `\w`, `\b` and friends mean something else in RE2.
fn escaped(next: Option<char>) -> Result<char, PatternError> {
    match next {
        None => Err(PatternError::TrailingBackslash),
        Some(c) if c.is_ascii_punctuation() => Ok(c),
        Some(c) => Err(PatternError::UnsupportedEscape(c)),
    }
}

/// Parses a class after its `[`, through the closing `]`.
fn parse_class(chars: &mut std::str::Chars<'_>) -> Result<Atom, PatternError> {
    let mut negated = false;
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let c = chars.next().ok_or(PatternError::UnterminatedClass)?;
        let lo = match c {
            '^' if first && !negated => {
                negated = true;
                continue;
            }
            // As in RE2, `]` right after `[` or `[^` is a literal.
            ']' if !first => break,
            '\\' => escaped(chars.next())?,
            // `[[:alpha:]]` and friends.
            '[' => return Err(PatternError::Unsupported('[')),
            _ => c,
        };
        first = false;
        // A `-` is a range unless it is last in the class.
        let mut lookahead = chars.clone();
        let hi = if lookahead.next() == Some('-') && !matches!(lookahead.next(), Some(']') | None) {
            chars.next();
            let hi = match chars.next() {
                Some('\\') => escaped(chars.next())?,
                Some('[') => return Err(PatternError::Unsupported('[')),
                Some(hi) => hi,
                None => return Err(PatternError::UnterminatedClass),
            };
            if hi < lo {
                return Err(PatternError::InvalidRange(lo, hi));
            }
            hi
        } else {
            lo
        };
        ranges.push((lo, hi));
    }
    Ok(Atom::Class { negated, ranges })
}

/// Simulates the NFA of one alternative: bit `i` of the state set means "the
/// next item to match is `i`", bit `items.len()` means "matched".
fn sequence_matches(items: &[Item], input: &str) -> bool {
    let accept = 1u128 << items.len();
    let mut states = closure(items, 1);
    for c in input.chars() {
        let mut next = 0u128;
        for (idx, item) in items.iter().enumerate() {
            if states & (1 << idx) != 0 && item.atom.matches(c) {
                next |= match item.repeat {
                    Repeat::ZeroOrMore => 1 << idx,
                    Repeat::One | Repeat::ZeroOrOne => 1 << (idx + 1),
                };
            }
        }
        states = closure(items, next);
        if states == 0 {
            return false;
        }
    }
    states & accept != 0
}

/// Adds the states reachable by skipping optional items. Skips only go
/// forward, so one ascending pass suffices.
fn closure(items: &[Item], mut states: u128) -> u128 {
    for (idx, item) in items.iter().enumerate() {
        if states & (1 << idx) != 0 && item.repeat != Repeat::One {
            states |= 1 << (idx + 1);
        }
    }
    states
}

// === impl Atom ===

impl Atom {
    fn matches(&self, c: char) -> bool {
        match self {
            Atom::Literal(literal) => *literal == c,
            Atom::Any => true,
            Atom::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}
