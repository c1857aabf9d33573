//! Plain-text tables with aligned columns, for terminal reports, fitted to a width.
//!
//! A table fits its width without losing words: first it hides the columns a reader can
//! spare (the detail `--wide` brings back), then it wraps the columns of free text. A
//! row's cells stay on its lines, so the table still reads down its columns.

use std::borrow::Cow;
/// How wide a table may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// At most this many terminal columns, if hiding and wrapping can get there.
    Fit(usize),
    /// As wide as its cells: `--wide`.
    Full,
}

impl Width {
    /// The width left beside a margin of `columns`.
    pub fn less(self, columns: usize) -> Width {
        match self {
            Width::Fit(n) => Width::Fit(n.saturating_sub(columns)),
            Width::Full => Width::Full,
        }
    }
}

/// What a column gives up when the table is too wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Give {
    /// Nothing: short values that must stay whole on one line (names, states, times).
    Nothing,
    /// Its line: free text wraps onto further lines of the row.
    Line,
    /// Its place: hidden, lowest rank first, before any text wraps.
    Place(u8),
}

/// A column header and what the column gives up to make the table fit.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    name: &'static str,
    give: Give,
}

/// A column that always shows whole.
pub const fn keep(name: &'static str) -> Column {
    Column { name, give: Give::Nothing }
}

/// A column of free text that wraps.
pub const fn wrap(name: &'static str) -> Column {
    Column { name, give: Give::Line }
}

/// A column hidden when the table is too wide; `rank` 0 goes first.
pub const fn spare(name: &'static str, rank: u8) -> Column {
    Column { name, give: Give::Place(rank) }
}

/// No text column wraps narrower than this, so each line still says something.
const NARROWEST: usize = 16;

/// Renders rows under a header, each column as wide as its widest cell within `width`;
/// the last column is not padded so lines carry no trailing spaces. When columns had to
/// be hidden, a last line names them.
pub fn render(columns: &[Column], rows: &[Vec<String>], width: Width) -> String {
    let mut out = Vec::new();
    write(&mut out, "", columns, rows, width).expect("writing into memory");
    String::from_utf8(out).expect("cells are UTF-8")
}

/// [`render`], written line by line to `out` with `margin` before each line: a table of
/// a large run's steps is never held whole.
pub fn write(
    out: &mut impl std::io::Write,
    margin: &str,
    columns: &[Column],
    rows: &[Vec<String>],
    width: Width,
) -> std::io::Result<()> {
    let measure = |cell: &str| console::measure_text_width(&one_line(cell));
    let mut widths: Vec<Option<usize>> = columns.iter().map(|c| Some(measure(c.name))).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = w.map(|w| w.max(measure(cell)));
        }
    }
    if let Width::Fit(limit) = width {
        fit(columns, &mut widths, limit);
    }

    let mut write_line = |line: &str| {
        out.write_all(margin.as_bytes())?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")
    };
    let header: Vec<String> = columns.iter().map(|c| c.name.to_string()).collect();
    let mut line = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<(usize, Vec<String>)> =
            row.iter().zip(&widths).filter_map(|(cell, w)| w.map(|w| (w, lines_of(cell, w)))).collect();
        let height = cells.iter().map(|(_, lines)| lines.len()).max().unwrap_or(1);
        for at in 0..height {
            line.clear();
            for (i, (w, lines)) in cells.iter().enumerate() {
                let text = lines.get(at).map(String::as_str).unwrap_or("");
                line.push_str(text);
                if i + 1 != cells.len() {
                    line.push_str(&" ".repeat(w.saturating_sub(measure(text)) + 2));
                }
            }
            // An empty last cell would leave the padding of the one before it.
            write_line(line.trim_end_matches(' '))?;
        }
    }
    let hidden: Vec<&str> = columns.iter().zip(&widths).filter(|(_, w)| w.is_none()).map(|(c, _)| c.name).collect();
    if !hidden.is_empty() {
        let note = format!("({} hidden to fit the width; --wide shows every column)", hidden.join(", "));
        let limit = match width {
            Width::Fit(limit) => limit,
            Width::Full => usize::MAX,
        };
        for note_line in lines_of(&note, limit) {
            write_line(&note_line)?;
        }
    }
    Ok(())
}

