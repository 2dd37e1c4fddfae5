//! [`Matcher`]: finds the preferred match of a [`Program`] starting at one row, or says the
//! rows so far cannot tell yet.

use super::pattern::{Inst, Program};

/// What the rows from a start row say about a match there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The preferred match: the variable each of its rows is mapped to, in order.
    Matched(Vec<u8>),
    /// No match starts at this row.
    NoMatch,
    /// A more preferred way to match needs rows that have not come yet.
    Undecided,
}

/// The rows a search reads, from the start row on: each row's DEFINE conditions as bits, and
/// its event time.
#[derive(Debug, Clone, Copy)]
pub struct Candidates<'a> {
    /// Bit `v` is set when variable `v`'s condition holds on the row.
    pub masks: &'a [u64],
    /// Event times, ascending.
    pub times: &'a [i64],
    /// A match's last row must be less than this after its first (`WITHIN`).
    pub within: Option<i64>,
    /// No row can come after these that a match from the start could use.
    pub complete: bool,
}

/// A depth-first search over the program, with the scratch it reuses between searches.
///
/// Whether a state (instruction, row) leads to a match does not depend on how it was
/// reached (conditions read the row and its predecessors, never the match), so a state is
/// explored once per search: the first visit is the preferred one. That bounds a search by
/// instructions × rows, whatever the pattern nests.
#[derive(Debug, Default)]
pub struct Matcher {
    /// The search that last visited each state; `stamp` is the current search.
    visited: Vec<u32>,
    stamp: u32,
    /// Alternatives still to try: instruction, row, and how much of `path` they keep.
    stack: Vec<(usize, usize, usize)>,
    path: Vec<u8>,
}

impl Matcher {
    /// The outcome of matching `program` from the first of `rows`.
    pub fn find(&mut self, program: &Program, rows: Candidates) -> Outcome {
        let insts = program.insts();
        self.begin(insts.len() * (rows.masks.len() + 1));
        let width = rows.masks.len() + 1;
        self.stack.clear();
        self.path.clear();
        self.stack.push((0, 0, 0));
        while let Some((mut pc, mut pos, kept)) = self.stack.pop() {
            self.path.truncate(kept);
            loop {
                let state = pc * width + pos;
                if self.visited[state] == self.stamp {
                    break;
                }
                self.visited[state] = self.stamp;
                match insts[pc] {
                    Inst::Match => return Outcome::Matched(self.path.clone()),
                    Inst::Jump(to) => pc = to,
                    Inst::Split(first, second) => {
                        self.stack.push((second, pos, self.path.len()));
                        pc = first;
                    }
                    Inst::Row(var) => match row_fits(&rows, pos, var) {
                        Fit::Yes => {
                            self.path.push(var);
                            pos += 1;
                            pc += 1;
                        }
                        Fit::No => break,
                        Fit::NotYet => return Outcome::Undecided,
                    },
                }
            }
        }
        Outcome::NoMatch
    }

    /// Starts a search over `states` states.
    fn begin(&mut self, states: usize) {
        if self.visited.len() < states {
            self.visited.resize(states, 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.visited.fill(0);
            self.stamp = 1;
        }
    }
}

enum Fit {
    Yes,
    No,
    NotYet,
}

/// Whether row `pos` can be taken as variable `var`.
fn row_fits(rows: &Candidates, pos: usize, var: u8) -> Fit {
    let Some(mask) = rows.masks.get(pos) else {
        return if rows.complete { Fit::No } else { Fit::NotYet };
    };
    if rows
        .within
        .is_some_and(|within| rows.times[pos].saturating_sub(rows.times[0]) >= within)
    {
        return Fit::No;
    }
    if mask & (1 << var) == 0 {
        return Fit::No;
    }
    Fit::Yes
}

#[cfg(test)]
mod tests {
    use super::super::pattern::Pattern;
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

    /// Masks from letters: row `i` satisfies the variables named in `rows[i]`.
    fn masks(rows: &[&str]) -> Vec<u64> {
        rows.iter()
            .map(|r| r.bytes().map(|b| 1u64 << (b - b'A')).sum())
            .collect()
    }

    fn find(pattern: &Pattern, rows: &[&str], complete: bool) -> Outcome {
        let program = Program::compile(pattern).unwrap();
        let masks = masks(rows);
        let times: Vec<i64> = (0..rows.len() as i64).collect();
        Matcher::default().find(
            &program,
            Candidates {
                masks: &masks,
                times: &times,
                within: None,
                complete,
            },
        )
    }

    #[test]
    fn greedy_takes_the_longest_run_the_rest_of_the_pattern_allows() {
        // A B+ B: the plus gives its last row back to the final B.
        let p = Pattern::Concat(vec![var(0), repeat(var(1), 1, None, true), var(1)]);
        assert_eq!(
            find(&p, &["A", "B", "B", "B", "C"], true),
            Outcome::Matched(vec![0, 1, 1, 1])
        );
        // Until the row after the run is known, the run may go on.
        assert_eq!(find(&p, &["A", "B", "B"], false), Outcome::Undecided);
    }

    #[test]
    fn reluctant_takes_the_fewest() {
        let p = Pattern::Concat(vec![var(0), repeat(var(1), 1, None, false)]);
        assert_eq!(
            find(&p, &["A", "B", "B"], false),
            Outcome::Matched(vec![0, 1])
        );
    }

    #[test]
    fn alternation_prefers_the_left_branch_that_completes() {
        let p = Pattern::Concat(vec![
            Pattern::Alternation(vec![Pattern::Concat(vec![var(0), var(2)]), var(0)]),
            var(1),
        ]);
        assert_eq!(find(&p, &["A", "B"], true), Outcome::Matched(vec![0, 1]));
        assert_eq!(
            find(&p, &["A", "BC", "B"], true),
            Outcome::Matched(vec![0, 2, 1])
        );
    }

    #[test]
    fn within_ends_a_match_before_the_bound() {
        let program = Program::compile(&Pattern::Concat(vec![
            var(0),
            repeat(var(1), 1, None, true),
        ]))
        .unwrap();
        let masks = masks(&["A", "B", "B", "B"]);
        let rows = Candidates {
            masks: &masks,
            times: &[0, 5, 9, 10],
            within: Some(10),
            complete: false,
        };
        // The row at 10 is exactly the bound after the first: out, so the match is decided.
        assert_eq!(
            Matcher::default().find(&program, rows),
            Outcome::Matched(vec![0, 1, 1])
        );
    }

    #[test]
    fn nested_quantifiers_search_in_polynomial_time() {
        // (A|AA)* B over 200 A's and no B: exponential without the visited states.
        let p = Pattern::Concat(vec![
            repeat(
                Pattern::Alternation(vec![var(0), Pattern::Concat(vec![var(0), var(0)])]),
                1,
                None,
                true,
            ),
            var(1),
        ]);
        let rows = vec!["A"; 200];
        assert_eq!(find(&p, &rows, true), Outcome::NoMatch);
    }
}
