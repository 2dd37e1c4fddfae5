//! [`KEYWORDS`]: the SQL words rules are written with.

/// The keywords of the SQL rules use, Vigil's statements included: what the REPL completes
/// and `vigil fmt` writes in upper case. Sorted.
pub const KEYWORDS: &[&str] = &[
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
    "MINUTE",
    "NOT",
    "NULL",
    "ON",
    "OR",
    "ORDER",
    "OUTER",
    "REPLACE",
    "RIGHT",
    "SECOND",
    "SELECT",
    "SINK",
    "SMALLINT",
    "SOURCE",
    "TEXT",
    "THEN",
    "TIMESTAMP",
    "TRUE",
    "UNION",
    "VARCHAR",
    "VIEW",
    "WATERMARK",
    "WHEN",
    "WHERE",
    "WITH",
];

#[cfg(test)]
mod tests {
    #[test]
    fn keywords_are_sorted_upper_case_and_unique() {
        assert!(super::KEYWORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(
            super::KEYWORDS
                .iter()
                .all(|k| k.chars().all(|c| c.is_ascii_uppercase()))
        );
    }
}
