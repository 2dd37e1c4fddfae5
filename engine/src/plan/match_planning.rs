//! Plans a `MATCH_RECOGNIZE` clause from sqlparser's syntax into a [`MatchTable`].
//!
//! DataFusion does not plan the clause, but it plans every expression in it: DEFINE
//! conditions and MEASURES are rewritten into plain expressions over placeholder columns
//! (`PREV(B.temperature)` becomes a column of the previous rows' values, `FIRST(A.ts)` and
//! `COUNT(*)` columns of one row per match), which DataFusion then types and plans.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DFSchema, ToDFSchema};
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::sql::sqlparser::ast::{
    self, AfterMatchSkip, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    MatchRecognizePattern, MatchRecognizeSymbol, RepetitionQuantifier, RowsPerMatch, TableFactor,
    VisitMut, VisitorMut,
};

use super::match_table::{LogicalAggregate, LogicalMatch, LogicalNavigation, MatchTable};
use super::window_table::interval_nanos;
use crate::catalog::{Catalog, normalize};
use crate::error::{Error, Result};
use crate::operators::{AfterMatch, MAX_VARIABLES, Navigation, Pattern};
use crate::sql::match_within::WITHIN_VARIABLE;

/// The parts of a `TableFactor::MatchRecognize`.
pub(crate) struct Clause<'a> {
    pub partition_by: &'a [ast::Expr],
    pub order_by: &'a [ast::OrderByExpr],
    pub measures: &'a [ast::Measure],
    pub rows_per_match: Option<&'a RowsPerMatch>,
    pub after_match_skip: Option<&'a AfterMatchSkip>,
    pub pattern: &'a MatchRecognizePattern,
    pub symbols: &'a [ast::SymbolDefinition],
}

impl<'a> Clause<'a> {
    /// The clause of `factor`, if it is a MATCH_RECOGNIZE.
    pub fn of(factor: &'a TableFactor) -> Option<(&'a TableFactor, Self)> {
        let TableFactor::MatchRecognize {
            table,
            partition_by,
            order_by,
            measures,
            rows_per_match,
            after_match_skip,
            pattern,
            symbols,
            ..
        } = factor
        else {
            return None;
        };
        Some((
            table,
            Self {
                partition_by,
                order_by,
                measures,
                rows_per_match: rows_per_match.as_ref(),
                after_match_skip: after_match_skip.as_ref(),
                pattern,
                symbols,
            },
        ))
    }
}

/// Plans `clause` over `input`, the plan of the relation it follows.
pub(crate) fn plan_match(
    catalog: &Catalog,
    input: LogicalPlan,
    clause: &Clause,
) -> Result<MatchTable> {
    if let Some(RowsPerMatch::AllRows(_)) = clause.rows_per_match {
        return Err(unsupported("ALL ROWS PER MATCH; write ONE ROW PER MATCH"));
    }
    let input_schema: SchemaRef = Arc::new(input.schema().as_arrow().clone());
    let mut variables = Variables::default();
    let pattern = variables.pattern(clause.pattern)?;
    let (defines, within) = split_within(clause.symbols);
    let within = within
        .map(|w| {
            let planned = catalog.plan_row_expr(w, &input_schema)?;
            Ok::<_, Error>(interval_nanos(&planned, "WITHIN")?)
        })
        .transpose()?;
    let after_match = after_match(clause.after_match_skip, &variables)?;
    let (partition_by, partition_names) =
        partition_columns(catalog, clause.partition_by, &input_schema)?;
    let (time_column, order_by) = order_columns(catalog, clause.order_by, &input_schema)?;
    let planned_defines = plan_defines(catalog, &defines, &variables, &input_schema)?;
    let measures = plan_measures(
        catalog,
        clause.measures,
        &variables,
        &input_schema,
        &partition_by,
        &partition_names,
    )?;
    let mut fields: Vec<Field> = (partition_by.iter().zip(&partition_names))
        .map(|(e, name)| field_of(e, name, &input_schema))
        .collect::<Result<_>>()?;
    for (expr, measure) in measures.exprs.iter().zip(clause.measures) {
        let name = normalize(&measure.alias);
        fields.push(Field::new(
            name,
            expr.get_type(&measures.atoms_schema)?,
            true,
        ));
    }
    let spec = LogicalMatch {
        partition_by,
        time_column,
        order_by,
        prevs: planned_defines.prevs,
        define_schema: planned_defines.schema,
        variables: variables.shown,
        defines: planned_defines.defines,
        pattern,
        after_match,
        within,
        navigations: measures.navigations,
        aggregates: measures.aggregates,
        atoms_schema: measures.atoms_schema,
        measures: measures.exprs,
        measure_labels: (clause.measures.iter())
            .map(|m| format!("{} AS {}", m.expr, m.alias))
            .collect(),
    };
    Ok(MatchTable {
        input,
        spec,
        schema: Arc::new(Schema::new(fields)),
    })
}

