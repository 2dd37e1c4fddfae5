//! Oracle for MATCH_RECOGNIZE: on random, disordered rows whose conditions overlap, random
//! patterns (concatenation, alternation, every quantifier greedy and reluctant), skip modes
//! and WITHIN bounds give the matches a brute-force search written here finds, at batch sizes
//! 1, 7 and 1024.
//!
//! The search is the SQL standard's definition read literally: from each start row, walk
//! every way the pattern can map the rows in preference order (greedy quantifiers one more
//! repetition first, reluctant ones one fewer, alternatives left to right), recursively and
//! without memory, and take the first complete one; then skip as the mode says.

use std::sync::Arc;

use datafusion::arrow::array::{BooleanArray, RecordBatch, StringArray, TimestampNanosecondArray};
use vigil_engine::replay::Script;
use vigil_tests::fuzz::Rng;

use crate::join_oracle::{planning_engine, streamed_rows};

const SECOND: i64 = 1_000_000_000;
const KEYS: usize = 3;

/// A row: its key, which of A, B, C hold on it, its time.
struct Row {
    key: usize,
    holds: [bool; 3],
    ts: i64,
}

/// Rows 250 ms apart over 3 keys, each condition true half the time, shuffled back by up to
/// 3 s (less than the watermark's 5 s delay, so none is late).
fn rows(rng: &mut Rng, n: usize) -> Vec<Row> {
    let mut rows: Vec<(i64, Row)> = (0..n as i64)
        .map(|i| {
            let ts = 1_700_000_000 * SECOND + i * SECOND / 4;
            let arrival = ts + rng.below(3000) as i64 * SECOND / 1000;
            let holds = [rng.one_in(2), rng.one_in(2), rng.one_in(2)];
            let key = rng.below(KEYS);
            (arrival, Row { key, holds, ts })
        })
        .collect();
    rows.sort_by_key(|(arrival, _)| *arrival);
    rows.into_iter().map(|(_, row)| row).collect()
}

/// A pattern as the test builds it.
#[derive(Debug, Clone)]
enum Pat {
    Var(u8),
    Concat(Vec<Pat>),
    Alt(Vec<Pat>),
    Repeat(Box<Pat>, u32, Option<u32>, bool),
}

impl Pat {
    fn nullable(&self) -> bool {
        match self {
            Pat::Var(_) => false,
            Pat::Concat(parts) => parts.iter().all(Pat::nullable),
            Pat::Alt(parts) => parts.iter().any(Pat::nullable),
            Pat::Repeat(inner, min, _, _) => *min == 0 || inner.nullable(),
        }
    }

    /// Whether an unbounded repetition has a body that can match nothing (refused).
    fn loops_on_nothing(&self) -> bool {
        match self {
            Pat::Var(_) => false,
            Pat::Concat(parts) | Pat::Alt(parts) => parts.iter().any(Pat::loops_on_nothing),
            Pat::Repeat(inner, _, max, _) => {
                (max.is_none() && inner.nullable()) || inner.loops_on_nothing()
            }
        }
    }

    /// The variables it names.
    fn vars(&self) -> Vec<u8> {
        match self {
            Pat::Var(v) => vec![*v],
            Pat::Concat(parts) | Pat::Alt(parts) => parts.iter().flat_map(Pat::vars).collect(),
            Pat::Repeat(inner, ..) => inner.vars(),
        }
    }

    fn sql(&self) -> String {
        match self {
            Pat::Var(v) => ["A", "B", "C"][*v as usize].to_string(),
            Pat::Concat(parts) => {
                let parts: Vec<String> = parts.iter().map(|p| format!("({})", p.sql())).collect();
                parts.join(" ")
            }
            Pat::Alt(parts) => {
                let parts: Vec<String> = parts.iter().map(|p| format!("({})", p.sql())).collect();
                parts.join(" | ")
            }
            Pat::Repeat(inner, min, max, greedy) => {
                let quantifier = match (min, max) {
                    (0, None) => "*".to_string(),
                    (1, None) => "+".to_string(),
                    (0, Some(1)) => "?".to_string(),
                    (n, None) => format!("{{{n},}}"),
                    (n, Some(m)) if n == m => format!("{{{n}}}"),
                    (n, Some(m)) => format!("{{{n},{m}}}"),
                };
                let lazy = if *greedy { "" } else { "?" };
                format!("({}){quantifier}{lazy}", inner.sql())
            }
        }
    }
}

