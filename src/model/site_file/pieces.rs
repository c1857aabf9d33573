//! A large site file is parsed a VM at a time. The `toml` crate holds a whole document in
//! a form many times its size while it parses it (a site of 100,000 VMs, 42 MiB of text,
//! peaked at 1.8 GB), and VMs are nearly all of such a file. So the text is cut where
//! each `[[vms]]` table begins and ends: each VM is parsed on its own (on every core),
//! its spans moved to where it stands in the file, and the rest of the file is parsed
//! with the VMs blanked out, keeping every other offset where it was.
//!
//! Cutting needs to know only where a line is a table header: outside strings (multi-line
//! ones span lines) and outside arrays or inline tables that span lines.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::doc::{DiskDoc, NicDoc, ProtectionDoc, SiteFileDoc, VmDoc};

/// Where each `[[vms]]` table of `text` is, with its sub-tables (`[vms.protection]`,
/// `[[vms.nics]]`), in the order written.
pub(super) fn vm_tables(text: &str) -> Vec<Range<usize>> {
    let mut tables = Vec::new();
    let mut open: Option<usize> = None;
    let mut scanner = Scanner::default();
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        if let Some(header) = scanner.header(line) {
            let path = header.path();
            match path.first().map(String::as_str) {
                Some("vms") if header.array && path.len() == 1 => {
                    if let Some(start) = open.replace(at) {
                        tables.push(start..at);
                    }
                }
                Some("vms") if open.is_some() => {}
                _ => {
                    if let Some(start) = open.take() {
                        tables.push(start..at);
                    }
                }
            }
        }
        scanner.scan(line);
        at += line.len();
    }
    if let Some(start) = open {
        tables.push(start..text.len());
    }
    tables
}

/// The text with `tables` blanked out: each becomes one empty line and one line of
/// spaces, so every other byte keeps its offset.
pub(super) fn without(text: &str, tables: &[Range<usize>]) -> String {
    let mut rest = String::with_capacity(text.len());
    let mut from = 0;
    for table in tables {
        rest.push_str(&text[from..table.start]);
        let len = table.end - table.start;
        rest.push('\n');
        rest.extend(std::iter::repeat_n(' ', len.saturating_sub(2)));
        if len >= 2 {
            rest.push('\n');
        }
        from = table.end;
    }
    rest.push_str(&text[from..]);
    rest
}

/// A VM table parsed alone: a document of one `[[vms]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OneVm {
    vms: Vec<VmDoc>,
}

/// A parse error at `span` of the whole text.
pub(super) struct ParseError {
    pub span: Range<usize>,
    pub message: String,
}

/// Parses the VM tables of `text`, each on its own, on as many threads as there are
/// cores; their spans are those of `text`. The first error in the file wins.
pub(super) fn parse_vms(text: &str, tables: &[Range<usize>]) -> Result<Vec<VmDoc>, ParseError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(tables.len().max(1));
    let per_thread = tables.len().div_ceil(threads).max(1);
    let batches: Vec<Result<Vec<VmDoc>, ParseError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = tables
            .chunks(per_thread)
            .map(|batch| scope.spawn(move || batch.iter().map(|table| parse_vm(text, table.clone())).collect()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a site file parser thread panicked")).collect()
    });
    let mut vms = Vec::with_capacity(tables.len());
    for batch in batches {
        vms.extend(batch?);
    }
    Ok(vms)
}

fn parse_vm(text: &str, table: Range<usize>) -> Result<VmDoc, ParseError> {
    let shift = table.start;
    let one: OneVm = toml::from_str(&text[table.clone()]).map_err(|e| ParseError {
        span: e.span().map_or(table.start..table.start, |s| s.start + shift..s.end + shift),
        message: e.message().trim_end().to_string(),
    })?;
    let mut vms = one.vms.into_iter();
    match (vms.next(), vms.next()) {
        (Some(vm), None) => Ok(vm.shifted(shift)),
        _ => Err(ParseError { span: table, message: "expected one VM table here".into() }),
    }
}