fn unsupported(what: &str) -> Error {
    Error::Unsupported(format!("{what} in MATCH_RECOGNIZE"))
}

fn field_of(expr: &Expr, name: &str, schema: &SchemaRef) -> Result<Field> {
    let df = Arc::clone(schema).to_dfschema()?;
    Ok(Field::new(name, expr.get_type(&df)?, true))
}

/// The pattern's variables, numbered in the order the pattern names them.
#[derive(Default)]
struct Variables {
    /// As the catalog normalizes names.
    names: Vec<String>,
    /// As written.
    shown: Vec<String>,
}

impl Variables {
    fn of(&self, ident: &Ident) -> Option<u8> {
        let name = normalize(ident);
        self.names.iter().position(|n| *n == name).map(|i| i as u8)
    }

    fn add(&mut self, ident: &Ident) -> Result<u8> {
        if let Some(v) = self.of(ident) {
            return Ok(v);
        }
        if self.names.len() == MAX_VARIABLES {
            return Err(Error::Plan(format!(
                "a PATTERN with more than {MAX_VARIABLES} variables"
            )));
        }
        self.names.push(normalize(ident));
        self.shown.push(ident.value.clone());
        Ok((self.names.len() - 1) as u8)
    }

    /// The pattern over variable numbers. sqlparser reads `B+?`, a reluctant plus, as `B+`
    /// made optional; `(B+)?` keeps its group.
    fn pattern(&mut self, p: &MatchRecognizePattern) -> Result<Pattern> {
        Ok(match p {
            MatchRecognizePattern::Symbol(MatchRecognizeSymbol::Named(ident)) => {
                Pattern::Var(self.add(ident)?)
            }
            MatchRecognizePattern::Symbol(_) => {
                return Err(unsupported(
                    "the anchors ^ and $ (a stream has no end to anchor to)",
                ));
            }
            MatchRecognizePattern::Exclude(_) => return Err(unsupported("{- -} exclusion")),
            MatchRecognizePattern::Permute(_) => return Err(unsupported("PERMUTE")),
            MatchRecognizePattern::Concat(parts) => Pattern::Concat(
                parts
                    .iter()
                    .map(|p| self.pattern(p))
                    .collect::<Result<_>>()?,
            ),
            MatchRecognizePattern::Group(inner) => self.pattern(inner)?,
            MatchRecognizePattern::Alternation(parts) => Pattern::Alternation(
                parts
                    .iter()
                    .map(|p| self.pattern(p))
                    .collect::<Result<_>>()?,
            ),
            MatchRecognizePattern::Repetition(inner, quantifier) => {
                if let (RepetitionQuantifier::AtMostOne, MatchRecognizePattern::Repetition(x, q)) =
                    (quantifier, inner.as_ref())
                {
                    return self.repeat(x, q, false);
                }
                self.repeat(inner, quantifier, true)?
            }
        })
    }

