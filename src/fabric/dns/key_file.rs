//! A TSIG secret as an operator keeps it: the bare base64 secret, or a key file as
//! `tsig-keygen` (and `ddns-confgen`) write it, in BIND's configuration grammar:
//!
//! ```text
//! # comments: '#', '//' and '/* */'
//! key "drplan" {
//!         algorithm hmac-sha256;
//!         secret "c2VjcmV0LWJ5dGVz...";
//! };
//! ```
//!
//! The text is read token by token, so a key named `dr-secret` is a name, not the start of
//! its secret. The key a file holds must be the one `drplan.toml` names, with the same
//! algorithm: a file meant for another key, or a key whose algorithm differs from the
//! configuration's, is an error rather than a signature the server will reject. Errors
//! name keys and lines, never the secret.

use super::rfc2136::TsigAlgorithm;
use super::same_name;

/// The secret and algorithm of the key a configuration names, as read from its file.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret {
    /// The base64 text of the secret.
    pub base64: String,
    pub algorithm: TsigAlgorithm,
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySecret").field("base64", &"***").field("algorithm", &self.algorithm).finish()
    }
}

/// Reads the secret of key `name` from `text` (a key file, or a bare base64 secret).
/// `algorithm` is the configuration's, if it gives one: a key file's must agree with it;
/// without one, a key file's algorithm is used, and a bare secret's is HMAC-SHA256.
pub fn key_secret(text: &str, name: &str, algorithm: Option<TsigAlgorithm>) -> Result<KeySecret, String> {
    let tokens = tokens(text)?;
    if tokens.len() <= 1 {
        return bare_secret(&tokens, algorithm);
    }
    let keys = key_statements(&tokens)?;
    let mut named = keys.iter().filter(|key| same_name(&key.name, name));
    let Some(key) = named.next() else {
        let found: Vec<String> = keys.iter().map(|key| format!("{:?}", key.name)).collect();
        return Err(format!(
            "it holds the key {}, not {name:?}: the key name in drplan.toml and in the key file must be the same (the server knows the key by it)",
            found.join(", ")
        ));
    };
    if named.next().is_some() {
        return Err(format!("it defines the key {name:?} twice"));
    }
    let line = key.line;
    let written = key.algorithm.as_ref().ok_or_else(|| {
        format!("line {line}: the key {name:?} has no algorithm; tsig-keygen writes one, e.g. `algorithm hmac-sha256;`")
    })?;
    let in_file: TsigAlgorithm = written.parse().map_err(|e| format!("line {line}: {e}"))?;
    if let Some(configured) = algorithm
        && configured != in_file
    {
        return Err(format!(
            "the key {name:?} is {in_file} in the key file but {configured} in drplan.toml: make them the same (the server checks the algorithm with the key)"
        ));
    }
    let base64 = key.secret.clone().ok_or_else(|| format!("line {line}: the key {name:?} has no secret"))?;
    Ok(KeySecret { base64, algorithm: in_file })
}

/// A file that is just the secret: one word of base64.
fn bare_secret(tokens: &[Token], algorithm: Option<TsigAlgorithm>) -> Result<KeySecret, String> {
    match tokens {
        [] => Err("it is empty".into()),
        [only] if !only.quoted && only.text.bytes().all(is_base64) => {
            Ok(KeySecret { base64: only.text.clone(), algorithm: algorithm.unwrap_or_default() })
        }
        [first, ..] => Err(format!(
            "line {}: it is neither a base64 secret nor a key file as tsig-keygen writes it (`key \"NAME\" {{ algorithm …; secret \"…\"; }};`)",
            first.line
        )),
    }
}

fn is_base64(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/' | b'=')
}

/// One `key NAME { … };` statement.
struct KeyStatement {
    name: String,
    algorithm: Option<String>,
    secret: Option<String>,
    line: usize,
}

/// `key NAME { algorithm WORD; secret STRING; };`, as many times as the file has them.
fn key_statements(tokens: &[Token]) -> Result<Vec<KeyStatement>, String> {
    let mut keys = Vec::new();
    let mut rest = Parser { tokens, at: 0 };
    while let Some(first) = rest.next() {
        if first.quoted || first.text != "key" {
            return Err(format!("line {}: expected a `key` statement, found {}", first.line, first.shown()));
        }
        let name = rest.value("the key's name", first.line)?;
        rest.punct("{", first.line)?;
        let mut key = KeyStatement { name: name.text.clone(), algorithm: None, secret: None, line: first.line };
        loop {
            let clause = rest.word("a clause (`algorithm`, `secret`) or `}`", first.line)?;
            match (clause.text.as_str(), clause.quoted) {
                ("}", false) => break,
                ("algorithm", false) => key.algorithm = Some(rest.value("the algorithm", clause.line)?.text.clone()),
                // The secret's text is never shown, even in an error.
                ("secret", false) => key.secret = Some(rest.value("the secret", clause.line)?.text.clone()),
                _ => {
                    return Err(format!(
                        "line {}: the key {:?} has an unknown clause {}; a key has `algorithm` and `secret`",
                        clause.line,
                        key.name,
                        clause.shown()
                    ));
                }
            }
            rest.punct(";", clause.line)?;
        }
        rest.punct(";", first.line)?;
        keys.push(key);
    }
    Ok(keys)
}

