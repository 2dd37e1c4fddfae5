//! [`StreamParser`]: sqlparser plus Vigil's statements, keeping positions for errors.

use datafusion::sql::sqlparser::ast::{self, ColumnDef, Ident, ObjectName};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::Options;
use super::emit_clause::rewrite_emit_clauses;
use super::flink_windows::rewrite_flink_windows;
use super::match_within::rewrite_match_within;
use crate::error::{Error, Location, Result, SqlError};

/// `CREATE SOURCE name (columns, WATERMARK FOR col AS expr) WITH (options)`.
#[derive(Debug, Clone)]
pub struct CreateSource {
    /// Source name.
    pub name: Ident,
    /// Declared columns.
    pub columns: Vec<ColumnDef>,
    /// The event-time watermark, when declared.
    pub watermark: Option<WatermarkDef>,
    /// Connector options.
    pub options: Options,
    /// `OR REPLACE` was given.
    pub or_replace: bool,
    /// For `CREATE TABLE`, the primary key's columns: the table is the latest row per key.
    /// Empty for a source.
    pub primary_key: Vec<Ident>,
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkDef {
    /// The event-time column.
    pub column: Ident,
    /// The watermark expression, usually `column - INTERVAL '5' SECOND`.
    pub expr: ast::Expr,
}

/// `CREATE SINK name [WITH (options)] [AS query]`.
///
/// Without a query the sink is only declared: a profile says where a rule's alerts go, or
/// a source names it as its late-events sink. Without options, a query attaches to the sink
/// declared under the same name.
#[derive(Debug, Clone)]
pub struct CreateSink {
    /// Sink name.
    pub name: Ident,
    /// Connector options.
    pub options: Options,
    /// The query whose results the sink receives.
    pub query: Option<Box<ast::Query>>,
    /// `OR REPLACE` was given.
    pub or_replace: bool,
}

/// `CREATE [OR REPLACE] VIEW name AS query`.
#[derive(Debug, Clone)]
pub struct CreateView {
    /// View name.
    pub name: ObjectName,
    /// The view's query.
    pub query: Box<ast::Query>,
    /// `OR REPLACE` was given.
    pub or_replace: bool,
}

/// A statement of Vigil's dialect.
// Statements are parsed once each; their size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Statement {
    /// Declares a source.
    CreateSource(CreateSource),
    /// Declares a sink, usually with the query that feeds it.
    CreateSink(CreateSink),
    /// Declares a view.
    CreateView(CreateView),
    /// A continuous query whose results go to the caller.
    Query(Box<ast::Query>),
    /// `EXPLAIN statement`: the operator graph.
    Explain(Box<Statement>),
    /// `DROP SOURCE|SINK|VIEW name [CASCADE]`.
    Drop {
        /// What kind of object.
        kind: String,
        /// Its name.
        name: String,
        /// `IF EXISTS` was given.
        if_exists: bool,
        /// `CASCADE` was given: stop the queries that use the object.
        cascade: bool,
    },
}

/// A statement with the text and position it came from.
#[derive(Debug, Clone)]
pub struct ParsedStatement {
    /// The statement.
    pub statement: Statement,
    /// Its SQL text.
    pub sql: String,
    /// Where it starts in the input.
    pub location: Location,
}

/// Parses Vigil SQL. Our DDL is parsed here; everything else is delegated to sqlparser, the
/// way DataFusion's `DFParser` extends it.
pub struct StreamParser<'a> {
    parser: Parser<'a>,
    sql: &'a str,
}

impl<'a> StreamParser<'a> {
    /// Parses every statement of `sql`, separated by semicolons. A statement over the
    /// [`limits`](super::limits) is refused with its position, before anything plans it.
    pub fn parse_sql(sql: &'a str) -> Result<Vec<ParsedStatement>> {
        // Deep statements are parsed (and, when refused, dropped) on a large stack.
        crate::deep_stack::on_planning_stack(async { Self::parse_within_limits(sql) })
            .map_err(|e| Error::Execution(format!("cannot start a planning thread: {e}")))?
    }

    fn parse_within_limits(sql: &'a str) -> Result<Vec<ParsedStatement>> {
        let statements = Self::parse_all(sql)?;
        for statement in &statements {
            if let Some((problem, at)) = super::limits::check(&statement.statement, &statement.sql)
            {
                let location = at.unwrap_or(statement.location);
                return Err(Error::Sql(SqlError::new(problem, Some(location))));
            }
        }
        Ok(statements)
    }

