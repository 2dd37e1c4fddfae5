//! [`KEYWORDS`]: the SQL words rules are written with.

/// The keywords of the SQL rules use, Vigil's statements included: what the REPL completes
/// and `vigil fmt` writes in upper case. Sorted.
pub const KEYWORDS: &[&str] = &[
    "AFTER",
    "ALL",
    "AND",
    "AS",
    "ASC",
    "BETWEEN",
    "BIGINT",
    "BOOLEAN",
    "BY",
    "CASE",
    "CAST",
    "CREATE",
    "CROSS",
    "DAY",
    "DEFINE",
    "DESC",
    "DISTINCT",
    "DOUBLE",
    "DROP",
    "ELSE",
    "END",
    "EXISTS",
    "EXPLAIN",
    "FALSE",
    "FILTER",
    "FLOAT",
    "FOR",
    "FROM",
    "FULL",
    "GROUP",
    "HAVING",
    "HOUR",
    "IF",
    "IN",
    "INNER",
    "INT",
    "INTEGER",
    "INTERVAL",
    "IS",
    "JOIN",
    "LEFT",
    "LIKE",
    "LIMIT",
    "MATCH",
    "MATCH_RECOGNIZE",
    "MEASURES",
    "MINUTE",
    "NOT",
    "NULL",
    "ON",
    "ONE",
    "OR",
    "ORDER",
    "OUTER",
    "PARTITION",
    "PAST",
    "PATTERN",
    "PER",
    "REPLACE",
    "RIGHT",
    "ROW",
    "SECOND",
    "SELECT",
    "SINK",
    "SKIP",
    "SMALLINT",
    "SOURCE",
    "TEXT",
    "THEN",
    "TIMESTAMP",
    "TO",
    "TRUE",
    "UNION",
    "VARCHAR",
    "VIEW",
    "WATERMARK",
    "WHEN",
    "WHERE",
    "WITH",
    "WITHIN",
];

#[cfg(test)]
mod tests {
    #[test]
    fn keywords_are_sorted_upper_case_and_unique() {
        assert!(super::KEYWORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(
            super::KEYWORDS
                .iter()
                .all(|k| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        );
    }
}
