//! Where in a statement an error without a position belongs: the clause it is about.
//!
//! DataFusion gives spans for names it cannot resolve; most other planning errors, its own
//! and Vigil's, come without one. Those name the construct they refuse (`ORDER BY`, `HOP`,
//! a function); this finds that construct among the statement's tokens, so the caret goes
//! under the clause instead of the statement's first word.

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use crate::error::Location;

/// Words in an error message, and the tokens of the clause they point at.
const CLAUSES: &[(&str, &[&str])] = &[
    ("ORDER BY", &["ORDER", "BY"]),
    ("join", &["JOIN"]),
    ("OVER", &["OVER"]),
    ("GROUPING SETS", &["GROUP"]),
    ("window_start and window_end", &["GROUP"]),
    ("HAVING", &["HAVING"]),
    ("OFFSET", &["OFFSET"]),
    ("LIMIT", &["LIMIT"]),
    ("(DISTINCT", &["DISTINCT"]),
    ("CUMULATE", &["CUMULATE"]),
    ("HOP", &["HOP"]),
    ("TUMBLE", &["TUMBLE"]),
    ("INTERSECT", &["INTERSECT"]),
    ("EXCEPT", &["EXCEPT"]),
    ("subquer", &["SELECT"]),
    ("UNION", &["UNION"]),
    ("WATERMARK", &["WATERMARK"]),
];

/// The position of what `message` is about in `sql`, a statement starting at `start`.
pub fn locate(sql: &str, start: Location, message: &str) -> Option<Location> {
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .ok()?;
    let words: Vec<(&TokenWithSpan, String)> = tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::Word(w) => Some((t, w.value.to_ascii_uppercase())),
            _ => None,
        })
        .collect();
    let find = |wanted: &[&str], skip_first: bool| {
        let first = usize::from(skip_first);
        (first..words.len()).find_map(|i| {
            let window = words.get(i..i + wanted.len())?;
            window
                .iter()
                .zip(wanted)
                .all(|((_, w), want)| w == want)
                .then(|| window[0].0)
        })
    };
    let token = CLAUSES
        .iter()
        .filter(|(needle, _)| message.contains(needle))
        .find_map(|(needle, clause)| find(clause, needle.starts_with("subquer")))
        .or_else(|| quoted_name(message).and_then(|name| find(&[name.as_str()], false)))?;
    Some(relative_to(start, token))
}

/// The first name quoted in `message` ('sensor_id', "f"), upper-cased like the tokens.
fn quoted_name(message: &str) -> Option<String> {
    let start = message.find(['\'', '"'])? + 1;
    let quote = message[start - 1..].chars().next()?;
    let end = message[start..].find(quote)? + start;
    let name = &message[start..end];
    let name = name.rsplit('.').next().unwrap_or(name);
    (!name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
        .then(|| name.to_ascii_uppercase())
}

/// A token's position in the whole input, given where its statement starts.
fn relative_to(start: Location, token: &TokenWithSpan) -> Location {
    let at = token.span.start;
    if at.line <= 1 {
        Location {
            line: start.line,
            column: start.column + at.column - 1,
        }
    } else {
        Location {
            line: start.line + at.line - 1,
            column: at.column,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_points_at_the_clause_it_names() {
        let start = Location { line: 3, column: 5 };
        let sql = "SELECT k FROM s\nORDER BY k";
        assert_eq!(
            locate(sql, start, "ORDER BY is not supported on a stream"),
            Some(Location { line: 4, column: 1 })
        );
        let sql = "SELECT count(*) FROM HOP(s, ts, INTERVAL '1' SECOND, INTERVAL '1' DAY)";
        assert_eq!(
            locate(
                sql,
                start,
                "HOP with size 1d and slide 1s puts every event in 86400 windows"
            ),
            Some(Location {
                line: 3,
                column: 26
            })
        );
        assert_eq!(
            locate("SELECT nope(k) FROM s", start, "Invalid function 'nope'"),
            Some(Location {
                line: 3,
                column: 12
            })
        );
        assert_eq!(locate("SELECT k FROM s", start, "something else"), None);
    }
}
