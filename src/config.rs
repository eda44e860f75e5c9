//! `jobs.toml`: where settings come from.
//!
//! Today the lead database commands read only `[database] url` from it (the runner's
//! typed, fully checked configuration arrives with `check`/`run`/`daemon`). Precedence for
//! the database: `DATABASE_URL`, then `[database] url`, then `sqlite://fluidtalk-runner.db`.

use crate::store::DEFAULT_DATABASE_URL;
use std::path::{Path, PathBuf};

pub const CONFIG_ENV: &str = "FLUIDTALK_RUNNER_CONFIG";
pub const DEFAULT_CONFIG_PATH: &str = "jobs.toml";

/// A problem with the configuration file; always names the file, and the key or line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: [{table}] {key}: {expected}")]
    Key {
        path: PathBuf,
        table: &'static str,
        key: &'static str,
        expected: String,
    },
}

/// Which configuration file to read: the one named (flag or environment), which must
/// exist, or `./jobs.toml` if it exists.
pub struct ConfigPath {
    pub path: PathBuf,
    pub explicit: bool,
}

impl ConfigPath {
    pub fn new(named: Option<PathBuf>) -> Self {
        match named {
            Some(path) => Self {
                path,
                explicit: true,
            },
            None => Self {
                path: PathBuf::from(DEFAULT_CONFIG_PATH),
                explicit: false,
            },
        }
    }

    /// The file's text, or `None` when the default file does not exist.
    fn read(&self) -> Result<Option<String>, ConfigError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.explicit => Ok(None),
            Err(source) => Err(ConfigError::Io {
                path: self.path.clone(),
                source,
            }),
        }
    }
}

/// The lead database's URL.
pub fn database_url(config: &ConfigPath) -> Result<String, ConfigError> {
    if let Ok(url) = std::env::var("DATABASE_URL")
        && !url.trim().is_empty()
    {
        return Ok(url.trim().to_string());
    }
    Ok(database_url_in(&config.path, config.read()?.as_deref())?
        .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string()))
}

fn database_url_in(path: &Path, text: Option<&str>) -> Result<Option<String>, ConfigError> {
    let Some(text) = text else { return Ok(None) };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: syntax_message(text, &e),
        })?;
    let key_error = |key, expected: &str| ConfigError::Key {
        path: path.to_path_buf(),
        table: "database",
        key,
        expected: expected.to_string(),
    };
    match table.get("database") {
        None => Ok(None),
        Some(toml::Value::Table(db)) => match db.get("url") {
            None => Ok(None),
            Some(toml::Value::String(url)) if !url.trim().is_empty() => {
                Ok(Some(url.trim().to_string()))
            }
            Some(_) => Err(key_error(
                "url",
                "expected a database URL string like \"sqlite://fluidtalk-runner.db\" or \"postgres://user@host/db\"",
            )),
        },
        Some(_) => Err(ConfigError::Syntax {
            path: path.to_path_buf(),
            message: "database must be a table: [database]".into(),
        }),
    }
}

/// A TOML error as "line L, column C: what". toml's own text quotes the offending source
/// line, which may be the database URL with its password: it is not used.
pub(crate) fn syntax_message(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_url_comes_from_the_database_table() {
        let p = Path::new("jobs.toml");
        assert_eq!(
            database_url_in(p, Some("[database]\nurl = \"postgres://x@h/db\"\n")).expect("ok"),
            Some("postgres://x@h/db".to_string())
        );
        assert_eq!(
            database_url_in(p, Some("[limits]\nconcurrency = 2\n")).expect("ok"),
            None
        );
        assert_eq!(database_url_in(p, None).expect("ok"), None);
    }

    #[test]
    fn a_wrong_url_value_names_the_file_and_key() {
        let err = database_url_in(Path::new("camp.toml"), Some("[database]\nurl = 5\n"))
            .expect_err("refused");
        assert!(
            err.to_string()
                .starts_with("camp.toml: [database] url: expected"),
            "{err}"
        );
        let err =
            database_url_in(Path::new("camp.toml"), Some("[database\n")).expect_err("refused");
        assert!(
            err.to_string().starts_with("camp.toml: line 1, column"),
            "{err}"
        );
    }

    #[test]
    fn a_syntax_error_does_not_quote_the_line_with_the_password() {
        let text = "[database]\nurl = \"postgres://app:s3cret@db/leads\n";
        let err = database_url_in(Path::new("jobs.toml"), Some(text)).expect_err("refused");
        let shown = err.to_string();
        assert!(shown.starts_with("jobs.toml: line 2, column"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
