//! Script errors with the file:line:column they come from. One helper turns any Rhai
//! error into a [`ScriptError`] (and so into an `ActionError`): it follows the error
//! through the functions and modules it passed, and points at the innermost statement
//! the operator wrote (not at a line of the embedded stdlib).

use std::sync::Arc;

use rhai::{EvalAltResult, ParseError, Position};

use super::reading::Reading;
use super::resolver::STDLIB_PREFIX;
use super::sandbox::{self, Limits, STOPPED_CANCELLED, STOPPED_DEADLINE};
use crate::model::HumanDuration;
use crate::model::snippet::{Diagnostic, Severity, Source};
use crate::plan::{ActionError, SourcePos};

/// A plan script could not be loaded; `Display` is "file:line:column: message".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ScriptError {
    pub at: SourcePos,
    pub kind: ScriptErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptErrorKind {
    /// The plan file (or a file it needs: the folder's config, a hook script) could not be read.
    Io,
    /// The plan folder's `drplan.toml` is broken, or names a hook script that is missing
    /// or outside the folder.
    Config,
    /// The script (or a module it imports) does not parse.
    Syntax,
    /// The script failed while running: a thrown error, a bad argument, a missing function.
    Runtime,
    /// A sandbox limit stopped the script (deadline, operations, depth, sizes).
    Limit,
    /// The script ran but its value is not a plan.
    NotAPlan,
}

impl ScriptError {
    pub(crate) fn new(at: SourcePos, kind: ScriptErrorKind, message: impl Into<String>) -> Self {
        ScriptError { at, kind, message: message.into() }
    }

    /// A Rhai parse error in `file`.
    pub(crate) fn syntax(err: &ParseError, file: &Arc<str>) -> Self {
        ScriptError::new(pos_in(file, err.1), ScriptErrorKind::Syntax, describe_parse(&err.0.to_string()))
    }

    /// A Rhai evaluation error of a script whose own source is `root`.
    pub(crate) fn from_rhai(err: &EvalAltResult, root: &Arc<str>, limits: Limits) -> Self {
        // The chain, outermost first: each frame is where the script was when it went one level deeper.
        let mut frames: Vec<Frame> = Vec::new();
        let mut file = root.clone();
        let mut current = err;
        loop {
            match current {
                EvalAltResult::ErrorInFunctionCall(name, source, inner, pos) => {
                    frames.push(Frame { file: file.clone(), pos: *pos, entering: Some(fn_label(name)) });
                    if !source.is_empty() {
                        file = source.as_str().into();
                    }
                    current = inner;
                }
                EvalAltResult::ErrorInModule(name, inner, pos) => {
                    frames.push(Frame { file: file.clone(), pos: *pos, entering: Some(format!("module {name}")) });
                    file = name.as_str().into();
                    current = inner;
                }
                leaf => {
                    frames.push(Frame { file: file.clone(), pos: leaf.position(), entering: None });
                    break;
                }
            }
        }
        let (kind, mut message) = describe(current, limits);
        // The innermost frame in the operator's own files is the statement to fix.
        let chosen = frames.iter().rposition(|f| !f.file.starts_with(STDLIB_PREFIX) && !f.pos.is_none()).unwrap_or(0);
        let leaf = frames.last().expect("at least the leaf frame");
        if chosen + 1 < frames.len() {
            let via = frames[chosen].entering.as_deref().unwrap_or("a call");
            message = format!("{message} (in {via}, at {})", pos_in(&leaf.file, leaf.pos));
        }
        let frame = &frames[chosen];
        ScriptError::new(pos_in(&frame.file, frame.pos), kind, message)
    }
}

impl ScriptError {
    /// Rhai reports a closure that captures the variable its call is made on
    /// (`plan.pre(|ctx| log(plan.name))`) as a bare "Data race detected on argument #1 of
    /// function 'pre'" with no position: this says what the author did, where, and what
    /// to write instead. `err` is the Rhai error this one was made from.
    pub(crate) fn explain_data_race(&mut self, err: &EvalAltResult, reading: &Reading) {
        let EvalAltResult::ErrorDataRace(what, _) = innermost(err) else { return };
        let call = what.split('\'').nth(1).unwrap_or_default();
        let (variable, at) = match reading.captured_in(call) {
            Some((variable, at)) => (format!("`{variable}`"), Some(at)),
            None => ("a variable".to_string(), None),
        };
        self.message = format!(
            "the closure given to {call}(...) captures {variable}, which the call itself is using: a closure \
             cannot hold the plan (or group) it is added to. Inside an action, read what it needs from its `ctx` \
             (ctx.plan is the plan's name, ctx.vms its VMs, ctx.vm(\"sql01\") one of them), or copy a value into a \
             variable of its own before the call (`let name = \"contoso\";`) and use that"
        );
        if let Some(at) = at {
            self.at = at;
        }
    }

