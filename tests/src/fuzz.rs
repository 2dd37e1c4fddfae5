//! Random inputs for the fuzz tests: SQL statements built from Vigil's grammar, old and new,
//! and mutations of real rules. Deterministic per seed: a failure names its seed, and
//! `VIGIL_FUZZ_SEED` replays it.

use std::time::{SystemTime, UNIX_EPOCH};

/// A small, fast, seedable generator (xorshift64*): no dependency for a test's needs.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; zero is moved off).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// One of `words` (a [`Rng::pick`] that infers well where a `&str` is wanted).
    pub fn word<'a>(&mut self, words: &[&'a str]) -> &'a str {
        words[self.below(words.len())]
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
}

/// The seeds a fuzz test runs: a fixed one, so every run covers the same ground, and a new
/// one each run, printed so a failure can be replayed with `VIGIL_FUZZ_SEED`.
pub fn seeds() -> Vec<u64> {
    if let Some(seed) = std::env::var("VIGIL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![seed];
    }
    let fresh = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64);
    eprintln!("fuzz seeds: 1 and {fresh} (replay one with VIGIL_FUZZ_SEED=...)");
    vec![1, fresh]
}

const COLUMNS: &[&str] = &["sensor_id", "temperature", "humidity", "ts", "nope", "*"];
const LITERALS: &[&str] = &[
    "1",
    "0",
    "-1",
    "1.5",
    "1e400",
    "9223372036854775807",
    "'a'",
    "''",
    "NULL",
    "true",
    "TIMESTAMP '2024-01-01 00:00:00'",
    "INTERVAL '1' SECOND",
    "INTERVAL '0' SECOND",
    "INTERVAL '-5' MINUTE",
    "INTERVAL '1' MONTH",
    "'\u{1F600}'",
];
const OPERATORS: &[&str] = &[
    "+", "-", "*", "/", "%", "||", "AND", "OR", "=", "<>", "<", ">=", "IS", "LIKE",
];
const FUNCTIONS: &[&str] = &[
    "abs",
    "upper",
    "lower",
    "length",
    "repeat",
    "lpad",
    "rpad",
    "concat",
    "coalesce",
    "round",
    "sqrt",
    "ln",
    "power",
    "substr",
    "count",
    "sum",
    "min",
    "max",
    "avg",
    "array_agg",
    "string_agg",
    "date_trunc",
    "to_timestamp",
    "now",
    "random",
    "array_repeat",
    "regexp_replace",
    "nullif",
    "cast_me",
    "hop",
    "tumble",
];
const TYPES: &[&str] = &[
    "BIGINT",
    "INT",
    "DOUBLE",
    "TEXT",
    "TIMESTAMP",
    "BOOLEAN",
    "DECIMAL(5,2)",
];
const RELATIONS: &[&str] = &[
    "sensors",
    "payments",
    "nowhere",
    "TUMBLE(sensors, ts, INTERVAL '1' MINUTE)",
    "HOP(sensors, ts, INTERVAL '1' SECOND, INTERVAL '1' HOUR)",
    "HOP(sensors, ts, INTERVAL '1' NANOSECOND, INTERVAL '1' DAY)",
    "TUMBLE(sensors, humidity, INTERVAL '1' MINUTE)",
    "TUMBLE(sensors, ts, INTERVAL '0' SECOND)",
    "HOP(sensors, ts)",
    "generate_series(1, 10)",
    "(SELECT * FROM sensors)",
];

/// Builds random statements, some valid, most not, several built to be deep or large.
#[derive(Debug)]
pub struct SqlGen {
    rng: Rng,
    rules: Vec<String>,
}

impl SqlGen {
    /// A generator from `seed`, mutating the statements of `rules` among others.
    pub fn new(seed: u64, rules: Vec<String>) -> Self {
        Self {
            rng: Rng::new(seed),
            rules,
        }
    }

    /// The next statement.
    pub fn statement(&mut self) -> String {
        match self.rng.below(10) {
            0 | 1 => self.mutated_rule(),
            2 => self.deep(),
            3 => self.create_source(),
            _ => self.select(),
        }
    }