    fn parse_all(sql: &'a str) -> Result<Vec<ParsedStatement>> {
        static DIALECT: GenericDialect = GenericDialect {};
        let tokens = Tokenizer::new(&DIALECT, sql)
            .with_unescape(true)
            .tokenize_with_location()
            .map_err(|e| parser_error(e.into()))?;
        let tokens = rewrite_flink_windows(rewrite_match_within(without_as_of(tokens)));
        let parser = Parser::new(&DIALECT).with_tokens_with_locations(rewrite_emit_clauses(tokens));
        let mut this = StreamParser { parser, sql };
        let mut out = Vec::new();
        loop {
            while this.parser.consume_token(&Token::SemiColon) {}
            let start = this.parser.peek_token();
            if start.token == Token::EOF {
                break;
            }
            let statement = this
                .parse_statement()
                .map_err(|e| this.foreign_or(e, &start))?;
            let end = this.parser.peek_token();
            if end.token != Token::EOF && end.token != Token::SemiColon {
                let e = ParserError::ParserError(format!(
                    "Expected: end of statement, found: {}{}",
                    end.token,
                    at(&end)
                ));
                return Err(this.foreign_or(e, &start));
            }
            let location = Location {
                line: start.span.start.line,
                column: start.span.start.column,
            };
            let text = this.slice(&start, &end);
            out.push(ParsedStatement {
                statement,
                sql: text,
                location,
            });
        }
        Ok(out)
    }

    /// The error of a statement starting at `start` that does not parse: a pointer to
    /// Vigil's form when it is written in another engine's dialect, else `e`.
    fn foreign_or(&self, e: ParserError, start: &TokenWithSpan) -> Error {
        let from = offset_of(self.sql, start.span.start.line, start.span.start.column);
        let rest = &self.sql[from..];
        let statement = rest.split(';').next().unwrap_or(rest);
        match super::foreign::recognise(statement) {
            Some((at, what, help)) => {
                let location = location_of(self.sql, from + at);
                Error::Sql(SqlError::new(what, Some(location)).with_help(help))
            }
            None => parser_error(e),
        }
    }

    /// The text between two tokens, trimmed.
    fn slice(&self, start: &TokenWithSpan, end: &TokenWithSpan) -> String {
        let from = offset_of(self.sql, start.span.start.line, start.span.start.column);
        let to = if end.token == Token::EOF {
            self.sql.len()
        } else {
            offset_of(self.sql, end.span.start.line, end.span.start.column)
        };
        self.sql[from.min(to)..to].trim().to_string()
    }

    fn parse_statement(&mut self) -> Result<Statement, ParserError> {
        if self.parser.parse_keyword(Keyword::EXPLAIN) {
            if self.peek_word(0, "EXPLAIN") {
                let token = self.parser.peek_token();
                return Err(ParserError::ParserError(format!(
                    "Expected: a statement to explain, found: EXPLAIN{}",
                    at(&token)
                )));
            }
            return Ok(Statement::Explain(Box::new(self.parse_statement()?)));
        }
        if self.peek_word(0, "CREATE") {
            let replace = self.peek_word(1, "OR") && self.peek_word(2, "REPLACE");
            let kind_at = if replace { 3 } else { 1 };
            let kind = ["SOURCE", "SINK", "TABLE"]
                .into_iter()
                .find(|k| self.peek_word(kind_at, k));
            if let Some(kind) = kind {
                for _ in 0..=kind_at {
                    self.parser.next_token();
                }
                return match kind {
                    "SOURCE" => self
                        .parse_create_source(replace)
                        .map(Statement::CreateSource),
                    "TABLE" => self
                        .parse_create_table(replace)
                        .map(Statement::CreateSource),
                    _ => self.parse_create_sink(replace).map(Statement::CreateSink),
                };
            }
        }
        if self.peek_word(0, "DROP") && (self.peek_word(1, "SOURCE") || self.peek_word(1, "SINK")) {
            self.parser.next_token();
            let kind = self
                .parser
                .next_token()
                .token
                .to_string()
                .to_ascii_lowercase();
            let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
            let name = self.parser.parse_identifier()?.value;
            let cascade = self.parser.parse_keyword(Keyword::CASCADE);
            return Ok(Statement::Drop {
                kind,
                name,
                if_exists,
                cascade,
            });
        }
        let start = self.parser.peek_token();
        match self.parser.parse_statement()? {
            ast::Statement::Query(query) => Ok(Statement::Query(query)),
            ast::Statement::Insert(insert) => insert_as_sink(insert),
            ast::Statement::CreateView(view) => Ok(Statement::CreateView(CreateView {
                name: view.name,
                query: view.query,
                or_replace: view.or_replace,
            })),
            ast::Statement::Drop {
                object_type: ast::ObjectType::View,
                if_exists,
                names,
                cascade,
                ..
            } => {
                let name = names.first().map(|n| n.to_string()).unwrap_or_default();
                Ok(Statement::Drop {
                    kind: "view".into(),
                    name,
                    if_exists,
                    cascade,
                })
            }
            other => Err(ParserError::ParserError(format!(
                "Expected: CREATE SOURCE, CREATE SINK, CREATE VIEW, SELECT or EXPLAIN, found: {}{}",
                first_words(&other.to_string()),
                at(&start)
            ))),
        }
    }