    fn repeat(
        &mut self,
        inner: &MatchRecognizePattern,
        quantifier: &RepetitionQuantifier,
        greedy: bool,
    ) -> Result<Pattern> {
        let (min, max) = match *quantifier {
            RepetitionQuantifier::ZeroOrMore => (0, None),
            RepetitionQuantifier::OneOrMore => (1, None),
            RepetitionQuantifier::AtMostOne => (0, Some(1)),
            RepetitionQuantifier::Exactly(n) => (n, Some(n)),
            RepetitionQuantifier::AtLeast(n) => (n, None),
            RepetitionQuantifier::AtMost(m) => (0, Some(m)),
            RepetitionQuantifier::Range(n, m) => (n, Some(m)),
        };
        if max.is_some_and(|m| m < min || m == 0) {
            return Err(Error::Plan(format!(
                "the quantifier {quantifier} allows no repetition"
            )));
        }
        Ok(Pattern::Repeat {
            inner: Box::new(self.pattern(inner)?),
            min,
            max,
            greedy,
        })
    }
}

/// The DEFINE entries, and the WITHIN interval the parser moved among them.
fn split_within(
    symbols: &[ast::SymbolDefinition],
) -> (Vec<&ast::SymbolDefinition>, Option<&ast::Expr>) {
    let mut within = None;
    let mut defines = Vec::new();
    for symbol in symbols {
        if symbol.symbol.value == WITHIN_VARIABLE {
            within = Some(&symbol.definition);
        } else {
            defines.push(symbol);
        }
    }
    (defines, within)
}

fn after_match(skip: Option<&AfterMatchSkip>, variables: &Variables) -> Result<AfterMatch> {
    let var = |ident: &Ident| {
        variables.of(ident).ok_or_else(|| {
            Error::Plan(format!(
                "AFTER MATCH SKIP TO {ident}: {ident} is not a variable of the PATTERN"
            ))
        })
    };
    Ok(match skip {
        None | Some(AfterMatchSkip::PastLastRow) => AfterMatch::PastLastRow,
        Some(AfterMatchSkip::ToNextRow) => AfterMatch::ToNextRow,
        Some(AfterMatchSkip::ToFirst(v)) => AfterMatch::ToFirst(var(v)?),
        Some(AfterMatchSkip::ToLast(v)) => AfterMatch::ToLast(var(v)?),
    })
}

/// PARTITION BY: columns of the input, and their names.
fn partition_columns(
    catalog: &Catalog,
    exprs: &[ast::Expr],
    schema: &SchemaRef,
) -> Result<(Vec<Expr>, Vec<String>)> {
    let mut planned = Vec::new();
    let mut names = Vec::new();
    for expr in exprs {
        let e = catalog.plan_row_expr(expr, schema)?;
        let Expr::Column(column) = &e else {
            return Err(Error::Plan(format!(
                "MATCH_RECOGNIZE PARTITION BY {expr}: partition by columns of the input"
            )));
        };
        names.push(column.name.clone());
        planned.push(e);
    }
    Ok((planned, names))
}

/// ORDER BY: the event time first, ascending; then any further keys.
fn order_columns(
    catalog: &Catalog,
    order_by: &[ast::OrderByExpr],
    schema: &SchemaRef,
) -> Result<(usize, Vec<Expr>)> {
    let refuse = || {
        Error::Plan(
            "MATCH_RECOGNIZE on a stream must ORDER BY its event time first, one ascending \
             TIMESTAMP column (ORDER BY ts)"
                .into(),
        )
    };
    let (first, rest) = order_by.split_first().ok_or_else(refuse)?;
    let Expr::Column(column) = catalog.plan_row_expr(&first.expr, schema)? else {
        return Err(refuse());
    };
    let index = schema.index_of(&column.name).map_err(|_| refuse())?;
    let timestamp = matches!(
        schema.field(index).data_type(),
        DataType::Timestamp(TimeUnit::Nanosecond, _)
    );
    if !timestamp || first.options.asc == Some(false) {
        return Err(refuse());
    }
    let rest = (rest.iter())
        .map(|o| {
            if o.options.asc == Some(false) {
                return Err(unsupported("a descending ORDER BY key"));
            }
            catalog.plan_row_expr(&o.expr, schema)
        })
        .collect::<Result<_>>()?;
    Ok((index, rest))
}

