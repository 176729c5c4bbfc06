//! Manifest errors that name the file, the line and column, the key, and what is allowed,
//! with a did-you-mean for a misspelt key, value or game.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A problem with a manifest, located in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    /// The manifest file.
    pub file: PathBuf,
    /// 1-based line and column of the offending text, when known.
    pub position: Option<(usize, usize)>,
    /// The key path (`eval[0].games[1]`), when known.
    pub key: Option<String>,
    /// What is wrong and what is allowed.
    pub message: String,
    /// The offending source line, for display.
    pub source_line: Option<String>,
}

impl std::error::Error for ManifestError {}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        f.write_str(": ")?;
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        f.write_str(&self.message)?;
        if let (Some(src), Some((line, col))) = (&self.source_line, self.position) {
            let gutter = line.to_string().len();
            write!(
                f,
                "\n{:gutter$} |\n{line} | {src}\n{:gutter$} | {:>col$}",
                "", "", "^"
            )?;
        }
        Ok(())
    }
}

impl ManifestError {
    /// An error without a position (a missing file, say).
    pub fn whole_file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            position: None,
            key: None,
            message: message.into(),
            source_line: None,
        }
    }

    /// An error about a key whose place in the file is not known.
    pub fn keyed(file: &Path, key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            position: None,
            key: Some(key.into()),
            message: message.into(),
            source_line: None,
        }
    }

    /// An error at a byte span of the manifest's text.
    pub fn at(
        file: &Path,
        text: &str,
        span: Option<Range<usize>>,
        key: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        let (position, source_line) = match span {
            Some(span) => {
                let (line, col) = line_col(text, span.start);
                (
                    Some((line, col)),
                    text.lines().nth(line - 1).map(str::to_owned),
                )
            }
            None => (None, None),
        };
        Self {
            file: file.to_path_buf(),
            position,
            key,
            message: message.into(),
            source_line,
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The allowed name closest to `given`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    given: &str,
    allowed: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let given_lower = given.to_lowercase();
    allowed
        .into_iter()
        .map(|a| (strsim::jaro_winkler(&given_lower, &a.to_lowercase()), a))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, a)| a)
}

/// "; did you mean `x`?" or nothing.
pub fn suggestion<'a>(given: &str, allowed: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(given, allowed)
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

/// The key written on the line holding byte `offset`, with the table headers above it
/// (`eval.episodes`), for errors the TOML parser reports without one.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.starts_with(['[', '#']))
        .map(|k| k.trim_matches('"').to_owned());
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        });
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(_), None) if line.trim_start().starts_with('[') => None,
        (t, None) => t,
    }
}

/// Gives the TOML parser's messages the harness's wording: an empty message (a value cut
/// off at the end of the file, say) says what is missing, a too-large number what fits.
pub fn explain_toml_message(message: &str, text: &str, offset: usize) -> String {
    let message = explain_serde_message(message);
    if message.trim().is_empty() {
        return if text[offset.min(text.len())..].trim().is_empty() {
            "the file ends where a value was expected; allowed: a complete `key = value` line"
                .to_owned()
        } else {
            "this is not valid TOML here; allowed: `key = value` lines and [table] headers"
                .to_owned()
        };
    }
    if message.contains("number too large to fit in target type") {
        return format!(
            "{message}; allowed: an integer in 0..={} (seeds and counts are unsigned 64-bit)",
            i64::MAX
        );
    }
    message
}

/// Rewrites serde's "unknown field `x`, expected one of `a`, `b`" and "unknown variant"
/// messages into the harness's wording with a suggestion; other messages pass through.
pub fn explain_serde_message(message: &str) -> String {
    for (prefix, what) in [
        ("unknown field `", "unknown key"),
        ("unknown variant `", "unknown value"),
    ] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        let Some((given, tail)) = rest.split_once('`') else {
            continue;
        };
        let allowed: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        if allowed.is_empty() {
            return format!("{what} `{given}`; nothing is allowed here");
        }
        let list = allowed
            .iter()
            .map(|a| format!("`{a}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = suggestion(given, allowed.iter().copied());
        return format!("{what} `{given}`; allowed: {list}{hint}");
    }
    message.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_from_one() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }

    #[test]
    fn unknown_field_messages_gain_a_suggestion() {
        let m = explain_serde_message("unknown field `gmes`, expected one of `family`, `games`");
        assert_eq!(
            m,
            "unknown key `gmes`; allowed: `family`, `games`; did you mean `games`?"
        );
    }

    #[test]
    fn unrelated_names_get_no_suggestion() {
        assert_eq!(did_you_mean("zzzz", ["Pong", "Breakout"]), None);
        assert_eq!(did_you_mean("Pongg", ["Pong", "Breakout"]), Some("Pong"));
    }
}