    /// `CREATE TABLE name (col TYPE [PRIMARY KEY], ..., [PRIMARY KEY (col, ...) [NOT
    /// ENFORCED]]) WITH (...)`: a source read as the latest row per primary key.
    fn parse_create_table(&mut self, or_replace: bool) -> Result<CreateSource, ParserError> {
        let start = self.parser.peek_token();
        let mut table = self.parse_create_source(or_replace)?;
        for column in &mut table.columns {
            let before = column.options.len();
            column
                .options
                .retain(|o| !matches!(o.option, ast::ColumnOption::PrimaryKey(_)));
            if column.options.len() < before {
                table.primary_key.push(column.name.clone());
            }
        }
        if table.primary_key.is_empty() {
            return Err(ParserError::ParserError(format!(
                "Expected: a PRIMARY KEY for table '{}' (a table is the latest row per key; \
                 for a stream of events, write CREATE SOURCE), found none{}",
                table.name,
                at(&start)
            )));
        }
        if table.watermark.is_some() {
            return Err(ParserError::ParserError(format!(
                "Expected: no WATERMARK in CREATE TABLE '{}' (a lookup join reads the table's \
                 current rows, not its event time){}",
                table.name,
                at(&start)
            )));
        }
        Ok(table)
    }

    fn parse_create_source(&mut self, or_replace: bool) -> Result<CreateSource, ParserError> {
        let name = self.parser.parse_identifier()?;
        self.parser.expect_token(&Token::LParen)?;
        let mut columns = Vec::new();
        let mut watermark = None;
        let mut primary_key = Vec::new();
        loop {
            if self.peek_word(0, "PRIMARY") && self.peek_word(1, "KEY") {
                self.parser.next_token();
                self.parser.next_token();
                primary_key = self.parser.parse_parenthesized_column_list(
                    datafusion::sql::sqlparser::parser::IsOptional::Mandatory,
                    false,
                )?;
                // Flink's words for a key it does not check; neither does Vigil.
                let _not_enforced = self
                    .parser
                    .parse_keywords(&[Keyword::NOT, Keyword::ENFORCED]);
            } else if self.peek_word(0, "WATERMARK") {
                self.parser.next_token();
                self.parser.expect_keyword(Keyword::FOR)?;
                let column = self.parser.parse_identifier()?;
                self.parser.expect_keyword(Keyword::AS)?;
                let expr = self.parser.parse_expr()?;
                watermark = Some(WatermarkDef { column, expr });
            } else {
                columns.push(self.parser.parse_column_def()?);
            }
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        self.parser.expect_token(&Token::RParen)?;
        let options = self.parse_with_options()?;
        Ok(CreateSource {
            name,
            columns,
            watermark,
            options,
            or_replace,
            primary_key,
        })
    }

    fn parse_create_sink(&mut self, or_replace: bool) -> Result<CreateSink, ParserError> {
        let name = self.parser.parse_identifier()?;
        let options = if self.parser.peek_keyword(Keyword::WITH) {
            self.parse_with_options()?
        } else {
            Options::default()
        };
        let query = if self.parser.parse_keyword(Keyword::AS) {
            Some(self.parser.parse_query()?)
        } else {
            None
        };
        Ok(CreateSink {
            name,
            options,
            query,
            or_replace,
        })
    }

    /// `WITH ( key = value, ... )` where a key is a word, dotted words or a quoted string and
    /// a value a string, number or word.
    fn parse_with_options(&mut self) -> Result<Options, ParserError> {
        self.parser.expect_keyword(Keyword::WITH)?;
        self.parser.expect_token(&Token::LParen)?;
        let mut pairs = Vec::new();
        loop {
            let key = self.parse_option_key()?;
            self.parser.expect_token(&Token::Eq)?;
            let tok = self.parser.next_token();
            let value = match &tok.token {
                Token::SingleQuotedString(s) => s.clone(),
                Token::Number(n, _) => n.clone(),
                Token::Word(w) => w.value.clone(),
                _ => {
                    return self
                        .parser
                        .expected("an option value ('text', number or word)", tok);
                }
            };
            pairs.push((key, value));
            if !self.parser.consume_token(&Token::Comma) {
                break;
            }
        }
        self.parser.expect_token(&Token::RParen)?;
        Ok(Options::new(pairs))
    }

    fn parse_option_key(&mut self) -> Result<String, ParserError> {
        let tok = self.parser.next_token();
        match tok.token {
            Token::SingleQuotedString(s) => Ok(s),
            Token::Word(w) => {
                let mut key = w.value;
                while self.parser.consume_token(&Token::Period) {
                    key.push('.');
                    key.push_str(&self.parser.parse_identifier()?.value);
                }
                Ok(key)
            }
            _ => self.parser.expected("an option name", tok),
        }
    }

    /// True when the `n`th next token is the unquoted word `word`.
    fn peek_word(&self, n: usize, word: &str) -> bool {
        match self.parser.peek_nth_token(n).token {
            Token::Word(w) => w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word),
            _ => false,
        }
    }
}

