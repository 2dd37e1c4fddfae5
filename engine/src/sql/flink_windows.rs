//! Flink's window table functions in Vigil's words, at the token level before parsing:
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), size))` reads as `TUMBLE(t, ts, size)`, and so do
//! `HOP`, `CUMULATE` and `SESSION`. `SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), gap)`
//! reads as `SESSION(t, ts, gap, 'k')`: Vigil's sessions form per the GROUP BY keys, and the
//! planner checks they are the `PARTITION BY`'s. Tokens keep their positions, so errors still
//! point into the text as written.

use datafusion::sql::sqlparser::tokenizer::{Span, Token, TokenWithSpan};

use super::token_rewrite::closing;

const WINDOW_FUNCTIONS: [&str; 4] = ["TUMBLE", "HOP", "CUMULATE", "SESSION"];

/// `tokens` with every Flink window call rewritten.
pub(super) fn rewrite_flink_windows(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        match window_call(&tokens, i) {
            Some(call) => {
                out.extend(call.tokens);
                i = call.next;
            }
            None => {
                out.push(tokens[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// A rewritten call and the index of the token after what it replaces.
struct Call {
    tokens: Vec<TokenWithSpan>,
    next: usize,
}

/// The Flink window call starting at `tokens[i]`, with or without `TABLE(...)` around it.
fn window_call(tokens: &[TokenWithSpan], i: usize) -> Option<Call> {
    if matches!(tokens[i].token, Token::Whitespace(_)) {
        return None;
    }
    let mut at = Cursor { tokens, i };
    let wrapped = at.word("TABLE") && at.token(&Token::LParen);
    if !wrapped {
        at = Cursor { tokens, i };
    }
    if !WINDOW_FUNCTIONS.iter().any(|w| at.word(w)) {
        return None;
    }
    let function = at.i - 1;
    if !at.token(&Token::LParen) {
        return None;
    }
    let open = at.i - 1;
    if !at.word("TABLE") {
        return None;
    }
    let name = at.name()?;
    let partition = at.partition_by(tokens[function].token.to_string())?;
    if !at.token(&Token::Comma) {
        return None;
    }
    let comma = at.i - 1;
    if !(at.word("DESCRIPTOR") && at.token(&Token::LParen)) {
        return None;
    }
    let (column, column_end) = at.name()?;
    if !at.token(&Token::RParen) {
        return None;
    }
    let rest = at.i;
    let close = closing(tokens, open)?;
    let mut end = close + 1;
    if wrapped {
        let mut after = Cursor { tokens, i: end };
        if !after.token(&Token::RParen) {
            return None;
        }
        end = after.i;
    }
    let mut rewritten = vec![tokens[function].clone(), tokens[open].clone()];
    rewritten.extend_from_slice(&tokens[name.0..name.1]);
    rewritten.push(tokens[comma].clone());
    rewritten.extend_from_slice(&tokens[column..column_end]);
    rewritten.extend_from_slice(&tokens[rest..close]);
    if let Some((columns, span)) = partition {
        // The PARTITION BY columns as a fourth argument, where they were written.
        let at = |token| TokenWithSpan { token, span };
        rewritten.push(at(Token::Comma));
        rewritten.push(at(Token::SingleQuotedString(columns)));
    }
    rewritten.push(tokens[close].clone());
    Some(Call {
        tokens: rewritten,
        next: end,
    })
}

/// Steps over tokens, whitespace skipped before each one it takes.
struct Cursor<'a> {
    tokens: &'a [TokenWithSpan],
    i: usize,
}

impl Cursor<'_> {
    fn skip_space(&mut self) {
        while self
            .tokens
            .get(self.i)
            .is_some_and(|t| matches!(t.token, Token::Whitespace(_)))
        {
            self.i += 1;
        }
    }

    /// Takes `token` if it comes next.
    fn token(&mut self, token: &Token) -> bool {
        self.skip_space();
        let found = self.tokens.get(self.i).is_some_and(|t| &t.token == token);
        self.i += usize::from(found);
        found
    }

    /// Takes the unquoted word `word` if it comes next.
    fn word(&mut self, word: &str) -> bool {
        self.skip_space();
        let found = self.tokens.get(self.i).is_some_and(|t| {
            matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
        });
        self.i += usize::from(found);
        found
    }

    /// Takes `PARTITION BY a, b` if it comes next (only in a `SESSION`): the columns as one
    /// text and the span of the first; `None` for anything else after `PARTITION BY`.
    fn partition_by(&mut self, function: String) -> Option<Option<(String, Span)>> {
        let before = self.i;
        if !(self.word("PARTITION") && self.word("BY")) {
            self.i = before;
            return Some(None);
        }
        if !function.eq_ignore_ascii_case("SESSION") {
            return None;
        }
        let mut columns = Vec::new();
        let mut span = None;
        loop {
            let (start, end) = self.name()?;
            span.get_or_insert(self.tokens[start].span);
            columns.push(
                self.tokens[start..end]
                    .iter()
                    .map(|t| t.token.to_string())
                    .collect::<String>(),
            );
            let after_name = self.i;
            if !self.token(&Token::Comma) {
                return None;
            }
            let next_is_descriptor = self.word("DESCRIPTOR");
            self.i = after_name;
            if next_is_descriptor {
                return Some(Some((columns.join(", "), span?)));
            }
            self.token(&Token::Comma);
        }
    }

    /// Takes a name, `a` or `a.b`; its token range.
    fn name(&mut self) -> Option<(usize, usize)> {
        self.skip_space();
        let start = self.i;
        matches!(self.tokens.get(self.i)?.token, Token::Word(_)).then_some(())?;
        self.i += 1;
        while self
            .tokens
            .get(self.i)
            .is_some_and(|t| t.token == Token::Period)
            && self
                .tokens
                .get(self.i + 1)
                .is_some_and(|t| matches!(t.token, Token::Word(_)))
        {
            self.i += 2;
        }
        Some((start, self.i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        super::super::token_rewrite::rewritten(sql, rewrite_flink_windows)
    }

    #[test]
    fn flink_window_calls_read_as_vigils() {
        assert_eq!(
            rewritten("FROM TABLE(TUMBLE(TABLE s.t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) x"),
            "FROM TUMBLE(s.t,ts, INTERVAL '1' MINUTE) x"
        );
        assert_eq!(
            rewritten("FROM HOP( TABLE t , DESCRIPTOR( ts ), f(1), g(2))"),
            "FROM HOP(t,ts, f(1), g(2))"
        );
        assert_eq!(
            rewritten(
                "FROM TABLE(SESSION(TABLE t PARTITION BY k, s.j, DESCRIPTOR(ts), INTERVAL '1' MINUTE))"
            ),
            "FROM SESSION(t,ts, INTERVAL '1' MINUTE,'k, s.j')"
        );
    }

    #[test]
    fn other_shapes_are_left_alone() {
        for sql in [
            "FROM TUMBLE(t, ts, INTERVAL '1' MINUTE)",
            "FROM TABLE(TUMBLE(TABLE t PARTITION BY k, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
            "SELECT tumble FROM t",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