/// `text` kept on one line: a newline becomes " | ", other control characters a space
/// (a tool's multi-line error inside a table cell or a live output line).
pub fn one_line(text: &str) -> Cow<'_, str> {
    if !text.contains(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for c in text.trim_end().chars() {
        match c {
            '\n' => out.push_str(" | "),
            '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A cell's lines within `width`: whole when it fits, else wrapped at words.
fn lines_of(cell: &str, width: usize) -> Vec<String> {
    let cell = &*one_line(cell);
    if console::measure_text_width(cell) <= width {
        return vec![cell.to_string()];
    }
    // Timestamps and addresses hold hyphens; they break at spaces only.
    let options = textwrap::Options::new(width).word_splitter(textwrap::WordSplitter::NoHyphenation);
    textwrap::wrap(cell, options).into_iter().map(|line| line.into_owned()).collect()
}

/// Hides spare columns, then narrows the widest text column, until the line fits `limit`
/// or nothing can give more.
fn fit(columns: &[Column], widths: &mut [Option<usize>], limit: usize) {
    let total = |widths: &[Option<usize>]| {
        let shown: Vec<usize> = widths.iter().flatten().copied().collect();
        shown.iter().sum::<usize>() + 2 * shown.len().saturating_sub(1)
    };
    let mut spares: Vec<(u8, usize)> = columns
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c.give {
            Give::Place(rank) => Some((rank, i)),
            _ => None,
        })
        .collect();
    spares.sort();
    for (_, i) in spares {
        if total(widths) <= limit {
            return;
        }
        widths[i] = None;
    }
    while total(widths) > limit {
        let widest = columns
            .iter()
            .zip(widths.iter())
            .enumerate()
            .filter(|(_, (c, w))| c.give == Give::Line && w.is_some_and(|w| w > NARROWEST))
            .max_by_key(|(i, (_, w))| (*w, *i));
        let Some((widest, _)) = widest else { return };
        let excess = total(widths) - limit;
        widths[widest] = widths[widest].map(|w| w.saturating_sub(excess).max(NARROWEST));
    }
}

#[cfg(test)]
mod tests {
    use super::{Width, keep, spare, wrap};

    #[test]
    fn columns_align_and_lines_end_clean() {
        let rows = [vec!["sql01".into(), "protected".into()], vec!["a".into(), "x".into()]];
        let text = super::render(&[keep("VM"), keep("STATE")], &rows, Width::Full);
        assert_eq!(text, "VM     STATE\nsql01  protected\na      x\n");
        let empty_last = super::render(&[keep("A"), keep("B")], &[vec!["x".into(), String::new()]], Width::Full);
        assert_eq!(empty_last, "A  B\nx\n");
    }

    #[test]
    fn a_cell_holding_a_tools_multi_line_error_stays_on_its_row() {
        let rows = [
            vec!["app05".into(), "failed: error: no socket\nerror: no such file\n".into()],
            vec!["b".into(), "x".into()],
        ];
        let text = super::render(&[keep("VM"), keep("STATE")], &rows, Width::Full);
        assert_eq!(text, "VM     STATE\napp05  failed: error: no socket | error: no such file\nb      x\n");
    }

    #[test]
    fn a_table_fits_its_width_by_hiding_spare_columns_then_wrapping_text() {
        let next = "test failover, planned failover, unplanned failover, unprotect".to_string();
        let columns = [keep("VM"), spare("POINTS", 0), keep("STATE"), wrap("NEXT")];
        let rows = [vec!["sql01".into(), "209".into(), "protected".into(), next.clone()]];
        let text = super::render(&columns, &rows, Width::Fit(40));
        for line in text.lines() {
            assert!(console::measure_text_width(line) <= 40, "{line:?}");
        }
        let table: Vec<&str> = text.lines().collect();
        assert_eq!(table[0], "VM     STATE      NEXT");
        assert_eq!(table[1], "sql01  protected  test failover, planned");
        assert!(table.iter().all(|line| !line.contains("209")), "{text}");
        assert!(text.contains("(POINTS hidden to fit the width;"), "{text}");
        let words: Vec<&str> = table[1..].iter().flat_map(|l| l.split_whitespace()).collect();
        assert!(words.join(" ").contains("failover, unplanned failover, unprotect"), "no word lost: {text}");
        let wide = super::render(&columns, &rows, Width::Full);
        assert!(wide.contains("209") && wide.contains(&next), "{wide}");
    }

    #[test]
    fn a_table_that_fits_keeps_every_column() {
        let columns = [keep("VM"), spare("POINTS", 0)];
        let text = super::render(&columns, &[vec!["sql01".into(), "209".into()]], Width::Fit(40));
        assert_eq!(text, "VM     POINTS\nsql01  209\n");
    }
}