/// The tokens without Flink's `FOR SYSTEM_TIME AS OF s.ts` after a table in a join: a
/// lookup join reads the table's current row whatever time it is written with.
fn without_as_of(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let is_word = |t: &TokenWithSpan, word: &str| matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word));
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let solid: Vec<usize> = (i..tokens.len())
            .filter(|j| !matches!(tokens[*j].token, Token::Whitespace(_)))
            .take(5)
            .collect();
        let clause = solid.len() == 5
            && ["FOR", "SYSTEM_TIME", "AS", "OF"]
                .iter()
                .zip(&solid)
                .all(|(word, j)| is_word(&tokens[*j], word))
            && matches!(tokens[solid[4]].token, Token::Word(_));
        if !clause {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        // Skip the clause: its words and a dotted column name.
        i = solid[4] + 1;
        while i + 1 < tokens.len()
            && tokens[i].token == Token::Period
            && matches!(tokens[i + 1].token, Token::Word(_))
        {
            i += 2;
        }
        // Flink's processing time: AS OF PROCTIME().
        if i + 1 < tokens.len()
            && tokens[i].token == Token::LParen
            && tokens[i + 1].token == Token::RParen
        {
            i += 2;
        }
    }
    out
}

/// `INSERT INTO sink SELECT ...`, as Flink writes a query into a declared sink: the same as
/// `CREATE SINK sink AS SELECT ...`.
fn insert_as_sink(insert: ast::Insert) -> Result<Statement, ParserError> {
    let refused = |why: &str| Err(ParserError::ParserError(why.to_string()));
    let ast::TableObject::TableName(name) = &insert.table else {
        return refused("INSERT INTO takes the name of a declared sink");
    };
    if !insert.columns.is_empty() {
        return refused(
            "INSERT INTO sink (columns) is not supported: name the columns in the SELECT list",
        );
    }
    let (Some(ast::ObjectNamePart::Identifier(sink)), Some(query)) = (name.0.last(), insert.source)
    else {
        return refused("INSERT INTO takes a declared sink and a SELECT");
    };
    Ok(Statement::CreateSink(CreateSink {
        name: sink.clone(),
        options: Options::default(),
        query: Some(query),
        or_replace: false,
    }))
}

/// The 1-based line and column of byte `offset` of `sql`.
fn location_of(sql: &str, offset: usize) -> Location {
    let before = &sql[..offset.min(sql.len())];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() as u64 + 1;
    Location { line, column }
}

fn at(tok: &TokenWithSpan) -> String {
    format!(
        " at Line: {}, Column: {}",
        tok.span.start.line, tok.span.start.column
    )
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
}

/// Byte offset of a 1-based line/column position.
fn offset_of(sql: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, text) in sql.split_inclusive('\n').enumerate() {
        if i as u64 + 1 == line {
            return offset
                + text
                    .char_indices()
                    .nth(column.saturating_sub(1) as usize)
                    .map_or(text.len(), |(b, _)| b);
        }
        offset += text.len();
    }
    sql.len()
}

