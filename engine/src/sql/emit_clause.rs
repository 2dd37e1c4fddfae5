//! `EMIT EARLY EVERY INTERVAL '1' MINUTE` and `ALLOWED LATENESS INTERVAL '10' MINUTE` at the
//! end of a query, which sqlparser does not know: at the token level before parsing they
//! become the query's `SETTINGS` ([`EMIT_EARLY_SETTING`], [`ALLOWED_LATENESS_SETTING`]),
//! which the engine reads as the query's emit policy. Tokens keep their positions.

use datafusion::sql::sqlparser::tokenizer::{Token, TokenWithSpan, Whitespace};

use super::token_rewrite::is_word;

/// The setting carrying `EMIT EARLY EVERY`'s interval.
pub const EMIT_EARLY_SETTING: &str = "vigil_emit_early";
/// The setting carrying `ALLOWED LATENESS`'s interval.
pub const ALLOWED_LATENESS_SETTING: &str = "vigil_allowed_lateness";

/// `tokens` with each run of EMIT EARLY / ALLOWED LATENESS clauses as one SETTINGS clause.
pub(super) fn rewrite_emit_clauses(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let starts_clause = !matches!(tokens[i].token, Token::Whitespace(_));
        let Some(first) = clause_at(&tokens, i).filter(|_| starts_clause) else {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        };
        let span = tokens[i].span;
        let at = |token| TokenWithSpan { token, span };
        out.push(at(Token::make_keyword("SETTINGS")));
        let mut clause = Some(first);
        let mut separator = false;
        while let Some((setting, value_start)) = clause {
            let end = value_end(&tokens, value_start);
            if separator {
                out.push(at(Token::Comma));
            }
            out.push(at(Token::Whitespace(Whitespace::Space)));
            out.push(at(Token::make_word(setting, None)));
            out.push(at(Token::Whitespace(Whitespace::Space)));
            out.push(at(Token::Eq));
            out.extend_from_slice(&tokens[value_start..end]);
            separator = true;
            i = end;
            clause = clause_at(&tokens, i);
        }
    }
    out
}

/// At `i` (whitespace skipped): `EMIT EARLY EVERY` or `ALLOWED LATENESS`, as the setting it
/// becomes and where its value starts.
fn clause_at(tokens: &[TokenWithSpan], i: usize) -> Option<(&'static str, usize)> {
    let mut at = i;
    let mut word = |w: &str| {
        while tokens
            .get(at)
            .is_some_and(|t| matches!(t.token, Token::Whitespace(_)))
        {
            at += 1;
        }
        let found = tokens.get(at).is_some_and(|t| is_word(&t.token, w));
        at += usize::from(found);
        found
    };
    if word("EMIT") {
        return (word("EARLY") && word("EVERY")).then_some((EMIT_EARLY_SETTING, at));
    }
    if word("ALLOWED") {
        return word("LATENESS").then_some((ALLOWED_LATENESS_SETTING, at));
    }
    None
}

/// Where a clause's value starting at `start` ends: at the next clause, `;`, or a `)` it
/// did not open.
fn value_end(tokens: &[TokenWithSpan], start: usize) -> usize {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(start) {
        match &t.token {
            Token::LParen => depth += 1,
            Token::RParen if depth == 0 => return i,
            Token::RParen => depth -= 1,
            Token::SemiColon | Token::EOF if depth == 0 => return i,
            _ if depth == 0 && clause_at(tokens, i).is_some() => return i,
            _ => {}
        }
    }
    tokens.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        super::super::token_rewrite::rewritten(sql, rewrite_emit_clauses)
    }

    #[test]
    fn emit_clauses_become_settings() {
        assert_eq!(
            rewritten(
                "SELECT 1 GROUP BY a EMIT EARLY EVERY INTERVAL '1' MINUTE \
                 ALLOWED LATENESS INTERVAL '10' MINUTE;"
            ),
            "SELECT 1 GROUP BY a SETTINGS vigil_emit_early = INTERVAL '1' MINUTE, \
             vigil_allowed_lateness = INTERVAL '10' MINUTE;"
        );
    }

    #[test]
    fn ksqldb_emit_changes_is_left_to_its_hint() {
        let sql = "SELECT a FROM t EMIT CHANGES";
        assert_eq!(rewritten(sql), sql);
    }
}