/// A site file parsed in pieces, as `toml::from_str::<SiteFileDoc>` would parse it whole.
pub(super) fn parse(text: &str) -> Result<SiteFileDoc, ParseError> {
    let tables = vm_tables(text);
    let whole = |text: &str| {
        toml::from_str::<SiteFileDoc>(text)
            .map_err(|e| ParseError { span: e.span().unwrap_or(0..0), message: e.message().trim_end().to_string() })
    };
    if tables.is_empty() {
        return whole(text);
    }
    let rest = whole(&without(text, &tables));
    let vms = parse_vms(text, &tables);
    match (rest, vms) {
        (Ok(mut doc), Ok(vms)) => {
            doc.vms = vms;
            Ok(doc)
        }
        (Err(a), Err(b)) => Err(if b.span.start < a.span.start { b } else { a }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    }
}

/// Moves a parsed piece's spans to where the piece stands in the whole text.
trait Shift {
    fn shifted(self, by: usize) -> Self;
}

impl<T> Shift for Spanned<T> {
    fn shifted(self, by: usize) -> Self {
        let span = self.span();
        Spanned::new(span.start + by..span.end + by, self.into_inner())
    }
}

impl<T: Shift> Shift for Option<T> {
    fn shifted(self, by: usize) -> Self {
        self.map(|v| v.shifted(by))
    }
}

impl<T: Shift> Shift for Vec<T> {
    fn shifted(self, by: usize) -> Self {
        self.into_iter().map(|v| v.shifted(by)).collect()
    }
}

/// Shifts the spanned fields of a document type; the others have no span.
macro_rules! shift_fields {
    ($type:ident { $($field:ident),* }) => {
        impl Shift for $type {
            // `..self` takes the fields without spans; where every field has one, it is
            // there only so that one macro serves all the types.
            #[allow(clippy::needless_update)]
            fn shifted(self, by: usize) -> Self {
                $type { $($field: self.$field.shifted(by),)* ..self }
            }
        }
    };
}

shift_fields!(VmDoc { name, site, host, os, size, boot_time, shutdown_time, disks, nics, protection });
shift_fields!(NicDoc { network, subnet, ip, target_ip });
shift_fields!(ProtectionDoc { policy, since, exclude });

impl Shift for DiskDoc {
    fn shifted(self, _by: usize) -> Self {
        self
    }
}

/// Where a line stands in TOML's grammar, line after line: inside a multi-line string,
/// or inside brackets or braces that span lines.
#[derive(Default)]
struct Scanner {
    /// The delimiter of the multi-line string the line starts in: `"""` or `'''`.
    string: Option<&'static str>,
    /// Open `[` and `{` of values.
    depth: usize,
}

/// A table header: `[a.b]` or `[[a.b]]`.
struct Header<'a> {
    array: bool,
    key: &'a str,
}

impl Header<'_> {
    /// The dotted key, with quotes taken off its parts.
    fn path(&self) -> Vec<String> {
        self.key.split('.').map(|part| part.trim().trim_matches(|c| c == '"' || c == '\'').to_string()).collect()
    }
}

