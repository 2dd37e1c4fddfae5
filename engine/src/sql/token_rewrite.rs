//! What the token-level rewrites share (`flink_windows`, `match_within`, `emit_clause`): each
//! turns syntax sqlparser does not know into syntax it does before parsing, keeping every
//! token's position for error messages.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Word};

/// The index of the parenthesis closing the one at `open`.
pub(super) fn closing(tokens: &[TokenWithSpan], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in tokens.iter().enumerate().skip(open) {
        match t.token {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    return Some(j);
                }
            }
            _ => {}
        }
    }
    None
}

/// Whether `token` is the unquoted word `word`, in any case.
pub(super) fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(Word { value, quote_style: None, .. }) if value.eq_ignore_ascii_case(word))
}

/// `sql` tokenized, rewritten by `rewrite`, and printed back: what a rewrite's tests read.
#[cfg(test)]
pub(super) fn rewritten(
    sql: &str,
    rewrite: fn(Vec<TokenWithSpan>) -> Vec<TokenWithSpan>,
) -> String {
    use datafusion::sql::sqlparser::dialect::GenericDialect;
    use datafusion::sql::sqlparser::tokenizer::Tokenizer;

    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize_with_location()
        .unwrap();
    rewrite(tokens)
        .iter()
        .map(|t| t.token.to_string())
        .collect()
}
