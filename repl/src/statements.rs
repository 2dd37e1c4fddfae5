//! Statements the session answers itself rather than the engine, spelled as Flink SQL and
//! ksqlDB users type them: `SHOW SOURCES | VIEWS | SINKS | QUERIES | FUNCTIONS`,
//! `SHOW name`, `DESCRIBE name`, `SET name = value`, `RESET [name]`.

/// A statement about the session or its catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionStatement {
    /// `SHOW SOURCES` and the like.
    Show(Listing),
    /// `SHOW name`: one setting.
    ShowSetting(String),
    /// `DESCRIBE name` (`DESC name`): a source, view or sink.
    Describe(String),
    /// `SET name = value` (or `SET name TO value`; either may be quoted, as Flink quotes
    /// them).
    Set {
        /// The setting.
        name: String,
        /// Its new value, unquoted.
        value: String,
    },
    /// `RESET name`, or `RESET` for every setting.
    Reset(Option<String>),
}

/// What a `SHOW` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// `SHOW SOURCES` (ksqlDB's `SHOW STREAMS` and `SHOW TABLES` too).
    Sources,
    /// `SHOW VIEWS`.
    Views,
    /// `SHOW SINKS`.
    Sinks,
    /// `SHOW QUERIES`: the background queries.
    Queries,
    /// `SHOW FUNCTIONS`.
    Functions,
    /// `SHOW ALL` or `SET` alone: every setting.
    Settings,
}

/// The session statement `text` is, if it is one: `None` for SQL the engine runs, an error
/// for a session statement written wrong.
pub fn parse(text: &str) -> Option<Result<SessionStatement, String>> {
    let text = text.trim().trim_end_matches(';').trim();
    let (first, rest) = split_word(text);
    match first.to_ascii_uppercase().as_str() {
        "SHOW" => Some(show(rest)),
        "DESCRIBE" | "DESC" => Some(describe(rest)),
        "SET" => Some(set(rest)),
        "RESET" => Some(Ok(SessionStatement::Reset(
            (!rest.is_empty()).then(|| setting_name(rest)),
        ))),
        _ => None,
    }
}

fn show(rest: &str) -> Result<SessionStatement, String> {
    let listing = match rest.to_ascii_uppercase().as_str() {
        "SOURCES" | "STREAMS" | "TABLES" => Listing::Sources,
        "VIEWS" => Listing::Views,
        "SINKS" => Listing::Sinks,
        "QUERIES" | "JOBS" => Listing::Queries,
        "FUNCTIONS" | "USER FUNCTIONS" => Listing::Functions,
        "ALL" => Listing::Settings,
        "" => {
            return Err(
                "SHOW takes SOURCES, VIEWS, SINKS, QUERIES, FUNCTIONS, ALL or a setting".into(),
            );
        }
        _ if rest.contains(char::is_whitespace) => {
            return Err(format!(
                "cannot SHOW {rest}: SHOW takes SOURCES, VIEWS, SINKS, QUERIES, FUNCTIONS, \
                 ALL or a setting"
            ));
        }
        _ => return Ok(SessionStatement::ShowSetting(setting_name(rest))),
    };
    Ok(SessionStatement::Show(listing))
}

fn describe(rest: &str) -> Result<SessionStatement, String> {
    // ksqlDB's DESCRIBE ... EXTENDED shows the same here.
    let (name, extra) = split_word(rest);
    if name.is_empty() || !(extra.is_empty() || extra.eq_ignore_ascii_case("extended")) {
        return Err("DESCRIBE takes the name of a source, view or sink".into());
    }
    Ok(SessionStatement::Describe(
        unquote(name).to_ascii_lowercase(),
    ))
}