struct Parser<'t> {
    tokens: &'t [Token],
    at: usize,
}

impl<'t> Parser<'t> {
    fn next(&mut self) -> Option<&'t Token> {
        let token = self.tokens.get(self.at)?;
        self.at += 1;
        Some(token)
    }

    /// The next token, whatever it is; `what` says what was expected, for the error.
    fn word(&mut self, what: &str, line: usize) -> Result<&'t Token, String> {
        self.next().ok_or_else(|| format!("line {line}: the file ends where {what} was expected"))
    }

    /// A name or value: a quoted string or a bare word, not punctuation.
    fn value(&mut self, what: &str, line: usize) -> Result<&'t Token, String> {
        let token = self.word(what, line)?;
        if !token.quoted && ["{", "}", ";"].contains(&token.text.as_str()) {
            return Err(format!("line {}: expected {what}, found {}", token.line, token.shown()));
        }
        Ok(token)
    }

    fn punct(&mut self, punct: &str, line: usize) -> Result<(), String> {
        let token = self.word(&format!("`{punct}`"), line)?;
        if token.quoted || token.text != punct {
            return Err(format!("line {}: expected `{punct}`, found {}", token.line, token.shown()));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Token {
    text: String,
    /// Written in double quotes: a string, never punctuation or a keyword.
    quoted: bool,
    line: usize,
}

impl Token {
    /// The token for an error message: punctuation and keyword-like words as written;
    /// a quoted string or any other word only as what it is (it may be a secret).
    fn shown(&self) -> String {
        let keyword_like = self.text.len() <= 32
            && self.text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._{};".contains(&b));
        match (self.quoted, keyword_like) {
            (true, _) => "a quoted string".into(),
            (false, true) => format!("`{}`", self.text),
            (false, false) => "a word".into(),
        }
    }
}

/// BIND's lexical grammar, as far as key files use it: words, double-quoted strings (with
/// `\` escapes), `{`, `}`, `;`, and comments in three styles.
fn tokens(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            c if c.is_whitespace() => {}
            '#' => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'/') => skip_line(&mut chars, &mut line),
            '/' if chars.peek() == Some(&'*') => {
                let opened = line;
                chars.next();
                let mut previous = ' ';
                loop {
                    match chars.next() {
                        None => return Err(format!("line {opened}: a /* comment is never closed")),
                        Some('/') if previous == '*' => break,
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            previous = c;
                        }
                    }
                }
            }
            '{' | '}' | ';' => tokens.push(Token { text: c.to_string(), quoted: false, line }),
            '"' => {
                let opened = line;
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(format!("line {opened}: a quoted string is never closed")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(escaped) => text.push(escaped),
                            None => return Err(format!("line {opened}: a quoted string is never closed")),
                        },
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            text.push(c);
                        }
                    }
                }
                tokens.push(Token { text, quoted: true, line: opened });
            }
            c => {
                let mut text = c.to_string();
                while let Some(&next) = chars.peek() {
                    if next.is_whitespace() || matches!(next, '{' | '}' | ';' | '"' | '#') {
                        break;
                    }
                    text.push(next);
                    chars.next();
                }
                tokens.push(Token { text, quoted: false, line });
            }
        }
    }
    Ok(tokens)
}