/// The planned DEFINE conditions.
struct Defines {
    defines: Vec<Option<Expr>>,
    prevs: Vec<(Expr, usize)>,
    schema: datafusion::common::DFSchemaRef,
}

fn plan_defines(
    catalog: &Catalog,
    symbols: &[&ast::SymbolDefinition],
    variables: &Variables,
    schema: &SchemaRef,
) -> Result<Defines> {
    let mut rewritten = vec![None; variables.names.len()];
    let mut prevs: Vec<(ast::Expr, usize)> = Vec::new();
    for symbol in symbols {
        let Some(var) = variables.of(&symbol.symbol) else {
            return Err(Error::Plan(format!(
                "DEFINE {}: {} is not a variable of the PATTERN",
                symbol.symbol, symbol.symbol
            )));
        };
        let mut expr = symbol.definition.clone();
        let mut rewrite = DefineRewrite {
            variables,
            own: var,
            prevs: &mut prevs,
            error: None,
        };
        let _ = expr.visit(&mut rewrite);
        if let Some(error) = rewrite.error {
            return Err(error);
        }
        rewritten[var as usize] = Some(expr);
    }
    let mut planned_prevs = Vec::new();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let df = Arc::clone(schema).to_dfschema()?;
    for (i, (arg, offset)) in prevs.iter().enumerate() {
        let arg = catalog.plan_row_expr(arg, schema)?;
        fields.push(Field::new(format!("__prev{i}"), arg.get_type(&df)?, true));
        planned_prevs.push((arg, *offset));
    }
    let define_schema: SchemaRef = Arc::new(Schema::new(fields));
    let defines = (rewritten.iter())
        .map(|e| {
            e.as_ref()
                .map(|e| catalog.plan_row_expr(e, &define_schema))
                .transpose()
        })
        .collect::<Result<_>>()?;
    Ok(Defines {
        defines,
        prevs: planned_prevs,
        schema: Arc::new(DFSchema::try_from(Schema::clone(&define_schema))?),
    })
}

/// A function call's lower-case name and arguments.
fn call(expr: &ast::Expr) -> Option<(String, &[FunctionArg])> {
    let ast::Expr::Function(function) = expr else {
        return None;
    };
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    Some((function.name.to_string().to_ascii_lowercase(), &list.args))
}

/// The argument expressions of a call (wildcards apart).
fn arg_exprs(args: &[FunctionArg]) -> Vec<&ast::Expr> {
    args.iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect()
}

/// `f(x)` or `f(x, n)`: `x`, and `n` (`default` when absent).
fn navigation_args(name: &str, args: &[FunctionArg], default: usize) -> Result<(ast::Expr, usize)> {
    let exprs = arg_exprs(args);
    let offset = match exprs.get(1) {
        None => default,
        Some(ast::Expr::Value(v)) => match &v.value {
            ast::Value::Number(n, _) => n.parse().map_err(|_| offset_error(name))?,
            _ => return Err(offset_error(name)),
        },
        Some(_) => return Err(offset_error(name)),
    };
    match exprs.as_slice() {
        [x] | [x, _] => Ok(((*x).clone(), offset)),
        _ => Err(Error::Plan(format!(
            "{} takes a value and an optional row count, e.g. {}(A.price, 1)",
            name.to_ascii_uppercase(),
            name.to_ascii_uppercase()
        ))),
    }
}

