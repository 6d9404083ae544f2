//! A PostgreSQL URL taken apart for pg_dump and pg_restore: a conninfo without the password, the password alone, the database.

use anyhow::{Context, bail};

use crate::db_url::percent_encode;

/// libpq rejects URI parameters it does not know (sqlx has its own, such as
/// `statement-cache-capacity`), so only these reach pg_dump and pg_restore.
const LIBPQ_PARAMS: &[&str] = &[
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "sslcrl",
    "application_name",
    "options",
    "connect_timeout",
    "host",
    "hostaddr",
    "port",
    "target_session_attrs",
];

/// The stack's `rustlb:databaseUrl` when it is PostgreSQL.
pub struct PgUrl {
    scheme: String,
    /// `user` or `user:password`, as written (percent-encoded): the app's own URL keeps it.
    userinfo: Option<String>,
    user: Option<String>,
    password: Option<String>,
    host: String,
    database: String,
    query: Option<String>,
}

impl PgUrl {
    /// Takes `url` apart the way the app does: the user information ends at the last `@`
    /// (a password may hold `@`, `/` or `?`).
    pub fn parse(url: &str) -> anyhow::Result<PgUrl> {
        let (scheme, rest) = url
            .split_once("://")
            .filter(|(s, _)| s.starts_with("postgres"))
            .context("not a postgres:// URL")?;
        let (userinfo, location) = match rest.rsplit_once('@') {
            Some((u, l)) => (Some(u.to_owned()), l),
            None => (None, rest),
        };
        let (user, password) = match userinfo.as_deref().map(|u| u.split_once(':')) {
            Some(Some((user, password))) => (Some(decode(user)), Some(decode(password))),
            Some(None) => (userinfo.as_deref().map(decode), None),
            None => (None, None),
        };
        let location = location.split('#').next().unwrap_or_default();
        let (base, query) = match location.split_once('?') {
            Some((b, q)) => (b, Some(q.to_owned())),
            None => (location, None),
        };
        let Some((host, database)) = base.split_once('/') else {
            bail!("rustlb:databaseUrl names no database (postgres://user@host:port/DATABASE)");
        };
        let database = decode(database);
        if database.is_empty() {
            bail!("rustlb:databaseUrl names no database (postgres://user@host:port/DATABASE)");
        }
        Ok(PgUrl {
            scheme: scheme.to_owned(),
            userinfo,
            user,
            password,
            host: host.to_owned(),
            database,
            query,
        })
    }

    /// The stack's database name.
    pub fn database(&self) -> &str {
        &self.database
    }

    /// The password, for the `PGPASSWORD` of a child process only.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// `database "x" on host:port`, for messages: never the password.
    pub fn shown(&self, database: &str) -> String {
        let host = if self.host.is_empty() {
            "the local socket"
        } else {
            &self.host
        };
        format!("database \"{database}\" on {host}")
    }

    /// A libpq URI of `database` without the password, for `--dbname`: what `ps` may show.
    pub fn conninfo(&self, database: &str) -> String {
        let mut out = String::from("postgresql://");
        if let Some(user) = &self.user {
            out.push_str(&percent_encode(user));
            out.push('@');
        }
        out.push_str(&self.host);
        out.push('/');
        out.push_str(&percent_encode(database));
        let kept: Vec<&str> = self
            .query
            .iter()
            .flat_map(|q| q.split('&'))
            .filter(|pair| {
                let name = pair.split('=').next().unwrap_or_default();
                LIBPQ_PARAMS.contains(&name)
            })
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
        out
    }

    /// The whole URL of `database` on the same server, password included, for
    /// `app::connect_database` (which never shows it).
    pub fn app_url(&self, database: &str) -> String {
        let mut out = format!("{}://", self.scheme);
        if let Some(userinfo) = &self.userinfo {
            out.push_str(userinfo);
            out.push('@');
        }
        out.push_str(&self.host);
        out.push('/');
        out.push_str(&percent_encode(database));
        if let Some(q) = &self.query {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// Percent-decoding of a URL part (invalid escapes stay as written).
fn decode(part: &str) -> String {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_stays_out_of_the_conninfo() {
        let url = PgUrl::parse(
            "postgres://app:p%40ss@w:rd@db.example:25060/rustlb?sslmode=require&statement-cache-capacity=0",
        )
        .unwrap();
        assert_eq!(url.password(), Some("p@ss@w:rd"));
        assert_eq!(url.database(), "rustlb");
        let conninfo = url.conninfo("rustlb");
        assert_eq!(
            conninfo,
            "postgresql://app@db.example:25060/rustlb?sslmode=require"
        );
        assert_eq!(
            url.shown("rustlb"),
            "database \"rustlb\" on db.example:25060"
        );
        assert_eq!(
            url.app_url("postgres"),
            "postgres://app:p%40ss@w:rd@db.example:25060/postgres?sslmode=require&statement-cache-capacity=0"
        );
    }

    #[test]
    fn the_password_is_decoded_for_the_environment() {
        let url = PgUrl::parse("postgresql://u:a%2Fb%3Fc@127.0.0.1:5432/d").unwrap();
        assert_eq!(url.password(), Some("a/b?c"));
        assert_eq!(url.conninfo("d"), "postgresql://u@127.0.0.1:5432/d");
    }

    #[test]
    fn a_url_without_a_database_is_refused() {
        assert!(PgUrl::parse("postgres://u@127.0.0.1:5432").is_err());
        assert!(PgUrl::parse("postgres://u@127.0.0.1:5432/").is_err());
    }
}