fn skip_line(chars: &mut std::iter::Peekable<std::str::Chars<'_>>, line: &mut usize) {
    for c in chars.by_ref() {
        if c == '\n' {
            *line += 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LWJ5dGVzLXNlY3JldC1ieXRlcw==";

    fn keygen(name: &str, algorithm: &str) -> String {
        format!("key \"{name}\" {{\n\talgorithm {algorithm};\n\tsecret \"{SECRET}\";\n}};\n")
    }

    #[test]
    fn tsig_keygens_file_gives_the_secret_and_the_algorithm() {
        let key = key_secret(&keygen("drplan", "hmac-sha512"), "drplan", None).unwrap();
        assert_eq!(key, KeySecret { base64: SECRET.into(), algorithm: TsigAlgorithm::HmacSha512 });
        let same = key_secret(&keygen("drplan", "hmac-sha256"), "drplan", Some(TsigAlgorithm::HmacSha256)).unwrap();
        assert_eq!(same.algorithm, TsigAlgorithm::HmacSha256);
    }

    #[test]
    fn a_key_whose_name_holds_the_word_secret_is_read_by_the_grammar() {
        // The old reader split the text at the first "secret": the one in the key's name.
        for name in ["dr-secret", "secret", "secret.drplan.example"] {
            let key = key_secret(&keygen(name, "hmac-sha256"), name, None).unwrap();
            assert_eq!(key.base64, SECRET, "{name}");
        }
    }

    #[test]
    fn a_key_file_for_another_key_is_an_error_naming_both() {
        let error = key_secret(&keygen("dr-secret", "hmac-sha256"), "drplan", None).unwrap_err();
        assert_eq!(
            error,
            "it holds the key \"dr-secret\", not \"drplan\": the key name in drplan.toml and in the key file must be the same (the server knows the key by it)"
        );
        assert!(!error.contains(SECRET));
        // Names compare as DNS names: case and a final dot aside.
        assert!(key_secret(&keygen("DRPLAN.", "hmac-sha256"), "drplan", None).is_ok());
    }

    #[test]
    fn a_key_file_whose_algorithm_differs_from_the_configurations_is_an_error() {
        let error =
            key_secret(&keygen("drplan", "hmac-sha512"), "drplan", Some(TsigAlgorithm::HmacSha256)).unwrap_err();
        assert_eq!(
            error,
            "the key \"drplan\" is hmac-sha512 in the key file but hmac-sha256 in drplan.toml: make them the same (the server checks the algorithm with the key)"
        );
        let unknown = key_secret(&keygen("drplan", "hmac-md5"), "drplan", None).unwrap_err();
        assert!(unknown.starts_with("line 1: unsupported TSIG algorithm \"hmac-md5\""), "{unknown}");
    }

    #[test]
    fn comments_and_several_keys_are_understood() {
        let text = format!(
            "# made by tsig-keygen\n// for the drill zone\n/* two keys:\n   one for each */\n{}{}",
            keygen("other", "hmac-sha256").replace(SECRET, "b3RoZXI="),
            keygen("drplan", "hmac-sha384")
        );
        let key = key_secret(&text, "drplan", None).unwrap();
        assert_eq!((key.base64.as_str(), key.algorithm), (SECRET, TsigAlgorithm::HmacSha384));
        let twice = format!("{}{}", keygen("drplan", "hmac-sha256"), keygen("drplan", "hmac-sha256"));
        assert_eq!(key_secret(&twice, "drplan", None).unwrap_err(), "it defines the key \"drplan\" twice");
    }

    #[test]
    fn a_bare_secret_takes_the_configurations_algorithm() {
        let key = key_secret(&format!("  {SECRET}\n"), "drplan", Some(TsigAlgorithm::HmacSha512)).unwrap();
        assert_eq!((key.base64.as_str(), key.algorithm), (SECRET, TsigAlgorithm::HmacSha512));
        assert_eq!(key_secret(SECRET, "drplan", None).unwrap().algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(key_secret(" \n", "drplan", None).unwrap_err(), "it is empty");
    }

    #[test]
    fn broken_files_are_located_and_never_show_the_secret() {
        let cases = [
            (format!("key \"drplan\" {{ algorithm hmac-sha256; secret \"{SECRET}\"; }}"), "the file ends where `;`"),
            (format!("key \"drplan\" {{ algorithm hmac-sha256; secret \"{SECRET}\" }};"), "expected `;`, found `}`"),
            (format!("key \"drplan\" {{ secret \"{SECRET}\"; }};"), "has no algorithm"),
            ("key \"drplan\" { algorithm hmac-sha256; };".into(), "has no secret"),
            (
                format!("key \"drplan\" {{\n algorithm hmac-sha256;\n secrets \"{SECRET}\"; }};"),
                "line 3: the key \"drplan\" has an unknown clause `secrets`",
            ),
            (format!("key \"drplan\" {{ secret \"{SECRET}"), "line 1: a quoted string is never closed"),
            (
                format!("options {{ }};\n{}", keygen("drplan", "hmac-sha256")),
                "line 1: expected a `key` statement, found `options`",
            ),
            (format!("/* {}", keygen("drplan", "hmac-sha256")), "a /* comment is never closed"),
            (format!("secret {SECRET}"), "line 1: expected a `key` statement, found `secret`"),
            ("\"c2VjcmV0\"".into(), "line 1: it is neither a base64 secret nor a key file"),
            ("c2Vj*cmV0".into(), "line 1: it is neither a base64 secret nor a key file"),
        ];
        for (text, phrase) in cases {
            let error = key_secret(&text, "drplan", None).unwrap_err();
            assert!(error.contains(phrase), "{phrase:?} not in {error:?}");
            assert!(!error.contains(SECRET) && !error.contains("c2VjcmV0"), "the secret leaks: {error}");
        }
    }
}
