//! [`StatementSplitter`]: cuts typed or piped text into statements.
//!
//! A statement ends at a `;` outside strings, quoted identifiers and comments. A line that
//! starts with `\` where a statement would start is a meta command, complete on its own.

/// A complete piece of input: a SQL statement or a meta command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// SQL text up to and including its `;`, with the line it starts on (1-based).
    Sql {
        /// The statement.
        text: String,
        /// Its first line in the input.
        line: usize,
    },
    /// A meta command line without the backslash, e.g. `describe sensors`.
    Meta(String),
}

/// Where the scanner stands inside the pending text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Code,
    SingleQuoted,
    DoubleQuoted,
    LineComment,
    BlockComment,
}

/// Accumulates lines and hands out complete statements.
#[derive(Debug, Default)]
pub struct StatementSplitter {
    pending: String,
    /// Line of the first non-blank character of `pending`.
    start_line: Option<usize>,
    lines_seen: usize,
    state: State,
}

impl StatementSplitter {
    /// An empty splitter.
    pub fn new() -> Self {
        Self::default()
    }

    /// True when no statement is in progress (the prompt is a fresh one).
    pub fn is_empty(&self) -> bool {
        self.start_line.is_none()
    }

    /// The text of the statement in progress.
    pub fn pending(&self) -> &str {
        &self.pending
    }

    /// Adds one line of input (without its newline); returns what it completed.
    pub fn push_line(&mut self, line: &str) -> Vec<Input> {
        self.lines_seen += 1;
        if self.is_empty() && self.state == State::Code {
            let trimmed = line.trim_start();
            if let Some(meta) = trimmed.strip_prefix('\\') {
                return vec![Input::Meta(meta.trim().to_string())];
            }
        }
        let mut complete = Vec::new();
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            if self.start_line.is_none() && !c.is_whitespace() && self.state == State::Code {
                let comment = c == '-' && chars.peek() == Some(&'-');
                if !comment {
                    self.start_line = Some(self.lines_seen);
                }
            }
            self.pending.push(c);
            match (self.state, c) {
                (State::Code, '\'') => self.state = State::SingleQuoted,
                (State::Code, '"') => self.state = State::DoubleQuoted,
                (State::Code, '-') if chars.peek() == Some(&'-') => {
                    self.state = State::LineComment;
                }
                (State::Code, '/') if chars.peek() == Some(&'*') => {
                    self.pending.push(chars.next().expect("peeked"));
                    self.state = State::BlockComment;
                }
                (State::Code, ';') => {
                    if let Some(line) = self.start_line.take() {
                        complete.push(Input::Sql {
                            text: std::mem::take(&mut self.pending).trim().to_string(),
                            line,
                        });
                    } else {
                        self.pending.clear();
                    }
                }
                // A doubled quote inside a string is an escaped quote: leaving and
                // re-entering the string gives the same result.
                (State::SingleQuoted, '\'') | (State::DoubleQuoted, '"') => {
                    self.state = State::Code
                }
                (State::BlockComment, '*') if chars.peek() == Some(&'/') => {
                    self.pending.push(chars.next().expect("peeked"));
                    self.state = State::Code;
                }
                _ => {}
            }
        }
        if self.state == State::LineComment {
            self.state = State::Code;
        }
        if self.start_line.is_some() {
            self.pending.push('\n');
        } else if self.state == State::Code {
            // Only blanks and comments so far: nothing to keep.
            self.pending.clear();
        }
        complete
    }

    /// The unfinished statement at the end of input, if any (no `;` was typed).
    pub fn finish(&mut self) -> Option<Input> {
        let line = self.start_line.take()?;
        let text = std::mem::take(&mut self.pending).trim().to_string();
        self.state = State::Code;
        Some(Input::Sql { text, line })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(text: &str) -> Vec<Input> {
        let mut splitter = StatementSplitter::new();
        let mut out: Vec<Input> = text.lines().flat_map(|l| splitter.push_line(l)).collect();
        out.extend(splitter.finish());
        out
    }

    fn sql(text: &str, line: usize) -> Input {
        Input::Sql {
            text: text.to_string(),
            line,
        }
    }

    #[test]
    fn statements_end_at_semicolons_outside_strings_and_comments() {
        let input = "SELECT 'a;b', \"c;d\" FROM s; -- done; really\n\
                     \n\
                     SELECT 1 /* ; */\n  FROM t;SELECT 'it''s;';";
        assert_eq!(
            split(input),
            vec![
                sql("SELECT 'a;b', \"c;d\" FROM s;", 1),
                sql("SELECT 1 /* ; */\n  FROM t;", 3),
                sql("SELECT 'it''s;';", 4),
            ]
        );
    }

    #[test]
    fn comments_before_a_statement_do_not_start_it() {
        let input = "-- rule: x\n/* block\n comment */\nCREATE VIEW v AS\nSELECT 1;";
        assert_eq!(
            split(input),
            vec![sql("/* block\n comment */\nCREATE VIEW v AS\nSELECT 1;", 2)]
        );
    }

    #[test]
    fn meta_commands_are_lines_of_their_own_and_unfinished_text_is_kept() {
        let mut splitter = StatementSplitter::new();
        assert_eq!(
            splitter.push_line("  \\describe sensors "),
            vec![Input::Meta("describe sensors".into())]
        );
        assert!(splitter.push_line("SELECT *").is_empty());
        assert!(!splitter.is_empty(), "a statement is in progress");
        // A backslash inside a statement is text, not a command.
        assert!(splitter.push_line("\\x").is_empty());
        assert_eq!(splitter.finish(), Some(sql("SELECT *\n\\x", 2)));
        assert!(splitter.is_empty());
    }
}
