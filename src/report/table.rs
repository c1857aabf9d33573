//! Plain-text tables with aligned columns, for terminal reports.

/// Renders rows under a header, each column as wide as its widest cell; the last column
/// is not padded so lines carry no trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        // An empty last cell would leave the padding of the one before it.
        out.truncate(out.trim_end_matches(' ').len());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_and_lines_end_clean() {
        let text =
            super::render(&["VM", "STATE"], &[vec!["sql01".into(), "protected".into()], vec!["a".into(), "x".into()]]);
        assert_eq!(text, "VM     STATE\nsql01  protected\na      x\n");
        let empty_last = super::render(&["A", "B"], &[vec!["x".into(), String::new()]]);
        assert_eq!(empty_last, "A  B\nx\n");
    }
}
