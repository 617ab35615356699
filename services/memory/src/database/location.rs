//! Where the engrams live: a SQLite file (one memory process per file) or a PostgreSQL
//! database (any number of memory processes, on any number of hosts).

use std::fmt;
use std::path::{Path, PathBuf};

/// The memory's database.
#[derive(Clone, PartialEq, Eq)]
pub enum MemoryDatabase {
    /// A SQLite file, created with its parent folders when missing.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/database`).
    Postgres(String),
}

impl MemoryDatabase {
    /// Reads `text` as a `postgres://` or `postgresql://` URL, else as a SQLite file path
    /// (a `sqlite://` or `sqlite:` in front is taken off).
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Self::Postgres(text.to_string());
        }
        let path = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or(text);
        Self::Sqlite(PathBuf::from(path))
    }

    /// The SQLite file, if the database is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(path) => Some(path),
            Self::Postgres(_) => None,
        }
    }
}

impl From<PathBuf> for MemoryDatabase {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl From<&PathBuf> for MemoryDatabase {
    fn from(path: &PathBuf) -> Self {
        Self::Sqlite(path.clone())
    }
}

impl From<&Path> for MemoryDatabase {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_path_buf())
    }
}

/// Shows the file, or the URL with its password hidden (it goes to logs).
impl fmt::Display for MemoryDatabase {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(path) => write!(formatter, "{}", path.display()),
            Self::Postgres(url) => formatter.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for MemoryDatabase {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, formatter)
    }
}

/// `url` with the password (between `user:` and `@`, or a `password=` parameter) replaced
/// by `***`.
pub(crate) fn redacted(url: &str) -> String {
    let url = &redacted_parameter(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// `url` with the value of a `password=` query parameter replaced by `***`.
fn redacted_parameter(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
    };
    let parameters: Vec<String> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => parameter.to_string(),
        })
        .collect();
    format!("{base}?{}", parameters.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_postgres_and_anything_else_is_a_file() {
        assert_eq!(
            MemoryDatabase::parse("postgresql://h/db"),
            MemoryDatabase::Postgres("postgresql://h/db".into())
        );
        assert_eq!(
            MemoryDatabase::parse("data/memory.sqlite"),
            MemoryDatabase::Sqlite("data/memory.sqlite".into())
        );
        assert_eq!(
            MemoryDatabase::parse("sqlite:///var/mimo/memory.sqlite"),
            MemoryDatabase::Sqlite("/var/mimo/memory.sqlite".into())
        );
    }

    #[test]
    fn the_password_never_shows() {
        let shown = MemoryDatabase::parse("postgres://mimo:s3cret@db:5432/mimo").to_string();
        assert_eq!(shown, "postgres://mimo:***@db:5432/mimo");
        let in_query =
            MemoryDatabase::parse("postgres://mimo@db/mimo?sslmode=require&password=s3cret")
                .to_string();
        assert_eq!(
            in_query,
            "postgres://mimo@db/mimo?sslmode=require&password=***"
        );
        let no_password = MemoryDatabase::parse("postgres://mimo@db/mimo").to_string();
        assert_eq!(no_password, "postgres://mimo@db/mimo");
    }
}
