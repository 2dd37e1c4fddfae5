//! Tab completion: what the word under the cursor may become, from the SQL keywords, the
//! catalog's names, the columns of the relations the statement names, and the functions.

use std::collections::BTreeMap;

use vigil_engine::Engine;
use vigil_engine::sql::KEYWORDS;

/// The meta commands, without their backslash.
pub const META_COMMANDS: &[&str] = &[
    "d", "describe", "explain", "format", "help", "i", "queries", "quit", "sinks", "sources",
    "stop", "timing", "views", "x",
];

/// The window table functions, offered where a relation may go.
const WINDOW_FUNCTIONS: [&str; 4] = ["TUMBLE(", "HOP(", "CUMULATE(", "SESSION("];

/// The columns a window table function adds to its input's.
const WINDOW_COLUMNS: [&str; 2] = ["window_start", "window_end"];

/// Statements the session answers itself, first on a line.
const SESSION_STATEMENTS: [&str; 4] = ["SHOW", "DESCRIBE", "SET", "RESET"];

/// What `SHOW` lists.
const SHOWN: [&str; 6] = ["SOURCES", "VIEWS", "SINKS", "QUERIES", "FUNCTIONS", "ALL"];

/// Keywords after which only a relation name makes sense.
const BEFORE_RELATION: &[&str] = &[
    "FROM",
    "JOIN",
    "TUMBLE(",
    "HOP(",
    "CUMULATE(",
    "SESSION(",
    "EXPLAIN",
];

/// Everything completion can offer, refreshed from the engine after each statement.
#[derive(Debug, Default, Clone)]
pub struct Vocabulary {
    /// Sources and views with their column names.
    relations: BTreeMap<String, Vec<String>>,
    sinks: Vec<String>,
    functions: Vec<String>,
}

impl Vocabulary {
    /// The names `engine`'s catalog and session know now.
    pub fn from_engine(engine: &Engine) -> Self {
        let catalog = engine.catalog();
        let relations = catalog
            .sources()
            .keys()
            .chain(catalog.views().keys())
            .map(|name| {
                let columns = catalog
                    .relation_schema(name)
                    .map(|schema| schema.fields().iter().map(|f| f.name().clone()).collect())
                    .unwrap_or_default();
                (name.clone(), columns)
            })
            .collect();
        Self {
            relations,
            sinks: catalog.sinks().keys().cloned().collect(),
            functions: catalog.function_names(),
        }
    }

