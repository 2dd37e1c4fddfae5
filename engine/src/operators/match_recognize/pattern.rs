//! A `MATCH_RECOGNIZE` pattern, compiled to a program for a backtracking matcher.
//!
//! The program is a Thompson-style NFA: `Row(v)` takes one row whose DEFINE condition `v`
//! holds, `Split(a, b)` tries `a` before `b`. The matcher walks it depth first, so the first
//! match it completes is the one the SQL standard prefers: greedy quantifiers try one more
//! repetition first, reluctant ones one fewer, alternatives go left to right, and a greedy
//! quantifier gives rows back when the rest of the pattern needs them.

use std::fmt;

use crate::error::{Error, Result};

/// The most instructions a pattern may compile to: `{n,m}` copies its operand.
pub const MAX_PROGRAM: usize = 10_000;

/// The most pattern variables (their conditions are bits of a `u64` per row).
pub const MAX_VARIABLES: usize = 64;

/// A pattern over variable numbers, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// One row of a variable.
    Var(u8),
    /// One after the other.
    Concat(Vec<Pattern>),
    /// The first of these that leads to a match.
    Alternation(Vec<Pattern>),
    /// `min` to `max` (unbounded when `None`) repetitions.
    Repeat {
        /// What repeats.
        inner: Box<Pattern>,
        /// Fewest repetitions.
        min: u32,
        /// Most repetitions.
        max: Option<u32>,
        /// Most repetitions first (`+`), or fewest first (`+?`).
        greedy: bool,
    },
}

impl Pattern {
    /// Whether the pattern can match no rows at all.
    pub fn nullable(&self) -> bool {
        match self {
            Pattern::Var(_) => false,
            Pattern::Concat(parts) => parts.iter().all(Pattern::nullable),
            Pattern::Alternation(parts) => parts.iter().any(Pattern::nullable),
            Pattern::Repeat { inner, min, .. } => *min == 0 || inner.nullable(),
        }
    }

    /// The most rows a match can span; `None` when a quantifier is unbounded.
    pub fn max_rows(&self) -> Option<u64> {
        match self {
            Pattern::Var(_) => Some(1),
            Pattern::Concat(parts) => parts.iter().map(Pattern::max_rows).sum(),
            Pattern::Alternation(parts) => {
                let each: Option<Vec<u64>> = parts.iter().map(Pattern::max_rows).collect();
                each.map(|e| e.into_iter().max().unwrap_or(0))
            }
            Pattern::Repeat { inner, max, .. } => Some(inner.max_rows()? * u64::from((*max)?)),
        }
    }

    /// The pattern as SQL, variables named by `names`.
    pub fn display<'a>(&'a self, names: &'a [String]) -> impl fmt::Display + 'a {
        Shown {
            pattern: self,
            names,
        }
    }
}

struct Shown<'a> {
    pattern: &'a Pattern,
    names: &'a [String],
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |p| Shown {
            pattern: p,
            names: self.names,
        };
        match self.pattern {
            Pattern::Var(v) => write!(f, "{}", self.names[*v as usize]),
            Pattern::Concat(parts) => {
                let parts: Vec<String> = parts.iter().map(|p| shown(p).to_string()).collect();
                write!(f, "{}", parts.join(" "))
            }
            Pattern::Alternation(parts) => {
                let parts: Vec<String> = parts.iter().map(|p| shown(p).to_string()).collect();
                write!(f, "({})", parts.join(" | "))
            }
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
            } => {
                match inner.as_ref() {
                    Pattern::Var(_) | Pattern::Alternation(_) => write!(f, "{}", shown(inner))?,
                    _ => write!(f, "({})", shown(inner))?,
                }
                match (min, max) {
                    (0, None) => write!(f, "*")?,
                    (1, None) => write!(f, "+")?,
                    (0, Some(1)) => write!(f, "?")?,
                    (n, None) => write!(f, "{{{n},}}")?,
                    (n, Some(m)) if n == m => write!(f, "{{{n}}}")?,
                    (n, Some(m)) => write!(f, "{{{n},{m}}}")?,
                }
                if !greedy {
                    write!(f, "?")?;
                }
                Ok(())
            }
        }
    }
}

/// One step of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inst {
    /// Take one row whose condition `v` holds.
    Row(u8),
    /// Go on at the first target; if that fails, at the second.
    Split(usize, usize),
    /// Go on at the target.
    Jump(usize),
    /// The pattern is complete.
    Match,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Program {
    insts: Vec<Inst>,
}

impl Program {
    /// Compiles `pattern`; refuses one that can match no rows, or repeats something that can.
    pub fn compile(pattern: &Pattern) -> Result<Self> {
        if pattern.nullable() {
            return Err(Error::Plan(
                "a PATTERN that can match no rows at all; make one variable mandatory".into(),
            ));
        }
        let mut program = Self { insts: Vec::new() };
        program.emit(pattern)?;
        program.insts.push(Inst::Match);
        Ok(program)
    }