    fn expr(&mut self, depth: usize) -> String {
        if depth == 0 || self.rng.one_in(3) {
            return if self.rng.one_in(2) {
                self.rng.word(COLUMNS).to_string()
            } else {
                self.rng.word(LITERALS).to_string()
            };
        }
        match self.rng.below(6) {
            0 => format!(
                "({} {} {})",
                self.expr(depth - 1),
                self.rng.word(OPERATORS),
                self.expr(depth - 1)
            ),
            1 => {
                let args: Vec<String> = (0..self.rng.below(4))
                    .map(|_| self.expr(depth - 1))
                    .collect();
                let distinct = if self.rng.one_in(5) { "DISTINCT " } else { "" };
                format!(
                    "{}({distinct}{})",
                    self.rng.word(FUNCTIONS),
                    args.join(", ")
                )
            }
            2 => format!("CAST({} AS {})", self.expr(depth - 1), self.rng.word(TYPES)),
            3 => format!(
                "CASE WHEN {} THEN {} ELSE {} END",
                self.expr(depth - 1),
                self.expr(depth - 1),
                self.expr(depth - 1)
            ),
            4 => format!("NOT {}", self.expr(depth - 1)),
            _ => format!(
                "{} IN ({}, {})",
                self.expr(depth - 1),
                self.expr(0),
                self.expr(0)
            ),
        }
    }

    fn select(&mut self) -> String {
        let items: Vec<String> = (0..1 + self.rng.below(3)).map(|_| self.expr(3)).collect();
        let mut sql = format!(
            "SELECT {} FROM {}",
            items.join(", "),
            self.rng.word(RELATIONS)
        );
        if self.rng.one_in(2) {
            sql += &format!(" WHERE {}", self.expr(3));
        }
        if self.rng.one_in(2) {
            let keys = [
                "sensor_id",
                "window_start, window_end",
                "window_start, window_end, sensor_id",
                "1",
                "temperature + 1",
            ];
            sql += &format!(" GROUP BY {}", self.rng.word(&keys));
            if self.rng.one_in(2) {
                sql += &format!(" HAVING {}", self.expr(2));
            }
        }
        let tails = [
            "",
            " ORDER BY 1",
            " LIMIT 3",
            " LIMIT -1",
            " OFFSET 2",
            " UNION ALL SELECT 1",
            " EXCEPT SELECT sensor_id FROM sensors",
        ];
        let tail = self.rng.word(&tails);
        sql.push_str(tail);
        if self.rng.one_in(4) {
            let name = format!("fuzz_{}", self.rng.below(1000));
            sql = format!("CREATE SINK {name} WITH (connector = 'stdout') AS {sql}");
        }
        if self.rng.one_in(8) {
            sql = format!("EXPLAIN {sql}");
        }
        sql
    }

    fn create_source(&mut self) -> String {
        let columns: Vec<String> = (0..1 + self.rng.below(4))
            .map(|i| format!("c{i} {}", self.rng.word(TYPES)))
            .collect();
        let watermarks = [
            "",
            ", WATERMARK FOR ts AS ts",
            ", WATERMARK FOR ts AS max(ts)",
            ", WATERMARK FOR c0 AS c0 - INTERVAL '1' SECOND",
            ", WATERMARK FOR ts AS now()",
        ];
        let options = [
            "connector = 'memory'",
            "connector = 'nope'",
            "connector = 'generator', kind = 'sensors', count = '10'",
            "connector = 'kafka', topic = 't', idle_timeout = '0s'",
            "connector = 'file'",
            "",
        ];
        format!(
            "CREATE SOURCE fuzz_src_{} ({}, ts TIMESTAMP{}) WITH ({})",
            self.rng.below(1000),
            columns.join(", "),
            self.rng.word(&watermarks),
            self.rng.word(&options)
        )
    }

    /// Statements built to be deep or long: the shapes that once overflowed the stack.
    fn deep(&mut self) -> String {
        let n = 100 + self.rng.below(3000);
        match self.rng.below(6) {
            0 => format!("SELECT {} FROM sensors", vec!["1"; n].join(" + ")),
            1 => format!(
                "SELECT * FROM sensors WHERE {}",
                vec!["true"; n].join(" AND ")
            ),
            2 => format!("SELECT {} FROM sensors", vec!["'a'"; n].join(" || ")),
            3 => vec!["SELECT 1 FROM sensors"; n.min(2500)].join(" UNION ALL "),
            4 => format!("{}SELECT 1 FROM sensors", "EXPLAIN ".repeat(n)),
            _ => format!("SELECT {}1{} FROM sensors", "(".repeat(n), ")".repeat(n)),
        }
    }

    /// A real rule with a few tokens deleted, repeated or swapped.
    fn mutated_rule(&mut self) -> String {
        if self.rules.is_empty() {
            return self.select();
        }
        let rule = self.rng.pick(&self.rules).clone();
        let mut words: Vec<&str> = rule.split_whitespace().collect();
        for _ in 0..1 + self.rng.below(3) {
            if words.is_empty() {
                break;
            }
            let at = self.rng.below(words.len());
            match self.rng.below(3) {
                0 => {
                    words.remove(at);
                }
                1 => {
                    let word = words[at];
                    words.insert(at, word);
                }
                _ => {
                    let other = self.rng.below(words.len());
                    words.swap(at, other);
                }
            }
        }
        words.join(" ")
    }
}
