//! What a `vigil test` run found, for people (one line per case) and for CI (JUnit XML, the
//! format GitHub Actions, GitLab and Jenkins read test results in).

use std::fmt::Write as _;

use crate::runner::CaseOutcome;

/// The cases of one rule's test file.
#[derive(Debug, Clone)]
pub struct RuleReport {
    /// The rule (its file's stem).
    pub rule: String,
    /// The test file.
    pub file: String,
    /// Its cases that ran.
    pub cases: Vec<CaseOutcome>,
}

/// A whole run.
#[derive(Debug, Clone, Default)]
pub struct TestReport {
    /// Per rule tested, in name order.
    pub rules: Vec<RuleReport>,
    /// Rules of the directory that have no test file.
    pub untested: Vec<String>,
}

impl TestReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases().filter(|c| c.passed()).count()
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases().filter(|c| !c.passed()).count()
    }

    fn cases(&self) -> impl Iterator<Item = &CaseOutcome> {
        self.rules.iter().flat_map(|r| &r.cases)
    }

    /// The report for people: `ok`/`FAIL` per case with its failures indented, then the
    /// untested rules and the totals.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for case in self.cases() {
            let mark = if case.passed() { "ok  " } else { "FAIL" };
            let _ = writeln!(out, "{mark}  {}: {}", case.location, case.name);
            for line in case.failures.iter().flat_map(|f| f.lines()) {
                let _ = writeln!(out, "      {line}");
            }
        }
        if !self.untested.is_empty() {
            let _ = writeln!(out, "rules with no test: {}", self.untested.join(", "));
        }
        let _ = writeln!(out, "{} passed, {} failed", self.passed(), self.failed());
        out
    }

    /// JUnit XML: one `<testsuite>` per rule, one `<testcase>` per case (classname the
    /// rule, file and line where the case starts), a `<failure>` with the diff for each
    /// failure; untested rules as skipped cases, so CI dashboards show them.
    pub fn junit(&self) -> String {
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let seconds: f64 = self.cases().map(|c| c.seconds).sum();
        let _ = writeln!(
            out,
            "<testsuites name=\"vigil test\" tests=\"{}\" failures=\"{}\" errors=\"0\" \
             skipped=\"{}\" time=\"{seconds:.3}\">",
            self.cases().count() + self.untested.len(),
            self.failed(),
            self.untested.len()
        );
        for rule in &self.rules {
            suite(&mut out, rule);
        }
        if !self.untested.is_empty() {
            let _ = writeln!(
                out,
                "  <testsuite name=\"untested\" tests=\"{0}\" failures=\"0\" errors=\"0\" \
                 skipped=\"{0}\" time=\"0\">",
                self.untested.len()
            );
            for rule in &self.untested {
                let _ = writeln!(
                    out,
                    "    <testcase classname=\"{0}\" name=\"{0} has no test\" time=\"0\">\
                     <skipped message=\"no tests/{0}.test\"/></testcase>",
                    escape(rule)
                );
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

fn suite(out: &mut String, rule: &RuleReport) {
    let failures = rule.cases.iter().filter(|c| !c.passed()).count();
    let seconds: f64 = rule.cases.iter().map(|c| c.seconds).sum();
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" \
         skipped=\"0\" time=\"{seconds:.3}\" file=\"{}\">",
        escape(&rule.rule),
        rule.cases.len(),
        escape(&rule.file)
    );
    for case in &rule.cases {
        let line = case.location.rsplit(':').next().unwrap_or_default();
        let _ = write!(
            out,
            "    <testcase classname=\"{}\" name=\"{}\" file=\"{}\" line=\"{}\" time=\"{:.3}\"",
            escape(&rule.rule),
            escape(&case.name),
            escape(&rule.file),
            escape(line),
            case.seconds
        );
        if case.passed() {
            out.push_str("/>\n");
            continue;
        }
        let first = case.failures[0].lines().next().unwrap_or_default();
        let _ = writeln!(
            out,
            ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
            escape(first),
            escape(&case.failures.join("\n"))
        );
    }
    out.push_str("  </testsuite>\n");
}

/// Text as XML character data or an attribute value.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            // XML 1.0 cannot carry other control characters at all.
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_and_diffs_is_escaped() {
        assert_eq!(
            escape("a < b & \"c\"\u{1}"),
            "a &lt; b &amp; &quot;c&quot;\u{fffd}"
        );
    }
}
