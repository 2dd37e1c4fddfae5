//! `vigil fmt`: one canonical layout for rule files, the way `gofmt` does it: the author's
//! line breaks stay (long lines get more), everything else is decided here.
//!
//! - SQL keywords in upper case; names as written;
//! - one space between tokens, none inside parentheses or before commas, none between a
//!   function and its arguments;
//! - indentation from structure: clauses (`SELECT`, `FROM`, `WHERE`, ...) at the statement's
//!   margin, their continuation lines 4 spaces in, the inside of parentheses and `CASE` 4
//!   spaces past the line that opened them;
//! - lines longer than [`MAX_WIDTH`] broken after their outermost commas and before their
//!   outermost `AND`, `OR` and clauses, each piece laid out as a line of its own;
//! - comments kept as written, at the indentation of their place; at most one blank line in a
//!   row; one newline at the end.
//!
//! Only whitespace and keyword case change: the formatted file is checked to have the same
//! tokens as the original before it is returned.

use std::collections::VecDeque;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Whitespace};
use vigil_engine::sql::KEYWORDS;

/// Lines longer than this are wrapped where the structure allows.
pub const MAX_WIDTH: usize = 100;

/// Keywords that start a clause: at the statement's margin, not indented as continuations.
const CLAUSES: &[&str] = &[
    "SELECT", "FROM", "WHERE", "GROUP", "HAVING", "UNION", "ORDER", "LIMIT", "WITH", "CREATE",
    "DROP", "EXPLAIN", "JOIN", "LEFT", "RIGHT", "INNER", "FULL", "CROSS", "WINDOW", "EMIT",
    "ALLOWED",
];

/// Keywords after which `(` is not a call: `AS (`, `IN (`, `WITH (`.
const BEFORE_PARENTHESIS: &[&str] = &[
    "AND",
    "AS",
    "EXISTS",
    "FILTER",
    "FROM",
    "IN",
    "JOIN",
    "NOT",
    "ON",
    "OR",
    "SELECT",
    "THEN",
    "ELSE",
    "WHEN",
    "WHERE",
    "WITH",
    "BY",
    "HAVING",
    "UNION",
    "ALL",
    "MATCH_RECOGNIZE",
    "PATTERN",
];

/// The clauses inside `MATCH_RECOGNIZE (...)`: one indent in, their items one more.
const MATCH_CLAUSES: &[&str] = &[
    "PARTITION",
    "ORDER",
    "MEASURES",
    "ONE",
    "ALL",
    "AFTER",
    "PATTERN",
    "DEFINE",
];

/// Why a file could not be formatted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// The text does not tokenize as SQL (an unclosed quote, say).
    #[error("{0}")]
    Syntax(String),
    /// The formatter would have changed more than layout: a bug, and the file is left alone.
    #[error("formatting would change the rule's tokens; the file is left as it is")]
    ChangedTokens,
}

/// The canonical form of a rule file.
pub fn format_sql(text: &str) -> Result<String, FormatError> {
    let tokens = tokenize(text)?;
    let formatted = layout(&tokens);
    if significant(&tokenize(&formatted)?) != significant(&tokens) {
        return Err(FormatError::ChangedTokens);
    }
    Ok(formatted)
}

fn tokenize(text: &str) -> Result<Vec<Token>, FormatError> {
    Tokenizer::new(&GenericDialect {}, text)
        .tokenize()
        .map_err(|e| FormatError::Syntax(e.to_string()))
}

/// Tokens that carry meaning, words compared without case unless quoted.
fn significant(tokens: &[Token]) -> Vec<String> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Whitespace(Whitespace::SingleLineComment { comment, prefix }) => {
                Some(format!("{prefix}{}", comment.trim_end()))
            }
            Token::Whitespace(Whitespace::MultiLineComment(c)) => Some(c.clone()),
            Token::Whitespace(_) => None,
            Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
            other => Some(other.to_string()),
        })
        .collect()
}

/// One line of the input: its tokens, or a comment at its end.
#[derive(Default)]
struct Line {
    tokens: Vec<Token>,
    comment: Option<String>,
}

