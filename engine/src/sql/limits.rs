//! Limits on what one statement may be, checked before planning: planning and evaluating
//! recurse through expressions, and a statement built to be deep (`1+1+...+1` a thousand
//! times, a `UNION ALL` of thousands) would otherwise overflow the stack and abort the
//! whole process.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, SetExpr, Spanned, Visit, Visitor};

use super::Statement;
use crate::error::Location;

/// The longest statement accepted, in bytes.
pub const MAX_STATEMENT_BYTES: usize = 256 * 1024;

/// The deepest nesting accepted: of expressions within expressions (each operand of
/// `a + b + c` is one level below the sum), and of set operations (`UNION`, `EXCEPT`)
/// within each other.
pub const MAX_NESTING: usize = 256;

/// Why a statement is over a limit, if it is, and where when that is known.
pub fn check(statement: &Statement, text: &str) -> Option<(String, Option<Location>)> {
    if text.len() > MAX_STATEMENT_BYTES {
        let problem = format!(
            "the statement is {} KiB long, over the limit of {} KiB",
            text.len() / 1024,
            MAX_STATEMENT_BYTES / 1024
        );
        return Some((problem, None));
    }
    let mut depth = Depth::default();
    let _ = visit_statement(statement, &mut depth);
    if depth.deepest_expression > MAX_NESTING {
        let problem = format!(
            "an expression nests deeper than the limit of {MAX_NESTING} levels: split it (an \
             IN list instead of a chain of OR, a view for a part)"
        );
        return Some((problem, depth.too_deep_at));
    }
    if depth.deepest_set_operation > MAX_NESTING {
        let problem = format!(
            "set operations (UNION, EXCEPT, INTERSECT) nest {} deep, over the limit of \
             {MAX_NESTING}",
            depth.deepest_set_operation
        );
        return Some((problem, None));
    }
    None
}

fn visit_statement(statement: &Statement, depth: &mut Depth) -> ControlFlow<()> {
    match statement {
        Statement::CreateSource(source) => {
            if let Some(watermark) = &source.watermark {
                watermark.expr.visit(depth)?;
            }
            source.columns.visit(depth)
        }
        Statement::CreateSink(sink) => sink.query.visit(depth),
        Statement::CreateView(view) => view.query.visit(depth),
        Statement::Query(query) => query.visit(depth),
        Statement::Explain(inner) => visit_statement(inner, depth),
        Statement::Drop { .. } => ControlFlow::Continue(()),
    }
}

/// Tracks the nesting of expressions as the visitor walks them.
#[derive(Default)]
struct Depth {
    expression: usize,
    deepest_expression: usize,
    deepest_set_operation: usize,
    /// Where the expression past the limit starts.
    too_deep_at: Option<Location>,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &ast::Expr) -> ControlFlow<()> {
        self.expression += 1;
        self.deepest_expression = self.deepest_expression.max(self.expression);
        // Past the limit the answer is known: stop before the walk itself goes deeper.
        if self.expression > MAX_NESTING {
            let start = expr.span().start;
            self.too_deep_at = (start.line > 0).then_some(Location {
                line: start.line,
                column: start.column,
            });
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _: &ast::Expr) -> ControlFlow<()> {
        self.expression -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        self.deepest_set_operation = self.deepest_set_operation.max(set_depth(&query.body));
        ControlFlow::Continue(())
    }
}

/// How deep set operations nest in `body`, walked without recursion.
fn set_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(body, 0)];
    while let Some((expr, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if let SetExpr::SetOperation { left, right, .. } = expr {
            pending.push((left, depth + 1));
            pending.push((right, depth + 1));
        }
    }
    deepest
}
