//! The plan folder's config file, `drplan.toml`: settings that apply to every plan of
//! the folder it sits in. Today it names the global hook scripts — hooks loaded for every
//! run of every plan there (custom post-failover actions: notifications, audit) — after
//! the plan's own hooks, in the order listed:
//!
//! ```toml
//! [hooks]
//! scripts = ["hooks/notify.rhai", "hooks/audit.rhai"]   # relative to the folder
//! ```
//!
//! Pure parsing, no I/O: the script layer reads the file (a missing one means the
//! default, no hooks) and loads the scripts. Unknown sections and keys are errors, so a
//! typo is never silently ignored; every error names the file, line and column.

use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::SourcePos;

/// The config file's name, in a plan's folder.
pub const CONFIG_FILE: &str = "drplan.toml";

/// `drplan.toml`, as parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanConfig {
    /// `[hooks] scripts`: hook scripts, relative to the folder, as written and in order.
    pub hooks: Vec<PathBuf>,
    /// Where each of `hooks` is written in the config file, for errors about it (a
    /// missing script, one that leaves the folder through a link).
    pub hooks_at: Vec<SourcePos>,
}

/// `drplan.toml` is broken; `Display` is "file:line:column: message".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ConfigError {
    pub at: SourcePos,
    pub message: String,
}

// The document as written.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigDoc {
    #[serde(default)]
    hooks: HooksDoc,
    // `[dns]` (the DNS servers of the folder's plans, R50) comes with a later issue. Until
    // then it is an unknown section, and so an error like any other.
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct HooksDoc {
    #[serde(default)]
    scripts: Vec<Spanned<String>>,
}

/// Parses the text of a plan folder's `drplan.toml`. `path` is only used in messages.
pub fn parse_config(text: &str, path: &Path) -> Result<PlanConfig, ConfigError> {
    let file = path.display().to_string();
    let error = |span: Range<usize>, message: String| {
        let (line, column) = line_column(text, span.start);
        ConfigError { at: SourcePos::new(file.as_str(), line, column), message }
    };
    let doc: ConfigDoc =
        toml::from_str(text).map_err(|e| error(e.span().unwrap_or(0..0), e.message().trim_end().to_string()))?;
    let mut config = PlanConfig::default();
    for (i, script) in doc.hooks.scripts.iter().enumerate() {
        let field = format!("hooks.scripts[{i}]");
        let written = script.get_ref().as_str();
        let relative = Path::new(written);
        let how =
            "a hook script is named relative to the plan's folder and stays inside it, e.g. \"hooks/notify.rhai\"";
        if written.trim().is_empty() {
            return Err(error(script.span(), format!("{field}: the path is empty; {how}")));
        }
        if relative.is_absolute() || written.starts_with(['/', '\\']) || written.contains(':') {
            return Err(error(script.span(), format!("{field}: {written:?} is an absolute path; {how}")));
        }
        if relative.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir)) {
            return Err(error(script.span(), format!("{field}: {written:?} leaves the plan's folder; {how}")));
        }
        if let Some(first) = config.hooks.iter().position(|h| same_path(h, relative)) {
            return Err(error(
                script.span(),
                format!(
                    "{field}: {written:?} is listed twice (first as hooks.scripts[{first}]); its hooks would run twice"
                ),
            ));
        }
        let (line, column) = line_column(text, script.span().start);
        config.hooks.push(relative.to_path_buf());
        config.hooks_at.push(SourcePos::new(file.as_str(), line, column));
    }
    Ok(config)
}

/// Whether two relative paths name the same file, `./` aside.
fn same_path(a: &Path, b: &Path) -> bool {
    fn normal(p: &Path) -> impl Iterator<Item = Component<'_>> {
        p.components().filter(|c| *c != Component::CurDir)
    }
    normal(a).eq(normal(b))
}

