//! `vigil check`: parses and plans rule files against their profiles without running or
//! connecting to anything, and reports problems compiler style.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::Serialize;
use vigil_engine::error::Location;
use vigil_engine::plan::{OperatorGraph, WarningKind};
use vigil_engine::sql::{ParsedStatement, Statement, StreamParser};
use vigil_engine::{Engine, StatementOutcome};

use crate::lints::{Lint, lint_file};
use crate::runner::NewEngine;
use crate::{Rule, RulesDir, RulesError};

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The rule cannot run.
    Error,
    /// The rule runs, but probably not as meant.
    Warning,
}

/// One problem, at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Diagnostic {
    /// The file.
    pub file: String,
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
    /// Error or warning.
    pub severity: Severity,
    /// What and why.
    pub message: String,
    /// The style lint that found it, which `--allow` or `vigil:allow(...)` turns off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lint: Option<Lint>,
}

impl fmt::Display for Diagnostic {
    /// `file:line:column: error: message`, as compilers print.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {severity}: {}",
            self.file, self.line, self.column, self.message
        )?;
        match self.lint {
            Some(lint) => write!(f, " [{}]", lint.name()),
            None => Ok(()),
        }
    }
}

/// What to check: rule files, and the profiles that declare their sources and sinks.
#[derive(Debug, Clone, Default)]
pub struct CheckPlan {
    /// Profiles; every rule is checked with each. Empty: rules must declare their own.
    pub profiles: Vec<PathBuf>,
    /// The rules.
    pub rules: Vec<PathBuf>,
    /// Whether these are all the rules there are, so a source no rule reads is unused.
    pub complete: bool,
    /// Style lints turned off for every file.
    pub allow: Vec<Lint>,
}

impl CheckPlan {
    /// Every rule of a rules directory, with every profile (or the one named).
    pub fn directory(dir: &RulesDir, profile: Option<&str>) -> Result<Self, RulesError> {
        let profiles = match profile {
            Some(name) => vec![dir.profile(name)?],
            None => dir.profile_paths()?,
        };
        Ok(Self {
            profiles,
            rules: dir.rule_paths()?,
            complete: true,
            allow: Vec::new(),
        })
    }
}

/// Checks every rule of `plan` with each of its profiles; the diagnostics are sorted by file
/// and position, each once.
pub async fn check(
    new_engine: NewEngine<'_>,
    plan: &CheckPlan,
) -> Result<Vec<Diagnostic>, RulesError> {
    let rules: Vec<Rule> = plan
        .rules
        .iter()
        .map(|p| Rule::read(p))
        .collect::<Result<_, _>>()?;
    let profiles: Vec<Option<Rule>> = if plan.profiles.is_empty() {
        vec![None]
    } else {
        plan.profiles
            .iter()
            .map(|p| Rule::read(p).map(Some))
            .collect::<Result<_, _>>()?
    };
    // Each diagnostic with the profiles it showed up with.
    let mut found: BTreeMap<Diagnostic, BTreeSet<String>> = BTreeMap::new();
    for profile in &profiles {
        let mut checker = Checker::new(new_engine(), &plan.allow);
        if let Some(profile) = profile {
            checker.file(profile).await;
        }
        for rule in &rules {
            checker.file(rule).await;
        }
        if plan.complete {
            checker.unused_sources();
        }
        let name = profile.as_ref().map(|p| p.name.clone()).unwrap_or_default();
        for diagnostic in checker.diagnostics {
            found.entry(diagnostic).or_default().insert(name.clone());
        }
    }
    let all = profiles.len();
    Ok(found
        .into_iter()
        .map(|(mut diagnostic, with)| {
            // Say which profiles a problem needs, when not every one has it.
            let in_profile = plan.profiles.iter().any(|p| shown(p) == diagnostic.file);
            if with.len() < all && !in_profile {
                let names: Vec<String> = with.into_iter().collect();
                diagnostic.message =
                    format!("{} (with profile {})", diagnostic.message, names.join(", "));
            }
            diagnostic
        })
        .collect())
}