fn random_pattern(rng: &mut Rng, depth: usize) -> Pat {
    let leaf = depth == 0 || rng.one_in(3);
    if leaf {
        return Pat::Var(rng.below(3) as u8);
    }
    match rng.below(3) {
        0 => Pat::Concat(
            (0..2 + rng.below(2))
                .map(|_| random_pattern(rng, depth - 1))
                .collect(),
        ),
        1 => Pat::Alt((0..2).map(|_| random_pattern(rng, depth - 1)).collect()),
        _ => {
            let (min, max) = *rng.pick(&[
                (0, None),
                (1, None),
                (0, Some(1)),
                (2, Some(2)),
                (2, None),
                (1, Some(3)),
                (0, Some(2)),
            ]);
            Pat::Repeat(
                Box::new(random_pattern(rng, depth - 1)),
                min,
                max,
                rng.one_in(2),
            )
        }
    }
}

/// The preferred way to match `p` from `pos`, continued by `k`: true once `k` accepts.
fn search(
    p: &Pat,
    masks: &[[bool; 3]],
    pos: usize,
    path: &mut Vec<u8>,
    k: &mut dyn FnMut(usize, &mut Vec<u8>) -> bool,
) -> bool {
    match p {
        Pat::Var(v) => {
            if pos >= masks.len() || !masks[pos][*v as usize] {
                return false;
            }
            path.push(*v);
            let done = k(pos + 1, path);
            path.pop();
            done
        }
        Pat::Concat(parts) => concat(parts, masks, pos, path, k),
        Pat::Alt(parts) => parts.iter().any(|part| search(part, masks, pos, path, k)),
        Pat::Repeat(inner, min, max, greedy) => {
            repeat(inner, (*min, *max, *greedy), 0, masks, pos, path, k)
        }
    }
}

fn concat(
    parts: &[Pat],
    masks: &[[bool; 3]],
    pos: usize,
    path: &mut Vec<u8>,
    k: &mut dyn FnMut(usize, &mut Vec<u8>) -> bool,
) -> bool {
    match parts.split_first() {
        None => k(pos, path),
        Some((first, rest)) => search(first, masks, pos, path, &mut |next, path| {
            concat(rest, masks, next, path, k)
        }),
    }
}

fn repeat(
    inner: &Pat,
    (min, max, greedy): (u32, Option<u32>, bool),
    done: u32,
    masks: &[[bool; 3]],
    pos: usize,
    path: &mut Vec<u8>,
    k: &mut dyn FnMut(usize, &mut Vec<u8>) -> bool,
) -> bool {
    let more = |path: &mut Vec<u8>, k: &mut dyn FnMut(usize, &mut Vec<u8>) -> bool| {
        max.is_none_or(|m| done < m)
            && search(inner, masks, pos, path, &mut |next, path| {
                repeat(inner, (min, max, greedy), done + 1, masks, next, path, k)
            })
    };
    let stop = |path: &mut Vec<u8>, k: &mut dyn FnMut(usize, &mut Vec<u8>) -> bool| {
        done >= min && k(pos, path)
    };
    // A greedy quantifier prefers one more repetition; a reluctant one prefers to stop.
    let preference = if greedy { [true, false] } else { [false, true] };
    preference
        .into_iter()
        .any(|again| if again { more(path, k) } else { stop(path, k) })
}

#[derive(Debug, Clone, Copy)]
enum Skip {
    PastLastRow,
    ToNextRow,
    ToFirst(u8),
    ToLast(u8),
}

impl Skip {
    fn sql(self) -> String {
        let var = |v: u8| ["A", "B", "C"][v as usize];
        match self {
            Skip::PastLastRow => "AFTER MATCH SKIP PAST LAST ROW".into(),
            Skip::ToNextRow => "AFTER MATCH SKIP TO NEXT ROW".into(),
            Skip::ToFirst(v) => format!("AFTER MATCH SKIP TO FIRST {}", var(v)),
            Skip::ToLast(v) => format!("AFTER MATCH SKIP TO LAST {}", var(v)),
        }
    }

    /// Where the next search starts, past the match's first row.
    fn after(self, path: &[u8]) -> usize {
        let at = match self {
            Skip::PastLastRow => path.len(),
            Skip::ToNextRow => 1,
            Skip::ToFirst(v) => path.iter().position(|x| *x == v).unwrap_or(0),
            Skip::ToLast(v) => path.iter().rposition(|x| *x == v).unwrap_or(0),
        };
        at.max(1)
    }
}

