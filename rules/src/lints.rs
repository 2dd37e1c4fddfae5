//! Style lints of `vigil check`, the ones a sqlfluff user expects: warnings about how a rule
//! is written, never about what it does. Each has a name to turn it off by, for a run
//! (`vigil check --allow NAME`) or in a file (a comment `-- vigil:allow(NAME)`).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Select, SelectItem, TableFactor, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::Tokenizer;
use datafusion::sql::sqlparser::tokenizer::{Location as TokenLocation, Token, TokenWithSpan};
use vigil_engine::error::Location;
use vigil_engine::sql::{KEYWORDS, ParsedStatement, Statement};

/// A style lint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub enum Lint {
    /// `count(*) n` or `FROM sensors s`: an alias without `AS` reads like a typo.
    #[serde(rename = "implicit-alias")]
    ImplicitAlias,
    /// `CREATE SINK ... AS SELECT *`: the sink's columns change whenever a source's do.
    #[serde(rename = "select-star-in-sink")]
    SelectStarInSink,
    /// `select ... FROM`: keywords in more than one case in a file.
    #[serde(rename = "keyword-case")]
    KeywordCase,
}

impl Lint {
    /// Every lint.
    pub const ALL: [Lint; 3] = [
        Lint::ImplicitAlias,
        Lint::SelectStarInSink,
        Lint::KeywordCase,
    ];

    /// Its name, for `--allow` and `vigil:allow(...)`.
    pub const fn name(self) -> &'static str {
        match self {
            Lint::ImplicitAlias => "implicit-alias",
            Lint::SelectStarInSink => "select-star-in-sink",
            Lint::KeywordCase => "keyword-case",
        }
    }

    /// The lint named `name`.
    pub fn from_name(name: &str) -> Option<Lint> {
        Lint::ALL.into_iter().find(|l| l.name() == name)
    }

    /// Whether a file turns this lint off with a `vigil:allow(name)` comment.
    pub fn allowed_in(self, text: &str) -> bool {
        text.match_indices("vigil:allow(").any(|(at, marker)| {
            let rest = &text[at + marker.len()..];
            let names = rest.split(')').next().unwrap_or_default();
            names.split(',').any(|n| n.trim() == self.name())
        })
    }
}

/// One lint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Which lint.
    pub lint: Lint,
    /// Where, in the file.
    pub at: Location,
    /// What and what to write instead.
    pub message: String,
}

/// The lint findings of one file's statements.
pub fn lint_file(text: &str, statements: &[ParsedStatement]) -> Vec<Finding> {
    let tokens = tokens(text);
    let mut findings = keyword_case(&tokens);
    for statement in statements {
        findings.extend(implicit_aliases(&statement.statement, &tokens));
        findings.extend(select_star_in_sink(statement));
    }
    findings
}

fn tokens(text: &str) -> Vec<TokenWithSpan> {
    Tokenizer::new(&GenericDialect {}, text)
        .tokenize_with_location()
        .unwrap_or_default()
}

fn location(at: TokenLocation) -> Location {
    Location {
        line: at.line,
        column: at.column,
    }
}

/// How a keyword is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Upper,
    Lower,
    Mixed,
}

fn case_of(word: &str) -> Case {
    if word == word.to_ascii_uppercase() {
        Case::Upper
    } else if word == word.to_ascii_lowercase() {
        Case::Lower
    } else {
        Case::Mixed
    }
}

/// Keyword case: when a file's keywords are not all in one case, the first one that is not
/// in the case most of them are in.
fn keyword_case(tokens: &[TokenWithSpan]) -> Vec<Finding> {
    let keywords: Vec<(&TokenWithSpan, &str, Case)> = tokens
        .iter()
        .filter_map(|t| match &t.token {
            Token::Word(w) if w.quote_style.is_none() && is_keyword(&w.value) => {
                Some((t, w.value.as_str(), case_of(&w.value)))
            }
            _ => None,
        })
        .collect();
    let Some(&(_, _, first)) = keywords.first() else {
        return Vec::new();
    };
    if keywords.iter().all(|k| k.2 == first) {
        return Vec::new();
    }
    let count = |case: Case| keywords.iter().filter(|k| k.2 == case).count();
    let usual = if count(Case::Upper) >= count(Case::Lower) {
        Case::Upper
    } else {
        Case::Lower
    };
    let Some((token, word, _)) = keywords.iter().find(|k| k.2 != usual) else {
        return Vec::new();
    };
    let usual = if usual == Case::Upper {
        "upper"
    } else {
        "lower"
    };
    vec![Finding {
        lint: Lint::KeywordCase,
        at: location(token.span.start),
        message: format!(
            "keyword '{word}' is not in the {usual} case of the file's other keywords \
             (vigil fmt upper-cases keywords)"
        ),
    }]
}

fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Select-list and table aliases not introduced by `AS`.
fn implicit_aliases(statement: &Statement, tokens: &[TokenWithSpan]) -> Vec<Finding> {
    let mut finder = AliasFinder {
        tokens,
        findings: Vec::new(),
    };
    let query = match statement {
        Statement::CreateSink(sink) => sink.query.as_deref(),
        Statement::CreateView(view) => Some(view.query.as_ref()),
        Statement::Query(query) => Some(query.as_ref()),
        _ => None,
    };
    if let Some(query) = query {
        let _ = query.visit(&mut finder);
    }
    finder.findings
}

struct AliasFinder<'a> {
    tokens: &'a [TokenWithSpan],
    findings: Vec<Finding>,
}

impl AliasFinder<'_> {
    /// Notes the alias whose name starts at `at` when the token before it is not `AS`.
    fn check(&mut self, at: TokenLocation, alias: &str, what: &str) {
        let Some(index) = self.tokens.iter().position(|t| t.span.start == at) else {
            return;
        };
        let before = self.tokens[..index]
            .iter()
            .rev()
            .find(|t| !matches!(t.token, Token::Whitespace(_)));
        let explicit = before.is_some_and(
            |t| matches!(&t.token, Token::Word(w) if w.value.eq_ignore_ascii_case("AS")),
        );
        if !explicit {
            self.findings.push(Finding {
                lint: Lint::ImplicitAlias,
                at: location(at),
                message: format!("{what} alias '{alias}' without AS: write AS {alias}"),
            });
        }
    }
}

impl Visitor for AliasFinder<'_> {
    type Break = ();

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<()> {
        for item in &select.projection {
            if let SelectItem::ExprWithAlias { alias, .. } = item {
                self.check(alias.span.start, &alias.value, "column");
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let alias = match factor {
            TableFactor::Table { alias, .. }
            | TableFactor::Derived { alias, .. }
            | TableFactor::TableFunction { alias, .. }
            | TableFactor::Function { alias, .. }
            | TableFactor::UNNEST { alias, .. } => alias.as_ref(),
            _ => None,
        };
        if let Some(alias) = alias.filter(|a| !a.explicit) {
            self.check(alias.name.span.start, &alias.name.value, "table");
        }
        ControlFlow::Continue(())
    }
}

/// `SELECT *` as the outermost select list of a sink's query.
fn select_star_in_sink(statement: &ParsedStatement) -> Option<Finding> {
    let Statement::CreateSink(sink) = &statement.statement else {
        return None;
    };
    let datafusion::sql::sqlparser::ast::SetExpr::Select(select) =
        sink.query.as_deref()?.body.as_ref()
    else {
        return None;
    };
    let star = select.projection.iter().find_map(|item| match item {
        SelectItem::Wildcard(options) => Some(options.wildcard_token.0.span.start),
        SelectItem::QualifiedWildcard(_, options) => Some(options.wildcard_token.0.span.start),
        _ => None,
    })?;
    Some(Finding {
        lint: Lint::SelectStarInSink,
        at: location(star),
        message: format!(
            "sink '{}' selects *: its columns change whenever its source's do; name them",
            sink.name.value
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_engine::sql::StreamParser;

    fn lints(text: &str) -> Vec<(Lint, u64, u64)> {
        let statements = StreamParser::parse_sql(text).unwrap();
        lint_file(text, &statements)
            .into_iter()
            .map(|f| (f.lint, f.at.line, f.at.column))
            .collect()
    }

    #[test]
    fn implicit_aliases_of_columns_and_tables_are_found_where_they_are() {
        let text = "CREATE VIEW v AS\nSELECT count(*) n, max(t) AS m\nFROM sensors s;\n";
        assert_eq!(
            lints(text),
            [(Lint::ImplicitAlias, 2, 17), (Lint::ImplicitAlias, 3, 14)]
        );
        assert_eq!(lints("SELECT count(*) AS n FROM sensors AS s;\n"), []);
    }

    #[test]
    fn a_sink_selecting_star_and_mixed_keyword_case_are_found() {
        let text = "CREATE SINK out AS\nSELECT * FROM sensors\nwhere t > 1;\n";
        assert_eq!(
            lints(text),
            [(Lint::KeywordCase, 3, 1), (Lint::SelectStarInSink, 2, 8)]
        );
        assert_eq!(lints("select a from t where a > 1;\n"), []);
    }

    #[test]
    fn a_file_turns_lints_off_by_name() {
        let text = "-- vigil:allow(keyword-case, implicit-alias)\nSELECT 1;\n";
        assert!(Lint::KeywordCase.allowed_in(text));
        assert!(Lint::ImplicitAlias.allowed_in(text));
        assert!(!Lint::SelectStarInSink.allowed_in(text));
    }
}