    /// The instructions.
    pub fn insts(&self) -> &[Inst] {
        &self.insts
    }

    fn push(&mut self, inst: Inst) -> Result<usize> {
        if self.insts.len() >= MAX_PROGRAM {
            return Err(Error::Plan(format!(
                "the PATTERN expands to more than {MAX_PROGRAM} steps; use smaller {{n,m}} bounds"
            )));
        }
        self.insts.push(inst);
        Ok(self.insts.len() - 1)
    }

    /// Points the split at `at` (pushed with placeholder targets) at `taken` and `skipped`,
    /// preferring `taken` when greedy.
    fn patch_split(&mut self, at: usize, taken: usize, skipped: usize, greedy: bool) {
        self.insts[at] = if greedy {
            Inst::Split(taken, skipped)
        } else {
            Inst::Split(skipped, taken)
        };
    }

    fn emit(&mut self, pattern: &Pattern) -> Result<()> {
        match pattern {
            Pattern::Var(v) => {
                self.push(Inst::Row(*v))?;
            }
            Pattern::Concat(parts) => {
                for part in parts {
                    self.emit(part)?;
                }
            }
            Pattern::Alternation(parts) => self.emit_alternation(parts)?,
            Pattern::Repeat {
                inner,
                min,
                max,
                greedy,
            } => {
                if max.is_none() && inner.nullable() {
                    return Err(Error::Plan(
                        "a PATTERN repeats a group that can match no rows (such as (A?)*); \
                         make the group take at least one row"
                            .into(),
                    ));
                }
                for _ in 0..*min {
                    self.emit(inner)?;
                }
                match max {
                    None => self.emit_star(inner, *greedy)?,
                    Some(max) => self.emit_optional(inner, max.saturating_sub(*min), *greedy)?,
                }
            }
        }
        Ok(())
    }

    fn emit_alternation(&mut self, parts: &[Pattern]) -> Result<()> {
        let mut jumps = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let split = (i + 1 < parts.len())
                .then(|| self.push(Inst::Split(0, 0)))
                .transpose()?;
            let start = self.insts.len();
            self.emit(part)?;
            jumps.push(self.push(Inst::Jump(0))?);
            if let Some(split) = split {
                let next = self.insts.len();
                self.patch_split(split, start, next, true);
            }
        }
        let end = self.insts.len();
        for jump in jumps {
            self.insts[jump] = Inst::Jump(end);
        }
        Ok(())
    }

    /// `inner*`: split, inner, jump back to the split.
    fn emit_star(&mut self, inner: &Pattern, greedy: bool) -> Result<()> {
        let split = self.push(Inst::Split(0, 0))?;
        self.emit(inner)?;
        self.push(Inst::Jump(split))?;
        let end = self.insts.len();
        self.patch_split(split, split + 1, end, greedy);
        Ok(())
    }

    /// Up to `count` more of `inner`, each only if the one before it was taken.
    fn emit_optional(&mut self, inner: &Pattern, count: u32, greedy: bool) -> Result<()> {
        let mut splits = Vec::new();
        for _ in 0..count {
            splits.push(self.push(Inst::Split(0, 0))?);
            self.emit(inner)?;
        }
        let end = self.insts.len();
        for split in splits {
            self.patch_split(split, split + 1, end, greedy);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(v: u8) -> Pattern {
        Pattern::Var(v)
    }

    fn repeat(inner: Pattern, min: u32, max: Option<u32>, greedy: bool) -> Pattern {
        Pattern::Repeat {
            inner: Box::new(inner),
            min,
            max,
            greedy,
        }
    }

    #[test]
    fn compiles_a_greedy_plus_to_a_loop_preferring_one_more() {
        let p = Pattern::Concat(vec![var(0), repeat(var(1), 1, None, true), var(2)]);
        let program = Program::compile(&p).unwrap();
        assert_eq!(
            program.insts(),
            &[
                Inst::Row(0),
                Inst::Row(1),
                Inst::Split(3, 5),
                Inst::Row(1),
                Inst::Jump(2),
                Inst::Row(2),
                Inst::Match
            ]
        );
    }

    #[test]
    fn refuses_patterns_that_match_nothing_or_loop_on_nothing() {
        assert!(Program::compile(&repeat(var(0), 0, None, true)).is_err());
        let looping = Pattern::Concat(vec![
            var(0),
            repeat(repeat(var(1), 0, Some(1), true), 0, None, true),
        ]);
        assert!(Program::compile(&looping).is_err());
    }

    #[test]
    fn shows_quantifiers_as_written() {
        let names: Vec<String> = ["A", "B", "C"].iter().map(|s| s.to_string()).collect();
        let p = Pattern::Concat(vec![
            var(0),
            repeat(var(1), 2, Some(4), false),
            repeat(Pattern::Alternation(vec![var(1), var(2)]), 1, None, true),
        ]);
        assert_eq!(p.display(&names).to_string(), "A B{2,4}? (B | C)+");
        assert_eq!(p.max_rows(), None);
    }
}
