//! Rules as code: the workflow a rules repository needs, as code has it.
//!
//! A rules directory holds rule files (`*.sql`), profiles (`profiles/*.sql`, declaring the
//! sources and sinks of one environment) and rule tests (`tests/*.test`):
//!
//! - [`check`] parses and plans every rule against the profiles without connecting to
//!   anything, and reports problems compiler style, with likely mistakes as warnings;
//! - [`fixture`] reads rule tests (input events per source, expected output rows), and
//!   [`runner`] runs them deterministically with the rule's sources swapped for the fixtures;
//! - [`fmt`] formats rule files in one canonical style;
//! - [`deploy`] compares local rules with a server's by name and content hash.

pub mod check;
pub mod deploy;
pub mod diff;
mod error;
pub mod fixture;
pub mod fmt;
pub mod layout;
pub mod lints;
pub mod report;
pub mod runner;
pub mod values;

pub use error::RulesError;
pub use layout::{Rule, RulesDir};
