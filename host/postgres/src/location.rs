//! Where a PostgreSQL store is: a connection string whose password never
//! reaches a message. The password comes from the string itself, from
//! `PGPASSWORD`, or from the password file libpq reads (`PGPASSFILE`, else
//! `~/.pgpass`), in that order, as `psql` would find it.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use tokio_postgres::config::Host;
use waymark_core::StoreError;

/// A parsed PostgreSQL connection string (`postgres://user:pass@host:port/db`
/// or `host=... user=...`). Its `Display` and `Debug` show the user, hosts,
/// ports and database, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl {
    /// Boxed: a location is passed around by value, and the driver's
    /// configuration is large.
    config: Box<tokio_postgres::Config>,
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.config;
        f.write_str("postgres://")?;
        if let Some(user) = c.get_user() {
            write!(f, "{user}@")?;
        }
        let ports = c.get_ports();
        for (i, host) in c.get_hosts().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match host {
                Host::Tcp(name) => f.write_str(name)?,
                Host::Unix(dir) => write!(f, "[{}]", dir.display())?,
            }
            if let Some(port) = ports.get(i).or(ports.first()) {
                write!(f, ":{port}")?;
            }
        }
        write!(f, "/{}", c.get_dbname().unwrap_or(""))
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({self})")
    }
}

impl PostgresUrl {
    /// Parses `text` and fills in what libpq would: the user (`PGUSER`, else
    /// the login name), the host (`PGHOST`, else `localhost`), the database
    /// (`PGDATABASE`, else the user) and the password. A parse error never
    /// quotes the text, which may hold a password.
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let mut config =
            tokio_postgres::Config::from_str(text).map_err(|e| StoreError::Invalid {
                what: "PostgreSQL connection string",
                reason: format!("{e} (expected postgres://user[:password]@host[:port]/database)"),
            })?;
        if config.get_user().is_none() {
            let user = env("PGUSER")
                .or_else(|| env("USER"))
                .or_else(|| env("LOGNAME"))
                .ok_or_else(|| StoreError::Invalid {
                    what: "PostgreSQL connection string",
                    reason: "it names no user, and neither PGUSER nor USER is set".into(),
                })?;
            config.user(&user);
        }
        if config.get_hosts().is_empty() {
            config.host(env("PGHOST").unwrap_or_else(|| "localhost".into()));
        }
        if config.get_ports().is_empty()
            && let Some(port) = env("PGPORT").and_then(|p| p.parse().ok())
        {
            config.port(port);
        }
        if config.get_dbname().is_none() {
            let db = env("PGDATABASE").unwrap_or_else(|| config.get_user().unwrap_or("").into());
            config.dbname(&db);
        }
        if config.get_password().is_none()
            && let Some(password) = env("PGPASSWORD").or_else(|| from_password_file(&config))
        {
            config.password(password);
        }
        Ok(Self {
            config: Box::new(config),
        })
    }

    /// The driver's configuration, password included.
    pub(crate) fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// The same server and credentials with another database: for tools
    /// that create databases (the test cluster).
    pub fn with_dbname(&self, dbname: &str) -> Self {
        let mut config = self.config.clone();
        config.dbname(dbname);
        Self { config }
    }

    /// The database it names.
    pub fn dbname(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The password the password file gives for this connection, if any.
fn from_password_file(config: &tokio_postgres::Config) -> Option<String> {
    let path = env("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".pgpass")))?;
    let text = std::fs::read_to_string(path).ok()?;
    let host = match config.get_hosts().first()? {
        Host::Tcp(name) => name.clone(),
        // libpq matches a socket connection as `localhost`.
        Host::Unix(_) => "localhost".into(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let wanted = [
        host.as_str(),
        port.as_str(),
        config.get_dbname().unwrap_or(""),
        config.get_user().unwrap_or(""),
    ];
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| password_line_matches(line, &wanted))
}

/// The password of a `host:port:database:user:password` line if its first
/// four fields match `wanted` (`*` matches anything; `\:` and `\\` escape).
fn password_line_matches(line: &str, wanted: &[&str; 4]) -> Option<String> {
    let fields = split_escaped(line);
    if fields.len() != 5 {
        return None;
    }
    let matches = fields[..4]
        .iter()
        .zip(wanted)
        .all(|(field, want)| field == "*" || field == want);
    matches.then(|| fields[4].clone())
}

fn split_escaped(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    fields.last_mut().expect("one field").push(next);
                }
            }
            ':' => fields.push(String::new()),
            c => fields.last_mut().expect("one field").push(c),
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let url = PostgresUrl::parse("postgres://alice:s3cret-pw@db.example:5433/waymark").unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert_eq!(url.to_string(), "postgres://alice@db.example:5433/waymark");
        assert_eq!(url.config().get_password(), Some(&b"s3cret-pw"[..]));
    }

    #[test]
    fn a_bad_string_is_refused_without_quoting_it() {
        let err = PostgresUrl::parse("postgres://alice:s3cret-pw@db:notaport/x").unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, StoreError::Invalid { .. }), "{text}");
        assert!(!text.contains("s3cret-pw"), "{text}");
    }

    #[test]
    fn password_file_lines_match_with_wildcards_and_escapes() {
        let want = ["db", "5432", "waymark", "alice"];
        assert_eq!(
            password_line_matches("db:5432:waymark:alice:pw", &want).as_deref(),
            Some("pw")
        );
        assert_eq!(
            password_line_matches("*:*:*:alice:a\\:b\\\\c", &want).as_deref(),
            Some("a:b\\c")
        );
        assert_eq!(password_line_matches("db:5432:other:alice:pw", &want), None);
        assert_eq!(password_line_matches("db:5432:waymark", &want), None);
    }
}