    /// Completes the word ending at `pos` in `line`. `statement` is the text of the
    /// statement's earlier lines, whose relation names bring their columns into play.
    /// Returns where the word starts and the candidates, best first.
    pub fn complete(&self, statement: &str, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !is_word_char(*c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let word = &before[start..];

        // A meta command: `\de<TAB>`, then `\describe sen<TAB>`.
        if statement.trim().is_empty()
            && let Some(command_line) = before.trim_start().strip_prefix('\\')
        {
            return match command_line.split_once(char::is_whitespace) {
                // With the space its argument needs.
                None => (
                    start,
                    prefixed(word, META_COMMANDS.iter().map(|c| format!("{c} "))),
                ),
                Some(("describe" | "d", _)) => {
                    (start, prefixed(word, self.relations.keys().cloned()))
                }
                Some(("format", _)) => (start, prefixed(word, ["table", "json"].map(String::from))),
                Some(("timing", _)) => (start, prefixed(word, ["on", "off"].map(String::from))),
                Some(_) => (start, Vec::new()),
            };
        }

        let previous = previous_token(statement, before, start);
        let relations = self.relations.keys().cloned();
        if previous.eq_ignore_ascii_case("FROM") || previous.eq_ignore_ascii_case("JOIN") {
            let windows = WINDOW_FUNCTIONS.map(|f| in_case_of(word, f));
            return (start, prefixed(word, relations.chain(windows)));
        }
        if BEFORE_RELATION
            .iter()
            .any(|k| previous.eq_ignore_ascii_case(k))
        {
            return (start, prefixed(word, relations));
        }
        if previous.eq_ignore_ascii_case("SHOW") {
            return (start, prefixed(word, SHOWN.map(|k| in_case_of(word, k))));
        }
        if previous.eq_ignore_ascii_case("DESCRIBE") {
            let names = relations.chain(self.sinks.iter().cloned());
            return (start, prefixed(word, names));
        }
        if previous.eq_ignore_ascii_case("CREATE") {
            let kinds = ["SOURCE", "VIEW", "SINK", "OR REPLACE"];
            return (start, prefixed(word, kinds.map(|k| in_case_of(word, k))));
        }
        if word.is_empty() {
            // Nothing typed: every keyword and function would only be noise.
            return (start, self.named_columns(statement, line));
        }
        let mut candidates = self.named_columns(statement, line);
        if statement.trim().is_empty() && before.trim_start().len() == word.len() {
            candidates.extend(SESSION_STATEMENTS.map(|k| in_case_of(word, k)));
        }
        candidates.extend(self.functions.iter().map(|f| format!("{f}(")));
        candidates.extend(relations);
        candidates.extend(self.sinks.iter().cloned());
        candidates.extend(KEYWORDS.iter().map(|k| in_case_of(word, k)));
        (start, prefixed(word, candidates))
    }

    /// Columns of the relations the statement names, in their declared order.
    fn named_columns(&self, statement: &str, line: &str) -> Vec<String> {
        let words: Vec<String> = statement
            .split(|c: char| !is_word_char(c))
            .chain(line.split(|c: char| !is_word_char(c)))
            .map(str::to_ascii_lowercase)
            .collect();
        let mut columns: Vec<String> = Vec::new();
        for (name, cols) in &self.relations {
            if words.iter().any(|w| w == name) {
                for col in cols {
                    if !columns.contains(col) {
                        columns.push(col.clone());
                    }
                }
            }
        }
        // A window over a relation adds its bounds to the relation's columns.
        if words
            .iter()
            .any(|w| vigil_engine::sql::is_window_function(w))
        {
            columns.extend(WINDOW_COLUMNS.map(String::from));
        }
        columns
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// The token before the word being completed, looking back into earlier lines; an opening
/// parenthesis stays attached to the word before it (`TUMBLE(`).
fn previous_token(statement: &str, before: &str, start: usize) -> String {
    let text = format!("{statement}\n{}", &before[..start]);
    let trimmed = text.trim_end();
    let token_start = trimmed
        .char_indices()
        .rev()
        .find(|(_, c)| !is_word_char(*c) && *c != '(')
        .map_or(0, |(i, c)| i + c.len_utf8());
    trimmed[token_start..].to_string()
}

/// The candidates that start with `word`, ignoring case, without duplicates.
fn prefixed(word: &str, candidates: impl IntoIterator<Item = String>) -> Vec<String> {
    let lower = word.to_lowercase();
    let mut out: Vec<String> = Vec::new();
    for candidate in candidates {
        if candidate.to_lowercase().starts_with(&lower) && !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// A keyword in the case the user is typing: lower case after a lower-case start.
fn in_case_of(word: &str, keyword: &str) -> String {
    if word.chars().next().is_some_and(char::is_lowercase) {
        keyword.to_lowercase()
    } else {
        keyword.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocabulary() -> Vocabulary {
        Vocabulary {
            relations: BTreeMap::from([
                (
                    "sensors".to_string(),
                    vec!["sensor_id".into(), "temperature".into(), "ts".into()],
                ),
                ("logins".to_string(), vec!["user_id".into(), "ts".into()]),
            ]),
            sinks: vec!["alerts".into()],
            functions: vec!["avg".into(), "count".into(), "date_trunc".into()],
        }
    }

    fn complete(statement: &str, line: &str) -> Vec<String> {
        let (start, candidates) = vocabulary().complete(statement, line, line.len());
        let word = &line[start..];
        assert!(
            candidates
                .iter()
                .all(|c| c.to_lowercase().starts_with(&word.to_lowercase())),
            "{candidates:?} do not all extend '{word}'"
        );
        candidates
    }

    #[test]
    fn window_functions_come_after_from_and_bring_their_bounds() {
        assert_eq!(complete("", "SELECT * FROM TU"), vec!["TUMBLE("]);
        assert_eq!(complete("", "select * from h"), vec!["hop("]);
        let statement = "SELECT count(*) FROM TUMBLE(sensors, ts, INTERVAL '1' MINUTE)\n";
        assert_eq!(
            complete(statement, "GROUP BY window_s"),
            vec!["window_start"]
        );
        assert_eq!(complete(statement, "GROUP BY window_e"), vec!["window_end"]);
    }

    #[test]
    fn session_statements_and_what_they_take() {
        assert_eq!(complete("", "SHO"), vec!["SHOW"]);
        assert_eq!(complete("", "SHOW SI"), vec!["SINKS"]);
        assert_eq!(complete("", "DESCRIBE al"), vec!["alerts"]);
        assert_eq!(complete("", "\\x"), vec!["x "]);
    }

    #[test]
    fn keywords_follow_the_case_typed() {
        assert_eq!(complete("", "SEL"), vec!["SELECT"]);
        assert_eq!(complete("", "sel"), vec!["select"]);
    }

    #[test]
    fn relation_names_after_from_and_window_functions() {
        assert_eq!(complete("", "SELECT * FROM s"), vec!["sensors", "session("]);
        assert_eq!(complete("SELECT *\n", "FROM TUMBLE(l"), vec!["logins"]);
        assert_eq!(
            complete("SELECT * FROM", " "),
            vec![
                "logins",
                "sensors",
                "TUMBLE(",
                "HOP(",
                "CUMULATE(",
                "SESSION("
            ]
        );
    }

    #[test]
    fn columns_of_the_named_source_come_first() {
        let statement = "SELECT count(*)\nFROM sensors\n";
        assert_eq!(complete(statement, "WHERE te"), vec!["temperature", "text"]);
        assert_eq!(
            complete(statement, "WHERE "),
            vec!["sensor_id", "temperature", "ts"]
        );
        // Columns of sources the statement does not name are not offered.
        assert!(complete(statement, "WHERE us").is_empty());
    }

    #[test]
    fn functions_open_their_parenthesis() {
        assert_eq!(complete("", "SELECT cou"), vec!["count("]);
        assert_eq!(complete("", "SELECT date_"), vec!["date_trunc("]);
    }

    #[test]
    fn create_offers_the_object_kinds() {
        assert_eq!(complete("", "CREATE S"), vec!["SOURCE", "SINK"]);
        assert_eq!(complete("", "create v"), vec!["view"]);
    }

    #[test]
    fn meta_commands_and_their_arguments() {
        assert_eq!(complete("", "\\de"), vec!["describe "]);
        assert_eq!(complete("", "\\describe lo"), vec!["logins"]);
        assert_eq!(complete("", "\\format j"), vec!["json"]);
        // Inside a statement a backslash is not a command.
        assert_eq!(complete("SELECT 1\n", "\\de"), vec!["define", "desc"]);
    }
}