/// The 1-based line and column (in characters) of a byte offset of `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (before.matches('\n').count() + 1, before[line_start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<PlanConfig, ConfigError> {
        parse_config(text, Path::new("plans/x/drplan.toml"))
    }

    fn error(text: &str) -> ConfigError {
        parse(text).expect_err("the config must be refused")
    }

    fn at(err: &ConfigError) -> (usize, usize) {
        (err.at.line, err.at.column)
    }

    #[test]
    fn hook_scripts_keep_their_order_and_positions() {
        let config = parse(
            "# beside the plans\n[hooks]\nscripts = [\"hooks/notify.rhai\",\n    \"hooks/audit.rhai\"]   # in order\n",
        )
        .unwrap();
        assert_eq!(config.hooks, [PathBuf::from("hooks/notify.rhai"), PathBuf::from("hooks/audit.rhai")]);
        let positions: Vec<String> = config.hooks_at.iter().map(ToString::to_string).collect();
        assert_eq!(positions, ["plans/x/drplan.toml:3:12", "plans/x/drplan.toml:4:5"]);
    }

    #[test]
    fn an_empty_file_or_section_means_no_hooks() {
        assert_eq!(parse("").unwrap(), PlanConfig::default());
        assert_eq!(parse("# nothing yet\n").unwrap(), PlanConfig::default());
        assert_eq!(parse("[hooks]\n").unwrap(), PlanConfig::default());
        assert_eq!(parse("[hooks]\nscripts = []\n").unwrap(), PlanConfig::default());
    }

    #[test]
    fn a_syntax_error_is_reported_at_its_line() {
        let err = error("[hooks]\nscripts = [\"a.rhai\" \"b.rhai\"]\n");
        assert_eq!(err.at.line, 2, "{err}");
        assert!(err.to_string().starts_with("plans/x/drplan.toml:2:"), "{err}");
    }

    #[test]
    fn an_unknown_section_is_refused_where_it_is_written() {
        let err = error("[hooks]\nscripts = []\n\n[dns]\nserver = \"10.0.0.53\"\n");
        assert_eq!(at(&err), (4, 2), "{err}");
        assert!(err.message.contains("unknown field `dns`"), "{err}");
        assert!(err.message.contains("expected `hooks`"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused_where_it_is_written() {
        let err = error("[hooks]\nscript = [\"a.rhai\"]\n");
        assert_eq!(at(&err), (2, 1), "{err}");
        assert!(err.message.contains("unknown field `script`, expected `scripts`"), "{err}");
    }

    #[test]
    fn scripts_must_be_an_array_of_strings() {
        let err = error("[hooks]\nscripts = \"hooks/notify.rhai\"\n");
        assert_eq!(err.at.line, 2, "{err}");
        assert!(err.message.contains("expected a sequence"), "{err}");
    }

    #[test]
    fn absolute_paths_are_refused() {
        for path in ["/etc/hooks.rhai", "C:/hooks.rhai", "\\\\server\\hooks.rhai"] {
            let text = format!("[hooks]\nscripts = [\"ok.rhai\", {}]\n", toml_string(path));
            let err = error(&text);
            assert_eq!(at(&err), (2, 23), "{path}: {err}");
            assert!(err.message.contains("hooks.scripts[1]"), "{err}");
            assert!(err.message.contains("is an absolute path"), "{err}");
        }
    }

    #[test]
    fn paths_leaving_the_folder_are_refused() {
        for path in ["../shared/hooks.rhai", "hooks/../../x.rhai"] {
            let err = error(&format!("[hooks]\nscripts = [{}]\n", toml_string(path)));
            assert_eq!(at(&err), (2, 12), "{path}: {err}");
            assert!(err.message.contains("leaves the plan's folder"), "{err}");
        }
    }

    #[test]
    fn an_empty_path_is_refused() {
        let err = error("[hooks]\nscripts = [\"  \"]\n");
        assert_eq!(at(&err), (2, 12), "{err}");
        assert!(err.message.contains("the path is empty"), "{err}");
    }

    #[test]
    fn a_script_listed_twice_is_refused_at_the_second() {
        let err = error("[hooks]\nscripts = [\"hooks/a.rhai\", \"./hooks/a.rhai\"]\n");
        assert_eq!(at(&err), (2, 28), "{err}");
        assert!(err.message.contains("listed twice (first as hooks.scripts[0])"), "{err}");
    }

    #[test]
    fn columns_count_characters() {
        let err = error("[hooks]\nscripts = [\"é.rhai\", \"/x.rhai\"]\n");
        assert_eq!(at(&err), (2, 22), "{err}");
    }

    #[test]
    fn the_example_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("plans/contoso").join(CONFIG_FILE);
        let config = parse_config(&std::fs::read_to_string(&path).unwrap(), &path).unwrap();
        assert_eq!(config.hooks, [PathBuf::from("hooks/notify.rhai")]);
    }

    fn toml_string(text: &str) -> String {
        format!("'{text}'")
    }
}