impl Scanner {
    /// The header `line` is, if it is one (it begins outside any string or value).
    fn header<'a>(&self, line: &'a str) -> Option<Header<'a>> {
        if self.string.is_some() || self.depth > 0 {
            return None;
        }
        let line = line.trim_start();
        let (array, inner) = match line.strip_prefix("[[") {
            Some(inner) => (true, inner),
            None => (false, line.strip_prefix('[')?),
        };
        let close = if array { "]]" } else { "]" };
        let end = inner.find(close)?;
        Some(Header { array, key: &inner[..end] })
    }

    /// Follows `line` through strings, comments and brackets.
    fn scan(&mut self, line: &str) {
        let bytes = line.as_bytes();
        let mut i = 0;
        let header = self.header(line).is_some();
        while i < bytes.len() {
            if let Some(delimiter) = self.string {
                match find_unescaped(&line[i..], delimiter) {
                    Some(end) => {
                        i += end + delimiter.len();
                        // Up to two more quotes may close it ("""" ends with a quote).
                        while i < bytes.len() && bytes[i] == delimiter.as_bytes()[0] {
                            i += 1;
                        }
                        self.string = None;
                    }
                    None => return,
                }
                continue;
            }
            match bytes[i] {
                b'#' => return,
                b'"' | b'\'' => {
                    let quote = bytes[i];
                    let triple = if quote == b'"' { "\"\"\"" } else { "'''" };
                    if line[i..].starts_with(triple) {
                        self.string = Some(triple);
                        i += 3;
                        continue;
                    }
                    // A one-line string: to its closing quote (escapes only in "...").
                    i += 1;
                    while i < bytes.len() && bytes[i] != quote {
                        i += if quote == b'"' && bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                b'[' | b'{' if !header => {
                    self.depth += 1;
                    i += 1;
                }
                b']' | b'}' if !header => {
                    self.depth = self.depth.saturating_sub(1);
                    i += 1;
                }
                _ => i += 1,
            }
        }
    }
}

/// Where `delimiter` first appears in `text` not escaped by a backslash (which only a
/// basic string, `"""`, has).
fn find_unescaped(text: &str, delimiter: &str) -> Option<usize> {
    if delimiter == "'''" {
        return text.find(delimiter);
    }
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            i += 2;
        } else if text[i..].starts_with(delimiter) {
            return Some(i);
        } else {
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_tables_run_from_their_header_to_the_next_other_header_with_their_sub_tables() {
        let text = "[simulation]\nspeed = 1\n\n[[vms]]\nname = \"a\"\n[vms.protection]\npolicy = \"p\"\n[[vms.nics]]\nnetwork = \"n\"\n\n[[vms]]\nname = \"b\"\n[[faults]]\nkind = \"x\"\n[[ vms ]] # c\nname = \"c\"";
        let tables = vm_tables(text);
        let pieces: Vec<&str> = tables.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(pieces.len(), 3, "{pieces:?}");
        assert!(pieces[0].starts_with("[[vms]]\nname = \"a\"") && pieces[0].contains("[[vms.nics]]"));
        assert_eq!(pieces[1], "[[vms]]\nname = \"b\"\n");
        assert_eq!(pieces[2], "[[ vms ]] # c\nname = \"c\"");
        let rest = without(text, &tables);
        assert_eq!(rest.len(), text.len());
        assert!(rest.contains("[simulation]") && rest.contains("[[faults]]") && !rest.contains("vms"));
    }

    #[test]
    fn a_header_inside_a_multi_line_string_or_array_is_not_a_header() {
        let text = "[[vms]]\nname = \"a\"\nnote = \"\"\"\n[[faults]]\n\"\"\"\nhosts = [\n  [\"x\"]\n]\n[[faults]]\n";
        let tables = vm_tables(text);
        assert_eq!(tables.len(), 1);
        assert!(text[tables[0].clone()].ends_with("]\n"), "{:?}", &text[tables[0].clone()]);
        assert!(text[tables[0].end..].starts_with("[[faults]]"));
        let literal = "[[vms]]\nx = '''\n[[faults]]\n'''\ny = \"\\\"\"\n[[faults]]\n";
        assert_eq!(vm_tables(literal), vec![0..literal.rfind("[[faults]]").unwrap()]);
    }

    #[test]
    fn a_vm_parsed_alone_keeps_the_spans_it_has_in_the_whole_file() {
        let text = "[[sites]]\nname = \"p\"\nkind = \"onprem\"\n\n[[vms]]\nname = \"web01\"\nsite = \"p\"\nhost = \"h\"\nos = \"linux\"\nnics = [{ network = \"prod\", subnet = \"web\" }]\n";
        let whole: SiteFileDoc = toml::from_str(text).unwrap();
        let pieces = parse(text).ok().unwrap();
        assert_eq!(pieces.vms.len(), 1);
        let (a, b) = (&whole.vms[0], &pieces.vms[0]);
        assert_eq!(a.name.span(), b.name.span());
        assert_eq!(a.nics[0].subnet.span(), b.nics[0].subnet.span());
        assert_eq!(&text[b.host.span()], "\"h\"");
        assert_eq!(pieces.sites[0].name.span(), whole.sites[0].name.span());
    }

    #[test]
    fn the_first_error_in_the_file_is_reported_where_it_is() {
        let text = "[[vms]]\nname = \"a\"\nsite = \"p\"\nhost = \"h\"\nos = \"linux\"\n\n[[vms]]\nname = = 1\n[[faults]]\nkind = \"x\"\nkind = \"y\"\n";
        let err = parse(text).err().unwrap();
        assert_eq!(&text[err.span.start..err.span.start + 1], "=", "{}", err.message);
        assert!(err.span.start > text.find("[[vms]]\nname = =").unwrap());
    }
}
