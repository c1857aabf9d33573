//! Text for documents made of markup (the SVG chart): escaped, and cut to fit.

use std::fmt::{self, Write};

/// Text escaped for XML content and attributes. Characters XML cannot hold at all
/// (most control characters) become U+FFFD.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut last = 0;
        for (i, c) in s.char_indices() {
            let replacement = match c {
                '&' => "&amp;",
                '<' => "&lt;",
                '>' => "&gt;",
                '"' => "&quot;",
                '\'' => "&#39;",
                '\t' | '\n' | '\r' => continue,
                c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => "\u{FFFD}",
                _ => continue,
            };
            f.write_str(&s[last..i])?;
            f.write_str(replacement)?;
            last = i + c.len_utf8();
        }
        f.write_str(&s[last..])
    }
}

/// Escaped text cut to `max` characters, ending in an ellipsis when cut.
pub struct Trunc<'a>(pub &'a str, pub usize);

impl fmt::Display for Trunc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Trunc(s, max) = *self;
        if max == 0 || s.char_indices().nth(max).is_none() {
            return Esc(s).fmt(f);
        }
        let cut = s.char_indices().nth(max - 1).map_or(s.len(), |(i, _)| i);
        Esc(&s[..cut]).fmt(f)?;
        f.write_char('\u{2026}')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_cut_on_characters() {
        assert_eq!(Esc("a<b>&\"c'\u{1}\n").to_string(), "a&lt;b&gt;&amp;&quot;c&#39;\u{FFFD}\n");
        assert_eq!(Trunc("h\u{e9}llo w\u{f6}rld", 5).to_string(), "h\u{e9}ll\u{2026}");
        assert_eq!(Trunc("<&>", 3).to_string(), "&lt;&amp;&gt;");
    }
}
