//! The size of the terminal results are printed on.

/// Columns and rows of the terminal on standard output, when it is one with a usable size
/// (a fresh pseudo-terminal reports 0 x 0).
pub fn size() -> Option<(usize, usize)> {
    let (width, height) = terminal_size::terminal_size()?;
    let (columns, rows) = (usize::from(width.0), usize::from(height.0));
    (columns >= 20 && rows >= 8).then_some((columns, rows))
}