/// Runs files through one planning-only engine, collecting diagnostics.
struct Checker<'a> {
    engine: Engine,
    allow: &'a [Lint],
    diagnostics: Vec<Diagnostic>,
    /// Declared sources: name → where.
    sources: BTreeMap<String, (String, Location)>,
    /// Sources some query reads.
    used: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    fn new(mut engine: Engine, allow: &'a [Lint]) -> Self {
        engine.config_mut().start_queries = false;
        Self {
            engine,
            allow,
            diagnostics: Vec::new(),
            sources: BTreeMap::new(),
            used: BTreeSet::new(),
        }
    }

    async fn file(&mut self, file: &Rule) {
        let name = shown(&file.path);
        let statements = match StreamParser::parse_sql(&file.sql) {
            Ok(statements) => statements,
            Err(e) => {
                self.error(&name, e);
                return;
            }
        };
        self.lints(&name, &file.sql, &statements);
        for statement in statements {
            self.statement(&name, statement).await;
        }
    }

    fn lints(&mut self, file: &str, text: &str, statements: &[ParsedStatement]) {
        for finding in lint_file(text, statements) {
            if self.allow.contains(&finding.lint) || finding.lint.allowed_in(text) {
                continue;
            }
            self.diagnostics.push(Diagnostic {
                file: file.to_string(),
                line: finding.at.line,
                column: finding.at.column,
                severity: Severity::Warning,
                message: finding.message,
                lint: Some(finding.lint),
            });
        }
    }

    async fn statement(&mut self, file: &str, statement: ParsedStatement) {
        let declared = match &statement.statement {
            Statement::CreateSource(source) => Some(source.name.value.to_ascii_lowercase()),
            _ => None,
        };
        let (text, start) = (statement.sql.clone(), statement.location);
        match self.engine.execute_statement(statement).await {
            Err(e) => self.error(file, e),
            Ok(outcome) => {
                if let Some(name) = declared {
                    self.sources.insert(name, (file.to_string(), start));
                }
                let graph = match &outcome {
                    StatementOutcome::SinkPlanned { query, .. } => Some(&query.graph),
                    StatementOutcome::Query(query) => Some(&query.graph),
                    _ => None,
                };
                if let Some(graph) = graph {
                    self.plan_warnings(file, &text, start, graph);
                }
            }
        }
    }

    fn plan_warnings(&mut self, file: &str, text: &str, start: Location, graph: &OperatorGraph) {
        self.used
            .extend(graph.sources.iter().map(|s| s.def.name.clone()));
        for warning in &graph.warnings {
            let keywords: &[&str] = match warning.kind {
                WarningKind::WindowWithoutWatermark => &["TUMBLE", "HOP", "CUMULATE"],
                WarningKind::JoinWithoutWatermark => &["JOIN"],
                WarningKind::GroupsNotPartitioned => &["GROUP"],
                WarningKind::HavingCouldBeWhere => &["HAVING"],
            };
            let at = keyword_location(text, start, keywords).unwrap_or(start);
            self.push(file, at, Severity::Warning, warning.message.clone());
        }
    }

    fn unused_sources(&mut self) {
        let unused: Vec<(String, String, Location)> = self
            .sources
            .iter()
            .filter(|(name, _)| !self.used.contains(*name))
            .map(|(name, (file, at))| (name.clone(), file.clone(), *at))
            .collect();
        for (name, file, at) in unused {
            self.push(
                &file,
                at,
                Severity::Warning,
                format!("source '{name}' is declared but no rule reads it"),
            );
        }
    }

    fn error(&mut self, file: &str, e: vigil_engine::Error) {
        let (at, message) = match &e {
            vigil_engine::Error::Sql(sql) => {
                let message = match &sql.help {
                    Some(help) => format!("{} ({help})", sql.message),
                    None => sql.message.clone(),
                };
                (
                    sql.location.unwrap_or(Location { line: 1, column: 1 }),
                    message,
                )
            }
            other => (Location { line: 1, column: 1 }, other.to_string()),
        };
        self.push(file, at, Severity::Error, message);
    }

    fn push(&mut self, file: &str, at: Location, severity: Severity, message: String) {
        self.diagnostics.push(Diagnostic {
            file: file.to_string(),
            line: at.line,
            column: at.column,
            severity,
            message,
            lint: None,
        });
    }
}

/// A path as diagnostics name it: as given, without a leading `./`.
fn shown(path: &Path) -> String {
    let text = path.display().to_string();
    match text.strip_prefix("./") {
        Some(rest) => rest.to_string(),
        None => text,
    }
}

/// Where the first of `keywords` appears in a statement's text, as a position in its file.
fn keyword_location(text: &str, start: Location, keywords: &[&str]) -> Option<Location> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, text)
        .tokenize_with_location()
        .ok()?;
    let token = tokens.iter().find(|t| match &t.token {
        Token::Word(w) => {
            w.quote_style.is_none() && keywords.iter().any(|k| w.value.eq_ignore_ascii_case(k))
        }
        _ => false,
    })?;
    let (line, column) = (token.span.start.line, token.span.start.column);
    Some(if line <= 1 {
        Location {
            line: start.line,
            column: start.column + column - 1,
        }
    } else {
        Location {
            line: start.line + line - 1,
            column,
        }
    })
}

/// The rule files given on a command line, checked with the profiles of the rules directory
/// they sit in (`DIR/profiles/`), or only the one named `profile`.
pub fn plan_for_files(files: &[PathBuf], profile: Option<&str>) -> Result<CheckPlan, RulesError> {
    let dir = files
        .first()
        .and_then(|f| f.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = RulesDir::new(dir);
    let profiles = match profile {
        Some(name) => vec![dir.profile(name)?],
        None => dir.profile_paths()?,
    };
    Ok(CheckPlan {
        profiles,
        rules: files.to_vec(),
        complete: false,
        allow: Vec::new(),
    })
}