fn set(rest: &str) -> Result<SessionStatement, String> {
    if rest.is_empty() {
        return Ok(SessionStatement::Show(Listing::Settings));
    }
    let (name, value) = match rest.split_once('=') {
        Some((name, value)) => (name.trim(), value.trim()),
        None => {
            let (name, rest) = split_word(rest);
            let (to, value) = split_word(rest);
            if !to.eq_ignore_ascii_case("to") || value.is_empty() {
                return Err(format!(
                    "SET takes name = value, as in SET format = 'json'; not SET {rest}"
                ));
            }
            (name, value)
        }
    };
    if name.is_empty() || value.is_empty() {
        return Err("SET takes name = value, as in SET format = 'json'".into());
    }
    Ok(SessionStatement::Set {
        name: setting_name(name),
        value: unquote(value).to_string(),
    })
}

/// A setting's name in one spelling: unquoted, lower case, `-` and `.` as `_`
/// (`'sql-client.execution.result-mode'` is `sql_client_execution_result_mode`).
fn setting_name(text: &str) -> String {
    unquote(text.trim())
        .to_ascii_lowercase()
        .replace(['-', '.'], "_")
}

fn unquote(text: &str) -> &str {
    ['\'', '"', '`']
        .iter()
        .find_map(|q| text.strip_prefix(*q).and_then(|t| t.strip_suffix(*q)))
        .unwrap_or(text)
}

/// The first word of `text` and the rest, trimmed.
fn split_word(text: &str) -> (&str, &str) {
    match text.split_once(char::is_whitespace) {
        Some((word, rest)) => (word, rest.trim()),
        None => (text, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> SessionStatement {
        parse(text)
            .expect("a session statement")
            .expect("well formed")
    }

    #[test]
    fn show_lists_the_catalog_as_flink_and_ksqldb_spell_it() {
        assert_eq!(
            parsed("SHOW SOURCES;"),
            SessionStatement::Show(Listing::Sources)
        );
        assert_eq!(
            parsed("show streams"),
            SessionStatement::Show(Listing::Sources)
        );
        assert_eq!(parsed("SHOW sinks"), SessionStatement::Show(Listing::Sinks));
        assert_eq!(
            parsed("SHOW QUERIES"),
            SessionStatement::Show(Listing::Queries)
        );
        assert_eq!(
            parsed("SHOW FUNCTIONS"),
            SessionStatement::Show(Listing::Functions)
        );
        assert_eq!(
            parsed("SHOW batch_size"),
            SessionStatement::ShowSetting("batch_size".into())
        );
        assert!(parse("SHOW").unwrap().is_err());
    }

    #[test]
    fn set_takes_equals_or_to_and_quoted_flink_names() {
        assert_eq!(
            parsed("SET format = 'json';"),
            SessionStatement::Set {
                name: "format".into(),
                value: "json".into()
            }
        );
        assert_eq!(
            parsed("SET 'sql-client.execution.result-mode' = 'table'"),
            SessionStatement::Set {
                name: "sql_client_execution_result_mode".into(),
                value: "table".into()
            }
        );
        assert_eq!(
            parsed("set batch_size to 7"),
            SessionStatement::Set {
                name: "batch_size".into(),
                value: "7".into()
            }
        );
        assert_eq!(parsed("SET"), SessionStatement::Show(Listing::Settings));
        assert!(parse("SET format").unwrap().is_err());
        assert_eq!(parsed("RESET"), SessionStatement::Reset(None));
        assert_eq!(
            parsed("RESET Format;"),
            SessionStatement::Reset(Some("format".into()))
        );
    }

    #[test]
    fn describe_names_one_object_and_other_sql_is_the_engines() {
        assert_eq!(
            parsed("DESCRIBE Sensors"),
            SessionStatement::Describe("sensors".into())
        );
        assert_eq!(
            parsed("DESC alerts EXTENDED"),
            SessionStatement::Describe("alerts".into())
        );
        assert!(parse("DESCRIBE").unwrap().is_err());
        assert!(parse("SELECT 1").is_none());
        assert!(parse("CREATE SOURCE s (a INT)").is_none());
    }
}