/// Turns sqlparser's "... at Line: L, Column: C" message into a positioned [`SqlError`].
pub(crate) fn parser_error(e: ParserError) -> Error {
    let text = match e {
        ParserError::ParserError(s) | ParserError::TokenizerError(s) => s,
        ParserError::RecursionLimitExceeded => "statement nests too deeply".to_string(),
    };
    let (message, location) = match text.rfind(" at Line: ") {
        Some(pos) => (text[..pos].to_string(), parse_line_column(&text[pos..])),
        None => (text, None),
    };
    let message = message
        .replace("Expected: ", "expected ")
        .replace(", found: ", ", found ");
    Error::Sql(SqlError::new(message, location))
}

fn parse_line_column(tail: &str) -> Option<Location> {
    let mut numbers = tail
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u64>());
    let line = numbers.next()?.ok()?;
    let column = numbers.next()?.ok()?;
    Some(Location { line, column })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_create_source_with_watermark_and_options() {
        let sql = "CREATE SOURCE s (id TEXT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)\n\
                   WITH (connector = 'file', path = 'x.jsonl', 'properties.a.b' = 1);";
        let stmts = StreamParser::parse_sql(sql).unwrap();
        let Statement::CreateSource(src) = &stmts[0].statement else {
            panic!()
        };
        assert_eq!(src.name.value, "s");
        assert_eq!(src.columns.len(), 2);
        assert_eq!(src.watermark.as_ref().unwrap().column.value, "ts");
        assert_eq!(src.options.get("path"), Some("x.jsonl"));
        assert_eq!(src.options.get("properties.a.b"), Some("1"));
    }

    #[test]
    fn splits_statements_and_keeps_their_text_and_position() {
        let sql = "CREATE VIEW v AS SELECT 1;\n  SELECT * FROM v;";
        let stmts = StreamParser::parse_sql(sql).unwrap();
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[1].sql, "SELECT * FROM v");
        assert_eq!(stmts[1].location, Location { line: 2, column: 3 });
        assert!(matches!(stmts[0].statement, Statement::CreateView(_)));
    }

    #[test]
    fn sink_without_query_is_a_declaration() {
        let stmts =
            StreamParser::parse_sql("CREATE SINK late WITH (connector = 'stdout')").unwrap();
        let Statement::CreateSink(sink) = &stmts[0].statement else {
            panic!()
        };
        assert!(sink.query.is_none());
    }

    #[test]
    fn insert_into_a_sink_is_a_sink_written_by_the_query() {
        let parsed = StreamParser::parse_sql("INSERT INTO alerts SELECT a FROM t").unwrap();
        let Statement::CreateSink(sink) = &parsed[0].statement else {
            panic!("{:?}", parsed[0].statement);
        };
        assert_eq!(sink.name.value, "alerts");
        assert!(sink.query.is_some() && sink.options.iter().next().is_none());
    }

    #[test]
    fn other_dialects_get_a_pointer_to_vigils_form_where_they_are_written() {
        let sql = "SELECT *\nFROM t EMIT\n  CHANGES";
        let Err(Error::Sql(e)) = StreamParser::parse_sql(sql) else {
            panic!("parsed");
        };
        assert!(e.message.contains("EMIT CHANGES"), "{}", e.message);
        assert_eq!(e.location, Some(Location { line: 2, column: 8 }));
        assert!(e.help.unwrap().contains("drop it"));
        let Err(Error::Sql(e)) = StreamParser::parse_sql("SELECT a FROM t EMIT CHANGES;") else {
            panic!("parsed");
        };
        assert!(e.message.contains("EMIT CHANGES"), "{}", e.message);
    }

    #[test]
    fn errors_name_line_column_and_expectation() {
        let err = StreamParser::parse_sql("SELECT (1 +\n) FROM t").unwrap_err();
        let sql = err.as_sql().unwrap();
        assert_eq!(sql.location, Some(Location { line: 2, column: 1 }));
        assert!(sql.message.contains("expected"), "{}", sql.message);
        let err = StreamParser::parse_sql("SELECT 1;\n  DELETE FROM t;").unwrap_err();
        let sql = err.as_sql().unwrap();
        assert_eq!(sql.location, Some(Location { line: 2, column: 3 }));
        assert!(
            sql.message.ends_with("found DELETE FROM"),
            "{}",
            sql.message
        );
    }

    #[test]
    fn bad_option_value_is_reported_at_its_token() {
        let err = StreamParser::parse_sql("CREATE SINK k WITH (connector = ,)").unwrap_err();
        let sql = err.as_sql().unwrap();
        assert_eq!(
            sql.location,
            Some(Location {
                line: 1,
                column: 33
            })
        );
    }
}