fn offset_error(name: &str) -> Error {
    Error::Plan(format!(
        "{}'s second argument is a number of rows, a literal such as 1",
        name.to_ascii_uppercase()
    ))
}

/// Strips pattern variables off the columns of `expr`; the one variable they named, if any.
fn strip_variables(expr: &mut ast::Expr, variables: &Variables) -> Result<Option<u8>> {
    let mut strip = Strip {
        variables,
        found: None,
        error: None,
    };
    let _ = expr.visit(&mut strip);
    match strip.error {
        Some(error) => Err(error),
        None => Ok(strip.found),
    }
}

struct Strip<'a> {
    variables: &'a Variables,
    found: Option<u8>,
    error: Option<Error>,
}

impl VisitorMut for Strip<'_> {
    type Break = ();

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        if let ast::Expr::CompoundIdentifier(parts) = expr
            && let [qualifier, column] = parts.as_slice()
            && let Some(var) = self.variables.of(qualifier)
        {
            if self.found.is_some_and(|f| f != var) {
                self.error = Some(Error::Plan(format!(
                    "{expr} and {} in one navigation or aggregate: each reads the rows of one \
                     variable",
                    self.variables.shown[self.found.unwrap_or_default() as usize]
                )));
                return ControlFlow::Break(());
            }
            self.found = Some(var);
            *expr = ast::Expr::Identifier(column.clone());
        }
        ControlFlow::Continue(())
    }
}

/// Rewrites a DEFINE condition of variable `own` over the current row: `own.x` is `x`, and
/// `PREV(x, n)` a placeholder column `__prev{i}`.
struct DefineRewrite<'a> {
    variables: &'a Variables,
    own: u8,
    prevs: &'a mut Vec<(ast::Expr, usize)>,
    error: Option<Error>,
}

impl DefineRewrite<'_> {
    fn fail(&mut self, error: Error) -> ControlFlow<()> {
        self.error = Some(error);
        ControlFlow::Break(())
    }

    fn own_name(&self) -> &str {
        &self.variables.shown[self.own as usize]
    }
}

impl VisitorMut for DefineRewrite<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        let Some((name, args)) = call(expr) else {
            return ControlFlow::Continue(());
        };
        match name.as_str() {
            "prev" => {
                let (mut arg, offset) = match navigation_args(&name, args, 1) {
                    Ok(found) => found,
                    Err(e) => return self.fail(e),
                };
                match strip_variables(&mut arg, self.variables) {
                    Ok(None) => {}
                    Ok(Some(v)) if v == self.own => {}
                    Ok(Some(_)) => {
                        return self.fail(Error::Unsupported(format!(
                            "DEFINE {} reads {expr}, a row of another variable; a condition \
                             reads its own row and PREV rows before it",
                            self.own_name()
                        )));
                    }
                    Err(e) => return self.fail(e),
                }
                if offset == 0 {
                    return self.fail(Error::Plan("PREV(x, 0) is the row itself: write x".into()));
                }
                self.prevs.push((arg, offset));
                let placeholder = format!("__prev{}", self.prevs.len() - 1);
                *expr = ast::Expr::Identifier(Ident::with_quote('"', placeholder));
                ControlFlow::Continue(())
            }
            "next" => self.fail(Error::Unsupported(
                "NEXT in DEFINE: it reads a row that has not come yet; define the later row's \
                 own variable instead"
                    .into(),
            )),
            "first" | "last" | "classifier" | "match_number" => {
                self.fail(Error::Unsupported(format!(
                    "{} in DEFINE yet: a condition reads its own row and PREV rows before it",
                    name.to_ascii_uppercase()
                )))
            }
            _ => ControlFlow::Continue(()),
        }
    }

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        if let ast::Expr::CompoundIdentifier(parts) = expr
            && let [qualifier, column] = parts.as_slice()
            && let Some(var) = self.variables.of(qualifier)
        {
            if var != self.own {
                let own = self.own_name().to_string();
                return self.fail(Error::Unsupported(format!(
                    "DEFINE {own} reads {expr}, a row of another variable; a condition reads \
                     its own row and PREV rows before it"
                )));
            }
            *expr = ast::Expr::Identifier(column.clone());
        }
        ControlFlow::Continue(())
    }
}