fn split_lines(tokens: &[Token]) -> Vec<Line> {
    let mut lines = vec![Line::default()];
    for token in tokens {
        match token {
            Token::Whitespace(Whitespace::Newline) => lines.push(Line::default()),
            Token::Whitespace(Whitespace::SingleLineComment { comment, prefix }) => {
                let line = lines.last_mut().expect("never empty");
                line.comment = Some(format!("{prefix}{}", comment.trim_end()));
                if comment.ends_with('\n') {
                    lines.push(Line::default());
                }
            }
            Token::Whitespace(Whitespace::Space | Whitespace::Tab) => {}
            other => lines
                .last_mut()
                .expect("never empty")
                .tokens
                .push(other.clone()),
        }
    }
    lines
}

/// A parenthesis or CASE: where its line started.
struct Frame {
    opener_indent: usize,
    /// A `MATCH_RECOGNIZE (`, whose clauses' items go one indent deeper...
    match_recognize: bool,
    /// ... once a clause has begun.
    in_clause: bool,
}

fn layout(tokens: &[Token]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    let mut in_statement = false;
    let mut lines: VecDeque<Line> = split_lines(tokens).into();
    while let Some(line) = lines.pop_front() {
        if line.tokens.is_empty() && line.comment.is_none() {
            if out.last().is_some_and(|l| !l.is_empty()) {
                out.push(String::new());
            }
            continue;
        }
        let indent = match line.tokens.first() {
            Some(first) if is_closer(first) => frames.last().map_or(0, |f| f.opener_indent),
            first => match frames.last_mut() {
                Some(frame) if frame.match_recognize => {
                    let clause = first.is_some_and(|t| word_is(t, MATCH_CLAUSES));
                    frame.in_clause |= clause;
                    frame.opener_indent + if frame.in_clause && !clause { 8 } else { 4 }
                }
                Some(frame) => frame.opener_indent + 4,
                None if !in_statement => 0,
                None if first.is_some_and(is_clause) => 0,
                None => 4,
            },
        };
        let mut text = " ".repeat(indent);
        text.push_str(&render(&line.tokens));
        if text.chars().count() > MAX_WIDTH
            && let Some(pieces) = wrap(&line)
        {
            // Each piece is laid out as a line of its own, so a second run keeps it.
            for piece in pieces.into_iter().rev() {
                lines.push_front(piece);
            }
            continue;
        }
        for (i, token) in line.tokens.iter().enumerate() {
            if is_opener(token) {
                let after = i.checked_sub(1).map(|p| &line.tokens[p]);
                frames.push(Frame {
                    opener_indent: indent,
                    match_recognize: after.is_some_and(|t| word_is(t, &["MATCH_RECOGNIZE"])),
                    in_clause: false,
                });
            } else if is_closer(token) {
                frames.pop();
            } else if *token == Token::SemiColon && frames.is_empty() {
                in_statement = false;
                continue;
            }
            if *token != Token::SemiColon {
                in_statement = true;
            }
        }
        if let Some(comment) = &line.comment {
            if !line.tokens.is_empty() {
                text.push(' ');
            }
            text.push_str(comment);
        }
        out.push(text.trim_end().to_string());
    }
    while out.last().is_some_and(|l| l.is_empty()) {
        out.pop();
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// A long line's pieces: broken after its outermost commas and before its outermost `AND`,
/// `OR` and clause keywords; `None` when it has no such place.
fn wrap(line: &Line) -> Option<Vec<Line>> {
    let mut pieces = vec![Line::default()];
    let mut depth = 0usize;
    let mut previous: Option<&Token> = None;
    // Inside `BETWEEN a AND b`: its AND stays on the line.
    let mut between = false;
    for token in &line.tokens {
        let starts_piece = depth == 0
            && previous.is_some()
            && !pieces.last().is_some_and(|p| p.tokens.is_empty())
            && !(between && word_is(token, &["AND"]))
            && breaks_before(token, previous);
        if depth == 0 && word_is(token, &["BETWEEN"]) {
            between = true;
        } else if depth == 0 && word_is(token, &["AND"]) {
            between = false;
        }
        if starts_piece {
            pieces.push(Line::default());
        }
        let piece = pieces.last_mut().expect("never empty");
        piece.tokens.push(token.clone());
        if is_opener(token) {
            depth += 1;
        } else if is_closer(token) {
            depth = depth.saturating_sub(1);
        } else if depth == 0 && *token == Token::Comma {
            pieces.push(Line::default());
        }
        previous = Some(token);
    }
    pieces.retain(|p| !p.tokens.is_empty());
    if pieces.len() < 2 {
        return None;
    }
    pieces.last_mut().expect("two or more").comment = line.comment.clone();
    Some(pieces)
}

/// Whether an outermost `token` after `previous` begins a new line of a wrapped one.
fn breaks_before(token: &Token, previous: Option<&Token>) -> bool {
    if word_is(token, &["AND", "OR"]) {
        return true;
    }
    let joined = match previous {
        Some(p) => word_is(
            p,
            &[
                "LEFT", "RIGHT", "INNER", "FULL", "CROSS", "DISTINCT", "UNION",
            ],
        ),
        None => false,
    };
    is_clause(token) && !joined
}

fn word_is(token: &Token, list: &[&str]) -> bool {
    matches!(token, Token::Word(w) if w.quote_style.is_none()
        && list.iter().any(|k| w.value.eq_ignore_ascii_case(k)))
}

fn is_clause(token: &Token) -> bool {
    word_is(token, CLAUSES)
}

fn is_opener(token: &Token) -> bool {
    matches!(token, Token::LParen) || word_is(token, &["CASE"])
}

fn is_closer(token: &Token) -> bool {
    matches!(token, Token::RParen) || word_is(token, &["END"])
}

fn is_operator(token: &Token) -> bool {
    matches!(
        token,
        Token::Eq
            | Token::Neq
            | Token::Lt
            | Token::Gt
            | Token::LtEq
            | Token::GtEq
            | Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::Mod
            | Token::StringConcat
            | Token::Comma
            | Token::LParen
    )
}

/// A line's tokens with canonical spacing and keyword case.
fn render(tokens: &[Token]) -> String {
    let mut out = String::new();
    let mut pattern = Pattern::default();
    for (i, token) in tokens.iter().enumerate() {
        let prev = i.checked_sub(1).map(|p| &tokens[p]);
        let spaced = prev.is_some_and(|prev| match pattern.depth {
            0 => space_between(prev, token, i.checked_sub(2).map(|p| &tokens[p])),
            _ => pattern.space_between(prev, token),
        });
        if spaced {
            out.push(' ');
        }
        pattern.step(prev, token);
        match token {
            Token::Word(w) if w.quote_style.is_none() && word_is(token, KEYWORDS) => {
                out.push_str(&w.value.to_ascii_uppercase())
            }
            other => out.push_str(&other.to_string()),
        }
    }
    out
}

/// Where a line is within a `PATTERN (...)`, whose quantifiers stick to what they repeat:
/// `(A B+ C{2,})`.
#[derive(Default)]
struct Pattern {
    /// Parentheses open inside the pattern; 0 outside it.
    depth: usize,
    in_braces: bool,
}

impl Pattern {
    /// Moves past `token`, which follows `prev`.
    fn step(&mut self, prev: Option<&Token>, token: &Token) {
        match token {
            Token::LParen if self.depth > 0 => self.depth += 1,
            Token::LParen if prev.is_some_and(|p| word_is(p, &["PATTERN"])) => self.depth = 1,
            Token::RParen if self.depth > 0 => self.depth -= 1,
            Token::LBrace if self.depth > 0 => self.in_braces = true,
            Token::RBrace => self.in_braces = false,
            _ => {}
        }
    }

    fn space_between(&self, prev: &Token, token: &Token) -> bool {
        let quantifier = matches!(token, Token::Plus | Token::Mul | Token::LBrace)
            || matches!(token, Token::Placeholder(p) if p == "?");
        !(quantifier
            || self.in_braces
            || matches!(prev, Token::LParen)
            || matches!(token, Token::RParen))
    }
}

fn space_between(prev: &Token, token: &Token, before_prev: Option<&Token>) -> bool {
    if matches!(
        token,
        Token::Comma
            | Token::SemiColon
            | Token::RParen
            | Token::Period
            | Token::RBracket
            | Token::DoubleColon
    ) || matches!(
        prev,
        Token::LParen | Token::Period | Token::LBracket | Token::DoubleColon
    ) {
        return false;
    }
    if *token == Token::LParen {
        let is_call = matches!(prev, Token::Word(_))
            && !word_is(prev, BEFORE_PARENTHESIS)
            // CREATE SOURCE name (...): a column list, not a call.
            && !before_prev.is_some_and(|t| word_is(t, &["SOURCE", "SINK", "VIEW", "TABLE"]));
        return !is_call;
    }
    // A unary minus sticks to its operand.
    if let Some(before) = before_prev
        && *prev == Token::Minus
        && (is_operator(before) || word_is(before, KEYWORDS))
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::format_sql;

    #[test]
    fn a_sloppy_rule_gets_the_canonical_layout() {
        let sloppy = "\
-- rule: hot


create sink hot_alerts as
select sensor_id ,count( * ) as n,
  case when max(temperature)>35 then 'hot'
  else 'warm' end as level
from TUMBLE(sensors,ts,interval '1' minute)   -- per minute
where temperature > -5
group by window_start, window_end, sensor_id
having count(*)>=3 ;
";
        assert_eq!(
            format_sql(sloppy).unwrap(),
            "\
-- rule: hot

CREATE SINK hot_alerts AS
SELECT sensor_id, count(*) AS n,
    CASE WHEN max(temperature) > 35 THEN 'hot'
        ELSE 'warm' END AS level
FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE) -- per minute
WHERE temperature > -5
GROUP BY window_start, window_end, sensor_id
HAVING count(*) >= 3;
"
        );
    }

    #[test]
    fn match_recognize_clauses_indent_their_items_and_quantifiers_stick() {
        let sloppy = "SELECT * FROM s match_recognize(partition by k order by ts\nmeasures\nfirst(A.ts) AS t,\ncount(*) AS n\npattern ( (A | B)+? C {2,} D * ) within interval '1' minute\ndefine\nA AS A.x > 1\n);\n";
        let once = format_sql(sloppy).unwrap();
        assert_eq!(
            once,
            "SELECT * FROM s MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts\n    MEASURES\n        first(A.ts) AS t,\n        count(*) AS n\n    PATTERN ((A | B)+? C{2,} D*) WITHIN INTERVAL '1' MINUTE\n    DEFINE\n        A AS A.x > 1\n);\n"
        );
        assert_eq!(format_sql(&once).unwrap(), once);
    }

    #[test]
    fn emit_clauses_start_at_the_margin() {
        let sloppy = "SELECT window_start, count(*) FROM TUMBLE(s, ts, INTERVAL '1' HOUR)\n  GROUP BY window_start, window_end\n  emit early every interval '1' minute\n    allowed lateness interval '10' minute;\n";
        let once = format_sql(sloppy).unwrap();
        assert_eq!(
            once,
            "SELECT window_start, count(*) FROM TUMBLE(s, ts, INTERVAL '1' HOUR)\nGROUP BY window_start, window_end\nEMIT EARLY EVERY INTERVAL '1' MINUTE\nALLOWED LATENESS INTERVAL '10' MINUTE;\n"
        );
        assert_eq!(format_sql(&once).unwrap(), once);
    }

    #[test]
    fn declarations_keep_their_column_lists_and_formatting_is_idempotent() {
        let text = "CREATE SOURCE s (\n  id BIGINT, ts TIMESTAMP,\n  WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH (connector = 'kafka',\n   topic = 's');\n";
        let once = format_sql(text).unwrap();
        assert_eq!(
            once,
            "CREATE SOURCE s (\n    id BIGINT, ts TIMESTAMP,\n    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND\n) WITH (connector = 'kafka',\n    topic = 's');\n"
        );
        assert_eq!(format_sql(&once).unwrap(), once);
    }

    #[test]
    fn long_lines_break_at_their_outermost_commas_and_conditions_once() {
        let long = "CREATE SINK alerts AS SELECT sensor_id, count(*) AS readings, avg(temperature) AS mean, max(temperature) AS peak FROM sensors WHERE temperature BETWEEN 30 AND 90 AND sensor_id <> 'test' OR site IN ('a', 'b', 'c', 'd', 'e', 'f') GROUP BY sensor_id; -- hot\n";
        let once = format_sql(long).unwrap();
        assert_eq!(
            once,
            "\
CREATE SINK alerts AS
SELECT sensor_id,
    count(*) AS readings,
    avg(temperature) AS mean,
    max(temperature) AS peak
FROM sensors
WHERE temperature BETWEEN 30 AND 90
    AND sensor_id <> 'test'
    OR site IN ('a', 'b', 'c', 'd', 'e', 'f')
GROUP BY sensor_id; -- hot
"
        );
        assert_eq!(format_sql(&once).unwrap(), once);
        let short = "SELECT a, b FROM t WHERE a > 1 AND b < 2;\n";
        assert_eq!(format_sql(short).unwrap(), short);
    }

    #[test]
    fn an_unclosed_quote_is_an_error() {
        assert!(format_sql("SELECT 'oops FROM t;").is_err());
    }
}
