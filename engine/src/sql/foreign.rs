//! Flink SQL and ksqlDB spellings people paste, recognised when a statement does not parse,
//! so the error points at Vigil's form instead of at a token the parser did not expect.

/// A construct of another engine's dialect and how Vigil writes it.
struct Spelling {
    /// The words (and opening parentheses) that start it, in order, compared without
    /// case; what lies between them (spaces, newlines) does not matter.
    words: &'static [&'static str],
    /// What it is.
    what: &'static str,
    /// Vigil's way.
    help: &'static str,
}

const SPELLINGS: &[Spelling] = &[
    Spelling {
        words: &["DESCRIPTOR"],
        what: "DESCRIPTOR(column) is Flink's way to name the time column",
        help: "name the column itself: TUMBLE(t, ts, INTERVAL '1' MINUTE)",
    },
    Spelling {
        words: &["EMIT", "CHANGES"],
        what: "ksqlDB's EMIT CHANGES is not needed",
        help: "drop it: every Vigil query emits its changes as they happen",
    },
    Spelling {
        words: &["EMIT", "FINAL"],
        what: "ksqlDB's EMIT FINAL is not needed",
        help: "drop it: a window's row is emitted once, when the watermark passes its end",
    },
    Spelling {
        words: &["CREATE", "STREAM"],
        what: "ksqlDB's CREATE STREAM is CREATE SOURCE in Vigil",
        help: "CREATE SOURCE name (columns, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) \
               WITH (connector = 'kafka', topic = '...')",
    },
    Spelling {
        words: &["KAFKA_TOPIC"],
        what: "ksqlDB's KAFKA_TOPIC option is 'topic' in Vigil",
        help: "WITH (connector = 'kafka', topic = 'name'); brokers come from VIGIL_KAFKA_BROKERS",
    },
];

/// Where in `sql` (a byte offset) a construct of another dialect starts, with what it is
/// and Vigil's way of writing it.
pub fn recognise(sql: &str) -> Option<(usize, &'static str, &'static str)> {
    let words = words(sql);
    SPELLINGS.iter().find_map(|spelling| {
        words
            .windows(spelling.words.len())
            .find(|window| {
                window
                    .iter()
                    .zip(spelling.words)
                    .all(|((_, word), expected)| word.eq_ignore_ascii_case(expected))
            })
            .map(|window| (window[0].0, spelling.what, spelling.help))
    })
}

/// The words and parentheses of `sql` outside quotes, with their byte offsets.
fn words(sql: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut quote: Option<char> = None;
    let mut start: Option<usize> = None;
    for (i, c) in sql.char_indices() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        let in_word = c.is_alphanumeric() || c == '_';
        if !in_word && let Some(s) = start.take() {
            out.push((s, &sql[s..i]));
        }
        match c {
            '\'' | '"' | '`' => quote = Some(c),
            '(' => out.push((i, "(")),
            _ if in_word && start.is_none() => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &sql[s..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(sql: &str) -> Option<&'static str> {
        recognise(sql).map(|(_, what, _)| what)
    }

    #[test]
    fn flink_window_functions_and_ksqldb_clauses_are_recognised() {
        let flink = "SELECT * FROM TUMBLE(t,\n  DESCRIPTOR(ts) + 1, INTERVAL '1' MINUTE)";
        let (at, what, help) = recognise(flink).unwrap();
        assert_eq!(&flink[at..at + 10], "DESCRIPTOR");
        assert!(what.starts_with("DESCRIPTOR(column)"), "{what}");
        assert!(help.contains("TUMBLE(t, ts"), "{help}");
        assert!(what_is("SELECT a FROM t EMIT CHANGES").contains("EMIT CHANGES"));
        assert!(
            what_is("CREATE STREAM s (a INT) WITH (KAFKA_TOPIC='s')").contains("CREATE SOURCE")
        );
    }

    fn what_is(sql: &str) -> &'static str {
        what(sql).unwrap_or_else(|| panic!("not recognised: {sql}"))
    }

    #[test]
    fn words_in_quotes_and_vigils_own_sql_are_left_alone() {
        assert_eq!(what("SELECT 'EMIT CHANGES' FROM t"), None);
        assert_eq!(
            what("SELECT * FROM TUMBLE(t, ts, INTERVAL '1' MINUTE)"),
            None
        );
        assert_eq!(
            what("CREATE SOURCE s (a INT) WITH (connector = 'kafka')"),
            None
        );
        assert_eq!(
            what("CREATE TABLE t (a INT PRIMARY KEY) WITH (connector = 'kafka')"),
            None
        );
    }
}
