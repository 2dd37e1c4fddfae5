//! `MATCH_RECOGNIZE (... PATTERN (...) WITHIN INTERVAL '2' MINUTE DEFINE ...)`, Flink's
//! time bound on a match, which sqlparser does not know: at the token level before parsing,
//! the `WITHIN` clause moves to the end of the DEFINE list as the pseudo-variable
//! [`WITHIN_VARIABLE`], whose "condition" is the interval. Tokens keep their positions, so
//! errors still point into the text as written.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::token_rewrite::{closing, is_word};

/// The DEFINE entry that carries a `WITHIN` interval to the planner.
pub const WITHIN_VARIABLE: &str = "__vigil_within";

/// `tokens` with the WITHIN clause of each MATCH_RECOGNIZE moved into its DEFINE list.
pub(super) fn rewrite_match_within(mut tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut from = 0;
    while let Some(open) = next_match_recognize(&tokens, from) {
        from = open + 1;
        let Some(close) = closing(&tokens, open) else {
            break;
        };
        let Some((within, define)) = within_clause(&tokens, open, close) else {
            continue;
        };
        let interval: Vec<TokenWithSpan> = tokens[within + 1..define].to_vec();
        let span = tokens[within].span;
        let at = |token| TokenWithSpan { token, span };
        let space = || at(Token::Whitespace(Whitespace::Space));
        let mut entry = vec![
            at(Token::Comma),
            space(),
            at(Token::make_word(WITHIN_VARIABLE, None)),
            space(),
            at(Token::make_keyword("AS")),
        ];
        entry.extend(interval);
        tokens.splice(close..close, entry);
        tokens.drain(within..define);
    }
    tokens
}

/// The index of the `(` after the next `MATCH_RECOGNIZE` at or after `from`.
fn next_match_recognize(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    let at = (from..tokens.len()).find(|&i| is_word(&tokens[i].token, "MATCH_RECOGNIZE"))?;
    (at + 1..tokens.len())
        .find(|&i| !matches!(tokens[i].token, Token::Whitespace(_)))
        .filter(|&i| tokens[i].token == Token::LParen)
}

/// Within the parentheses `open..close`, at their own depth: the index of `WITHIN` and of
/// the `DEFINE` after it.
fn within_clause(tokens: &[TokenWithSpan], open: usize, close: usize) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let mut within = None;
    for (i, t) in tokens.iter().enumerate().take(close).skip(open + 1) {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            token if depth == 0 && is_word(token, "WITHIN") => within = Some(i),
            token if depth == 0 && is_word(token, "DEFINE") => return within.map(|w| (w, i)),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        super::super::token_rewrite::rewritten(sql, rewrite_match_within)
    }

    #[test]
    fn moves_within_into_the_define_list() {
        assert_eq!(
            rewritten(
                "SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts PATTERN (A B) \
                 WITHIN INTERVAL '2' MINUTE DEFINE A AS A.x > f(1)) m"
            ),
            "SELECT * FROM t MATCH_RECOGNIZE (ORDER BY ts PATTERN (A B) \
             DEFINE A AS A.x > f(1), __vigil_within AS INTERVAL '2' MINUTE ) m"
        );
    }

    #[test]
    fn leaves_other_text_alone() {
        let sql = "SELECT within FROM t MATCH_RECOGNIZE (ORDER BY ts PATTERN (A) DEFINE A AS true)";
        assert_eq!(rewritten(sql), sql);
    }
}