/// The planned MEASURES.
struct PlannedMeasures {
    navigations: Vec<LogicalNavigation>,
    aggregates: Vec<LogicalAggregate>,
    atoms_schema: datafusion::common::DFSchemaRef,
    exprs: Vec<Expr>,
}

/// What a MEASURES expression reads of the match, before planning.
enum Atom {
    Navigation(Option<u8>, Navigation, ast::Expr),
    Aggregate(Option<u8>, ast::Expr),
}

fn plan_measures(
    catalog: &Catalog,
    measures: &[ast::Measure],
    variables: &Variables,
    schema: &SchemaRef,
    partition_by: &[Expr],
    partition_names: &[String],
) -> Result<PlannedMeasures> {
    let aggregates: HashSet<String> = (catalog.session().state().aggregate_functions().keys())
        .map(|k| k.to_ascii_lowercase())
        .collect();
    let mut atoms = Vec::new();
    let mut rewritten = Vec::new();
    for measure in measures {
        let mut expr = measure.expr.clone();
        let mut rewrite = MeasureRewrite {
            variables,
            partition_names,
            aggregates: &aggregates,
            atoms: &mut atoms,
            error: None,
        };
        let _ = expr.visit(&mut rewrite);
        if let Some(error) = rewrite.error {
            return Err(error);
        }
        rewritten.push(expr);
    }
    let df = Arc::clone(schema).to_dfschema()?;
    let mut fields: Vec<Field> = (partition_by.iter().zip(partition_names))
        .map(|(e, name)| field_of(e, name, schema))
        .collect::<Result<_>>()?;
    let mut navigations = Vec::new();
    let mut aggregate_atoms = Vec::new();
    let mut nav_fields = Vec::new();
    let mut agg_fields = Vec::new();
    for (i, atom) in atoms.iter().enumerate() {
        match atom {
            Atom::Navigation(var, navigation, arg) => {
                let arg = catalog.plan_row_expr(arg, schema)?;
                nav_fields.push(Field::new(format!("__m{i}"), arg.get_type(&df)?, true));
                navigations.push(LogicalNavigation {
                    var: *var,
                    navigation: *navigation,
                    arg,
                });
            }
            Atom::Aggregate(var, call) => {
                let call = catalog.plan_row_expr(call, schema)?;
                agg_fields.push(Field::new(format!("__m{i}"), call.get_type(&df)?, true));
                aggregate_atoms.push(LogicalAggregate { var: *var, call });
            }
        }
    }
    fields.extend(nav_fields.into_iter().chain(agg_fields));
    let atoms_schema: SchemaRef = Arc::new(Schema::new(fields));
    let exprs = (rewritten.iter())
        .map(|e| catalog.plan_row_expr(e, &atoms_schema))
        .collect::<Result<_>>()?;
    Ok(PlannedMeasures {
        navigations,
        aggregates: aggregate_atoms,
        atoms_schema: Arc::new(DFSchema::try_from(Schema::clone(&atoms_schema))?),
        exprs,
    })
}

/// Rewrites a MEASURES expression over placeholder columns `__m{i}`, one per navigation or
/// aggregate, recorded in `atoms`. `A.x` alone is `LAST(A.x)`; a column that is not a
/// partition column is the match's last row's.
struct MeasureRewrite<'a> {
    variables: &'a Variables,
    partition_names: &'a [String],
    aggregates: &'a HashSet<String>,
    atoms: &'a mut Vec<Atom>,
    error: Option<Error>,
}

