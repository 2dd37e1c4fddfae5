//! Engine tests in Rust: the payment-due example and the runtime with real connectors.

mod alignment;
mod bad_rows;
mod failures;
mod fuzz;
mod guards;
mod join_oracle;
mod nexmark_oracle;
mod oracle;
mod over_oracle;
mod pattern_oracle;
mod payment_due;
mod read_columns;
mod restore;
mod snapshot;
mod state_freed;
