//! Line diffs: the longest common subsequence of two sequences, for a rule test's rows,
//! `vigil fmt --check` and the SQL of a changed rule in a deploy plan.

/// Where a line of a diff comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Both sides.
    Same,
    /// The old (expected) side only.
    Removed,
    /// The new (actual) side only.
    Added,
}

impl Mark {
    /// The diff's mark: ` `, `-` or `+`.
    pub fn symbol(self) -> char {
        match self {
            Mark::Same => ' ',
            Mark::Removed => '-',
            Mark::Added => '+',
        }
    }
}

/// `old` turned into `new` with as many items kept as possible, as marked items in order.
pub fn diff<'a, T: PartialEq>(old: &'a [T], new: &'a [T]) -> Vec<(Mark, &'a T)> {
    let (n, m) = (old.len(), new.len());
    // common[i][j]: the length of the longest common subsequence of old[i..] and new[j..].
    let mut common = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            common[i][j] = if old[i] == new[j] {
                common[i + 1][j + 1] + 1
            } else {
                common[i + 1][j].max(common[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut lines = Vec::with_capacity(n + m);
    while i < n || j < m {
        if i < n && j < m && old[i] == new[j] {
            lines.push((Mark::Same, &old[i]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || common[i + 1][j] >= common[i][j + 1]) {
            lines.push((Mark::Removed, &old[i]));
            i += 1;
        } else {
            lines.push((Mark::Added, &new[j]));
            j += 1;
        }
    }
    lines
}

/// Lines of context kept around each change in [`text_diff`].
const CONTEXT: usize = 2;

/// A unified diff of two texts: `@@ -a,b +c,d @@` hunks with two lines of context, each
/// line prefixed by `indent` and its mark. Empty when the texts are the same.
pub fn text_diff(old: &str, new: &str, indent: &str) -> String {
    let old: Vec<&str> = old.lines().collect();
    let new: Vec<&str> = new.lines().collect();
    let lines = diff(&old, &new);
    let changed: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].0 != Mark::Same)
        .collect();
    let mut out = Vec::new();
    let mut next = 0;
    while next < changed.len() {
        let start = changed[next].saturating_sub(CONTEXT);
        let mut end = changed[next] + CONTEXT + 1;
        while next + 1 < changed.len() && changed[next + 1] <= end + CONTEXT {
            next += 1;
            end = changed[next] + CONTEXT + 1;
        }
        end = end.min(lines.len());
        out.push(format!("{indent}{}", hunk_header(&lines, start, end)));
        for (mark, line) in &lines[start..end] {
            out.push(
                format!("{indent}{}{line}", mark.symbol())
                    .trim_end()
                    .to_string(),
            );
        }
        next += 1;
    }
    out.join("\n")
}

/// `@@ -first,count +first,count @@` for the marked lines `start..end`.
fn hunk_header(lines: &[(Mark, &&str)], start: usize, end: usize) -> String {
    let before = |side: Mark| {
        lines[..start]
            .iter()
            .filter(|(m, _)| *m == Mark::Same || *m == side)
            .count()
    };
    let within = |side: Mark| {
        lines[start..end]
            .iter()
            .filter(|(m, _)| *m == Mark::Same || *m == side)
            .count()
    };
    let range = |side: Mark| {
        let count = within(side);
        let first = before(side) + usize::from(count > 0);
        format!("{first},{count}")
    };
    format!("@@ -{} +{} @@", range(Mark::Removed), range(Mark::Added))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_text_diff_shows_hunks_with_context_and_their_line_numbers() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\n";
        let new = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\n";
        assert_eq!(
            text_diff(old, new, "  "),
            "  @@ -1,4 +1,4 @@\n  \x20a\n  -b\n  +B\n  \x20c\n  \x20d\n\
             \x20 @@ -9,2 +9,3 @@\n  \x20i\n  \x20j\n  +k"
        );
        assert_eq!(text_diff(old, old, ""), "");
    }

    #[test]
    fn close_changes_share_one_hunk() {
        let diff = text_diff("1\n2\n3\n4\n5\n6\n", "1\nX\n3\n4\nY\n6\n", "");
        assert_eq!(diff.matches("@@").count(), 2, "{diff}");
    }
}