impl MeasureRewrite<'_> {
    fn placeholder(&mut self, atom: Atom) -> ast::Expr {
        self.atoms.push(atom);
        ast::Expr::Identifier(Ident::with_quote(
            '"',
            format!("__m{}", self.atoms.len() - 1),
        ))
    }

    /// A bare column other than a placeholder or a partition column: it reads the match's
    /// last row.
    fn is_row_column(&self, ident: &Ident) -> bool {
        let placeholder = ident.quote_style == Some('"') && ident.value.starts_with("__m");
        !placeholder && !self.partition_names.contains(&normalize(ident))
    }

    fn navigation(&mut self, name: &str, args: &[FunctionArg]) -> Result<ast::Expr> {
        let (mut arg, offset) =
            navigation_args(name, args, usize::from(matches!(name, "prev" | "next")))?;
        let var = strip_variables(&mut arg, self.variables)?;
        let navigation = match name {
            "first" => Navigation::First(offset),
            "last" => Navigation::Last(offset),
            "prev" => Navigation::Prev(offset),
            _ => Navigation::Next(offset),
        };
        Ok(self.placeholder(Atom::Navigation(var, navigation, arg)))
    }

    fn aggregate(&mut self, expr: &ast::Expr) -> Result<ast::Expr> {
        let mut call = expr.clone();
        let mut var = None;
        if let ast::Expr::Function(function) = &mut call
            && let FunctionArguments::List(list) = &mut function.args
        {
            for arg in &mut list.args {
                if let FunctionArg::Unnamed(FunctionArgExpr::QualifiedWildcard(name)) = arg {
                    let v = (name.0.as_slice().first())
                        .and_then(|part| part.as_ident())
                        .and_then(|ident| self.variables.of(ident))
                        .filter(|_| name.0.len() == 1)
                        .ok_or_else(|| {
                            Error::Plan(format!("{expr}: {name} is not a variable of the PATTERN"))
                        })?;
                    var = Some(v);
                    *arg = FunctionArg::Unnamed(FunctionArgExpr::Wildcard);
                }
            }
        }
        let named = strip_variables(&mut call, self.variables)?;
        if let (Some(a), Some(b)) = (var, named)
            && a != b
        {
            return Err(Error::Plan(format!(
                "{expr} reads two variables: an aggregate reads the rows of one"
            )));
        }
        Ok(self.placeholder(Atom::Aggregate(var.or(named), call)))
    }
}

impl VisitorMut for MeasureRewrite<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        let Some((name, args)) = call(expr) else {
            return ControlFlow::Continue(());
        };
        let replaced = match name.as_str() {
            "first" | "last" | "prev" | "next" => {
                let args = args.to_vec();
                self.navigation(&name, &args)
            }
            "classifier" | "match_number" => {
                Err(unsupported(&format!("{}() yet", name.to_ascii_uppercase())))
            }
            _ if self.aggregates.contains(&name) => self.aggregate(&expr.clone()),
            _ => return ControlFlow::Continue(()),
        };
        match replaced {
            Ok(placeholder) => {
                *expr = placeholder;
                ControlFlow::Continue(())
            }
            Err(e) => {
                self.error = Some(e);
                ControlFlow::Break(())
            }
        }
    }

    fn post_visit_expr(&mut self, expr: &mut ast::Expr) -> ControlFlow<()> {
        match expr {
            ast::Expr::CompoundIdentifier(parts)
                if parts.len() == 2 && self.variables.of(&parts[0]).is_some() =>
            {
                let var = self.variables.of(&parts[0]);
                let column = ast::Expr::Identifier(parts[1].clone());
                *expr = self.placeholder(Atom::Navigation(var, Navigation::Last(0), column));
            }
            ast::Expr::Identifier(ident) if self.is_row_column(ident) => {
                let column = ast::Expr::Identifier(ident.clone());
                *expr = self.placeholder(Atom::Navigation(None, Navigation::Last(0), column));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }
}
