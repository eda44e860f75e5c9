//! Log set-up: which lines (`FLUIDTALK_LOG`, a `tracing` filter) and in what shape
//! (`FLUIDTALK_LOG_FORMAT`: `text` for people, `json` for log shippers), read from the
//! environment once, at start. Logs go to stderr; stdout is the commands' output.
//!
//! A JSON line carries `timestamp`, `level`, `target`, `message`, the event's own fields at
//! the top level, and the spans it happened in (`span`, `spans`: `job`, `target`, `action`).
//!
//! A text line cannot be forged by what it logs: values come from outside (a lead's
//! target, a webhook's answer, an API error's words), and a newline in one would start a
//! line of its own, an ANSI escape would repaint the terminal. So every control character
//! of a text line's message and fields (C0 and C1, DEL, the line and paragraph separators,
//! the bidirectional overrides) is written escaped (`\n`, `\u{1b}`), whatever wrote it.

use std::borrow::Cow;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// The variable that sets the level filter.
pub const FILTER_ENV: &str = "FLUIDTALK_LOG";
/// The variable that sets the line format.
pub const FORMAT_ENV: &str = "FLUIDTALK_LOG_FORMAT";

/// The shape of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One human-readable line per event (colours only on a terminal).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `FLUIDTALK_LOG_FORMAT` holds something other than a format's name.
#[derive(Debug, thiserror::Error)]
#[error("{FORMAT_ENV}={value:?} is not a log format: expected \"text\" or \"json\"")]
pub struct LogFormatError {
    value: String,
}

impl LogFormat {
    /// Reads a format's name; surrounding space and letter case do not matter, and an empty
    /// value means the default, as an unset variable does.
    pub fn parse(value: &str) -> Result<Self, LogFormatError> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err(LogFormatError {
                value: value.to_string(),
            }),
        }
    }

    /// The format `FLUIDTALK_LOG_FORMAT` asks for (text when unset).
    pub fn from_env() -> Result<Self, LogFormatError> {
        match std::env::var_os(FORMAT_ENV) {
            None => Ok(Self::Text),
            Some(v) => Self::parse(&v.to_string_lossy()),
        }
    }
}

/// Installs the process's subscriber: the filter the command line `asked` for (`-q`, `-v`),
/// else `FLUIDTALK_LOG`'s, else `default_filter`; and `format`. A `FLUIDTALK_LOG` that
/// does not parse falls back to the default, with a warning.
pub fn init(format: LogFormat, default_filter: &str, asked: Option<&str>) {
    let (filter, bad_filter) = match (asked, std::env::var(FILTER_ENV)) {
        (Some(asked), _) => (EnvFilter::new(asked), None),
        (None, Ok(text)) if !text.trim().is_empty() => match EnvFilter::try_new(&text) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new(default_filter), Some((text, e))),
        },
        (None, _) => (EnvFilter::new(default_filter), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .fmt_fields(EscapedFields::default())
            .init(),
        // Fields at the top level, next to `message`, so a shipper indexes them as they are.
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
    if let Some((text, e)) = bad_filter {
        tracing::warn!("{FILTER_ENV}={text:?} is not a log filter ({e}); using {default_filter:?}");
    }
}

/// The text format's fields (the message among them) as tracing-subscriber writes them,
/// with every control character escaped (see the module's docs).
#[derive(Debug, Default)]
pub struct EscapedFields(DefaultFields);

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_fields(Writer::new(&mut line), fields)?;
        writer.write_str(&escape_controls(&line))
    }
}

/// Whether `c` must not reach a log line as it is: it could end the line, move the cursor
/// or reorder what a terminal shows.
fn is_forging(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with its control characters written as escapes: `\n`, `\r`, `\t`, else
/// `\u{..}`; unchanged (and not copied) when it has none.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_forging) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_forging(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Prints the error that ends the process, as the last line on stderr: `error: …` in text,
/// a JSON line (`level` `ERROR`, `exit_code`) in JSON, whatever the filter lets through, so
/// a shipper that reads JSON sees why the process stopped.
pub fn print_fatal(format: LogFormat, message: &str, exit_code: u8) {
    match format {
        // Escaped as every text line is: the message may quote input (a target, a file's
        // row) whose control characters would otherwise forge lines after it.
        LogFormat::Text => eprintln!("error: {}", escape_controls(message)),
        LogFormat::Json => eprintln!("{}", fatal_line(message, exit_code)),
    }
}

fn fatal_line(message: &str, exit_code: u8) -> serde_json::Value {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": "ERROR",
        "target": env!("CARGO_CRATE_NAME"),
        "message": message,
        "exit_code": exit_code,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_json_are_the_formats_in_any_case_and_empty_means_text() {
        assert_eq!(LogFormat::parse("json").ok(), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse(" JSON\n").ok(), Some(LogFormat::Json));
        assert_eq!(LogFormat::parse("text").ok(), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("Text").ok(), Some(LogFormat::Text));
        assert_eq!(LogFormat::parse("").ok(), Some(LogFormat::Text));
    }

    #[test]
    fn any_other_format_is_refused_naming_the_variable_the_value_and_the_choices() {
        for bad in ["xml", "jsonl", "pretty", "1"] {
            let message = match LogFormat::parse(bad) {
                Ok(f) => panic!("{bad:?} was taken as {f:?}"),
                Err(e) => e.to_string(),
            };
            assert_eq!(
                message,
                format!(
                    "FLUIDTALK_LOG_FORMAT=\"{bad}\" is not a log format: expected \"text\" or \"json\""
                )
            );
        }
    }

    #[test]
    fn control_characters_are_escaped_and_other_text_is_kept() {
        assert_eq!(
            escape_controls("@ana wrote \"hi\" 🔥"),
            "@ana wrote \"hi\" 🔥"
        );
        assert_eq!(
            escape_controls("a\nb\r\tc\u{1b}[31md\u{7f}\u{9b}\u{202e}e\u{2028}"),
            "a\\nb\\r\\tc\\u{1b}[31md\\u{7f}\\u{9b}\\u{202e}e\\u{2028}"
        );
    }

    /// The text format as `init` sets it up, into a buffer: a forged line and a colour
    /// code in a field and in the message stay on the one line, escaped.
    #[test]
    fn a_text_line_holds_one_event_whatever_its_values_hold() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .map_err(|_| std::io::Error::other("poisoned"))?
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(EscapedFields::default())
            .with_writer(move || writer.clone())
            .finish();
        let forged = "@x\n2030-01-01T00:00:00Z  INFO forged: all is well \u{1b}[2J";
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("run", target = %forged);
            let _in = span.enter();
            tracing::warn!(target_lead = %forged, debug = ?forged, "delivery failed for {forged}");
        });
        let out = String::from_utf8(buf.0.lock().map(|b| b.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("@x\\n2030-01-01"), "{out}");
    }

    #[test]
    fn the_fatal_line_in_json_has_the_fields_of_a_log_line_and_the_exit_code() {
        let line = fatal_line("no [[job]] is defined", 3);
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["target"], "fluidtalk_runner");
        assert_eq!(line["message"], "no [[job]] is defined");
        assert_eq!(line["exit_code"], 3);
        let at = line["timestamp"].as_str().unwrap_or_default();
        assert!(chrono::DateTime::parse_from_rfc3339(at).is_ok(), "{at:?}");
    }
}