    /// The error as the operator reads it: `error: file:line:column: message`, then the
    /// line of `source` it points at (`source` is the text of `at.file`, when it could be
    /// read).
    pub fn render(&self, source: Option<&Source>) -> String {
        let snippet = source.and_then(|source| source.snippet_at(self.at.line, self.at.column));
        let at = self.at.location();
        Diagnostic { severity: Severity::Error, at, message: &self.message, snippet: snippet.as_ref() }.to_string()
    }
}

impl From<ScriptError> for ActionError {
    fn from(err: ScriptError) -> Self {
        ActionError { message: err.message, at: Some(err.at) }
    }
}

/// The error where it happened, through the calls and modules it passed.
fn innermost(err: &EvalAltResult) -> &EvalAltResult {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _) | EvalAltResult::ErrorInModule(_, inner, _) => {
            innermost(inner)
        }
        leaf => leaf,
    }
}

struct Frame {
    file: Arc<str>,
    pos: Position,
    /// The function or module this frame went into.
    entering: Option<String>,
}

pub(crate) fn pos_in(file: &Arc<str>, pos: Position) -> SourcePos {
    SourcePos { file: file.clone(), line: pos.line().unwrap_or(0), column: pos.position().unwrap_or(0) }
}

fn fn_label(name: &str) -> String {
    if name.starts_with("anon$") { "a closure".to_string() } else { format!("{name}()") }
}

fn describe_parse(text: &str) -> String {
    if text.contains("'eval' is disabled") {
        "`eval` is not available in plan scripts".to_string()
    } else {
        text.to_string()
    }
}

/// The kind and message of the error where it happened, without Rhai's position suffix.
fn describe(err: &EvalAltResult, limits: Limits) -> (ScriptErrorKind, String) {
    use ScriptErrorKind::{Limit, Runtime, Syntax};
    match err {
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == STOPPED_CANCELLED => {
            (Limit, "the script was cancelled".to_string())
        }
        EvalAltResult::ErrorTerminated(token, _) if token.to_string() == STOPPED_DEADLINE => (
            Limit,
            format!(
                "the script ran for more than {} and was stopped (limit: wall-clock deadline)",
                HumanDuration(limits.deadline)
            ),
        ),
        EvalAltResult::ErrorTooManyOperations(_) => {
            (Limit, format!("too many operations (limit {})", limits.max_operations))
        }
        EvalAltResult::ErrorStackOverflow(_) => {
            (Limit, format!("call stack too deep: recursion deeper than {} levels", sandbox::MAX_CALL_LEVELS))
        }
        EvalAltResult::ErrorDataTooLarge(what, _) => (Limit, too_large(what)),
        EvalAltResult::ErrorTooManyModules(_) => {
            (Limit, format!("too many modules imported (limit {})", sandbox::MAX_MODULES))
        }
        EvalAltResult::ErrorParsing(parse, _) => (Syntax, describe_parse(&parse.to_string())),
        EvalAltResult::ErrorRuntime(value, _) => {
            let text = value.clone().into_string().unwrap_or_else(|_| format!("the script threw {value}"));
            (Runtime, text)
        }
        other => {
            let text = other.to_string();
            let suffix = format!(" ({})", other.position());
            let text = if other.position().is_none() { &text } else { text.strip_suffix(&suffix).unwrap_or(&text) };
            (if other.is_system_exception() { Limit } else { Runtime }, text.to_string())
        }
    }
}

fn too_large(what: &str) -> String {
    if what.contains("string") {
        format!("string too long (limit {} MiB)", sandbox::MAX_STRING_SIZE / (1024 * 1024))
    } else if what.contains("array") {
        format!("array too large (limit {} items)", sandbox::MAX_ARRAY_SIZE)
    } else if what.contains("map") {
        format!("object map too large (limit {} entries)", sandbox::MAX_MAP_SIZE)
    } else {
        format!("{what} too large")
    }
}
