//! API keys for the HTTP transport: read from a file, one key a line (optionally named:
//! `NAME KEY`), and checked in constant time against every key so that neither a key's
//! contents nor which key matched shows in the time an answer takes.

use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;

/// Fewest characters a key may have.
pub const MIN_KEY_LENGTH: usize = 16;
/// Most keys one file may hold.
pub const MAX_KEYS: usize = 1024;

/// Why a key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The file could not be read.
    #[error("cannot read the API key file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a usable key.
    #[error("{path} line {line}: {reason}")]
    BadLine {
        /// The file.
        path: PathBuf,
        /// Its line number, from 1.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The file holds no key.
    #[error("{0} holds no API key (one a line: KEY, or NAME KEY; # starts a comment)")]
    Empty(PathBuf),
}

/// The keys clients may present, with the names logs and metrics know them by.
#[derive(Clone)]
pub struct ApiKeys {
    keys: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for ApiKeys {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_list()
            .entries(self.keys.iter().map(|(name, _)| name))
            .finish()
    }
}

impl ApiKeys {
    /// Reads the keys of `path`: each line `KEY` or `NAME KEY`, blank lines and lines
    /// starting with `#` skipped; a key has at least [`MIN_KEY_LENGTH`] characters.
    pub fn load(path: &Path) -> Result<Self, ApiKeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| ApiKeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |line: usize, reason: String| ApiKeyError::BadLine {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let (name, key) = match words.as_slice() {
                [key] => (format!("key {}", keys.len() + 1), *key),
                [name, key] => ((*name).to_string(), *key),
                _ => return Err(bad(number + 1, "give KEY or NAME KEY".into())),
            };
            if key.chars().count() < MIN_KEY_LENGTH {
                return Err(bad(
                    number + 1,
                    format!("the key ({name}) is shorter than {MIN_KEY_LENGTH} characters"),
                ));
            }
            if keys.iter().any(|(known, _)| *known == name) {
                return Err(bad(number + 1, format!("the name {name} is given twice")));
            }
            if keys
                .iter()
                .any(|(_, known)| known.as_slice() == key.as_bytes())
            {
                return Err(bad(
                    number + 1,
                    "this key is given twice (keys tell callers apart)".into(),
                ));
            }
            if keys.len() == MAX_KEYS {
                return Err(bad(number + 1, format!("more than {MAX_KEYS} keys")));
            }
            keys.push((name, key.as_bytes().to_vec()));
        }
        if keys.is_empty() {
            return Err(ApiKeyError::Empty(path.to_path_buf()));
        }
        Ok(Self { keys })
    }

    /// The index of the key equal to `presented`, compared in constant time with every key.
    pub fn identify(&self, presented: &[u8]) -> Option<usize> {
        let mut found = subtle::CtOption::new(0_u64, subtle::Choice::from(0));
        for (index, (_, key)) in self.keys.iter().enumerate() {
            let matches = key.as_slice().ct_eq(presented);
            found = subtle::CtOption::new(index as u64, matches).or_else(|| found);
        }
        Option::<u64>::from(found).map(|index| index as usize)
    }

    /// The name of key `index`.
    pub fn name(&self, index: usize) -> &str {
        &self.keys[index].0
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether there are none (never, once loaded).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> Result<ApiKeys, ApiKeyError> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        ApiKeys::load(file.path())
    }

    #[test]
    fn every_key_is_found_and_nothing_else_is() {
        let keys = keys("# team keys\nalice aaaaaaaaaaaaaaaa1\n\nbbbbbbbbbbbbbbbb2\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.identify(b"aaaaaaaaaaaaaaaa1"), Some(0));
        assert_eq!(keys.name(0), "alice");
        assert_eq!(keys.identify(b"bbbbbbbbbbbbbbbb2"), Some(1));
        assert_eq!(keys.name(1), "key 2");
        assert_eq!(
            keys.identify(b"aaaaaaaaaaaaaaaa"),
            None,
            "a prefix is not the key"
        );
        assert_eq!(keys.identify(b"aaaaaaaaaaaaaaaa12"), None);
        assert_eq!(keys.identify(b""), None);
    }

    #[test]
    fn short_keys_bad_lines_and_empty_files_are_refused_with_the_line() {
        let short = keys("ok-key-that-is-long\nbob short\n").unwrap_err();
        assert!(short.to_string().contains("line 2"), "{short}");
        assert!(short.to_string().contains("bob"), "{short}");
        let twice = keys("alice aaaaaaaaaaaaaaaa1\nbob aaaaaaaaaaaaaaaa1\n").unwrap_err();
        assert!(
            twice.to_string().contains("line 2") && twice.to_string().contains("twice"),
            "{twice}"
        );
        let named_twice = keys("alice aaaaaaaaaaaaaaaa1\nalice bbbbbbbbbbbbbbbb2\n").unwrap_err();
        assert!(named_twice.to_string().contains("alice"), "{named_twice}");
        let three = keys("a b c\n").unwrap_err();
        assert!(three.to_string().contains("NAME KEY"), "{three}");
        let empty = keys("# nothing\n\n").unwrap_err();
        assert!(matches!(empty, ApiKeyError::Empty(_)), "{empty}");
    }
}
