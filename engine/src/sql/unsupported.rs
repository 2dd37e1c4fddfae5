//! Constructs a streaming query cannot run, refused by name before DataFusion plans them
//! into shapes whose errors would speak of plan nodes instead of SQL.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{self, SetExpr, SetOperator, TableFactor, Visit, Visitor};

/// Why `query` cannot run as a stream, when that is known from its text alone.
pub fn check(query: &ast::Query) -> Option<String> {
    let mut finder = Unsupported(None);
    let _ = query.visit(&mut finder);
    finder.0
}

struct Unsupported(Option<String>);

impl Unsupported {
    fn found(&mut self, what: String) -> ControlFlow<()> {
        self.0 = Some(what);
        ControlFlow::Break(())
    }
}

impl Visitor for Unsupported {
    type Break = ();

    fn pre_visit_query(&mut self, query: &ast::Query) -> ControlFlow<()> {
        let mut pending = vec![query.body.as_ref()];
        while let Some(body) = pending.pop() {
            if let SetExpr::SetOperation {
                op, left, right, ..
            } = body
            {
                if matches!(
                    op,
                    SetOperator::Intersect | SetOperator::Except | SetOperator::Minus
                ) {
                    return self.found(format!(
                        "{op} on streams: it needs every row of both sides; filter with WHERE \
                         instead"
                    ));
                }
                pending.push(left);
                pending.push(right);
            }
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &ast::Expr) -> ControlFlow<()> {
        match expr {
            ast::Expr::InSubquery { .. } => {
                self.found("IN (subquery) on streams; list the values, or use a view".into())
            }
            ast::Expr::Exists { .. } => self.found("EXISTS (subquery) on streams".into()),
            ast::Expr::Subquery(_) => self.found("scalar subqueries on streams".into()),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        let function = match factor {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => name.to_string(),
            TableFactor::Function { name, .. } => name.to_string(),
            TableFactor::UNNEST { .. } => "UNNEST".to_string(),
            TableFactor::Pivot { .. } | TableFactor::Unpivot { .. } => {
                return self.found("PIVOT and UNPIVOT in a streaming query".into());
            }
            _ => return ControlFlow::Continue(()),
        };
        if super::is_window_function(&function) {
            return ControlFlow::Continue(());
        }
        self.found(format!(
            "the table function {function} in a streaming query: read a source or a view, \
             or window one with TUMBLE, HOP or CUMULATE"
        ))
    }
}