/// The matches the definition gives: key, first and last time, and rows per variable.
fn expected(rows: &[Row], pattern: &Pat, skip: Skip, within: i64) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for key in 0..KEYS {
        let mut mine: Vec<&Row> = rows.iter().filter(|r| r.key == key).collect();
        mine.sort_by_key(|r| r.ts);
        let mut start = 0;
        while start < mine.len() {
            // WITHIN: only rows less than `within` after the first can be in the match.
            let reach = mine[start..]
                .iter()
                .take_while(|r| r.ts - mine[start].ts < within)
                .count();
            let masks: Vec<[bool; 3]> =
                mine[start..start + reach].iter().map(|r| r.holds).collect();
            let mut found = None;
            search(pattern, &masks, 0, &mut Vec::new(), &mut |end, path| {
                found = Some((end, path.clone()));
                true
            });
            let Some((end, path)) = found else {
                start += 1;
                continue;
            };
            let count = |v: u8| path.iter().filter(|x| **x == v).count().to_string();
            out.push(vec![
                format!("k{key}"),
                mine[start].ts.to_string(),
                mine[start + end - 1].ts.to_string(),
                count(0),
                count(1),
                count(2),
            ]);
            start += skip.after(&path);
        }
    }
    out.sort();
    out
}

async fn streamed(rows: &[Row], sql: &str, batch_size: usize) -> Vec<Vec<String>> {
    let mut engine = planning_engine(batch_size);
    engine
        .execute(
            "CREATE SOURCE r (k TEXT, a BOOLEAN, b BOOLEAN, c BOOLEAN, ts TIMESTAMP,
             WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (connector = 'memory')",
        )
        .await
        .unwrap();
    let schema = Arc::clone(&engine.catalog().sources()["r"].schema);
    let mut script = Script::default();
    for chunk in rows.chunks(50) {
        let holds = |i: usize| -> BooleanArray { chunk.iter().map(|r| Some(r.holds[i])).collect() };
        let columns: Vec<datafusion::arrow::array::ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                chunk.iter().map(|r| format!("k{}", r.key)),
            )),
            Arc::new(holds(0)),
            Arc::new(holds(1)),
            Arc::new(holds(2)),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                chunk.iter().map(|r| r.ts),
            )),
        ];
        script.push(
            "r",
            RecordBatch::try_new(Arc::clone(&schema), columns).unwrap(),
        );
    }
    streamed_rows(&engine, sql, &script, batch_size).await
}

fn query(pattern: &Pat, skip: Skip, within: i64) -> String {
    let mut vars = pattern.vars();
    vars.sort_unstable();
    vars.dedup();
    // The variables a pattern does not name have no DEFINE: that would be refused.
    let defines: Vec<&str> = (vars.iter())
        .map(|v| ["A AS A.a", "B AS B.b", "C AS C.c"][*v as usize])
        .collect();
    let counts: Vec<String> = (0..3u8)
        .map(|v| {
            let name = ["A", "B", "C"][v as usize];
            match vars.contains(&v) {
                true => format!("COUNT({name}.*) AS n{name}"),
                false => format!("CAST(0 AS BIGINT) AS n{name}"),
            }
        })
        .collect();
    format!(
        "SELECT * FROM r MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts
           MEASURES CAST(FIRST(ts) AS BIGINT) AS first_ts, CAST(LAST(ts) AS BIGINT) AS last_ts,
                    {}
           {}
           PATTERN ({}) WITHIN INTERVAL '{}' MILLISECOND
           DEFINE {})",
        counts.join(", "),
        skip.sql(),
        pattern.sql(),
        within / 1_000_000,
        defines.join(", ")
    )
}

#[tokio::test]
async fn random_patterns_find_the_matches_the_definition_gives() {
    let mut rng = Rng::new(2026);
    let mut checked = 0;
    let mut matched = 0;
    while checked < 40 {
        let pattern = random_pattern(&mut rng, 3);
        if pattern.nullable() || pattern.loops_on_nothing() {
            continue;
        }
        let var = *rng.pick(&pattern.vars());
        let skip = *rng.pick(&[
            Skip::PastLastRow,
            Skip::ToNextRow,
            Skip::ToFirst(var),
            Skip::ToLast(var),
        ]);
        let within = (1000 + rng.below(3000) as i64) * 1_000_000;
        let input = rows(&mut rng, 240);
        let want = expected(&input, &pattern, skip, within);
        let sql = query(&pattern, skip, within);
        for batch_size in [1, 7, 1024] {
            let got = streamed(&input, &sql, batch_size).await;
            assert_eq!(got, want, "batch size {batch_size}: {sql}");
        }
        checked += 1;
        matched += usize::from(!want.is_empty());
    }
    assert!(
        matched > 20,
        "most random patterns match something: {matched} of 40"
    );
}
