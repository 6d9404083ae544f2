//! Database URLs taken apart here, so the password never reaches a library, a log or an error.
//!
//! A PostgreSQL URL's password may hold any character, written as is or percent-encoded
//! (`postgres://u:s3c?ret@db/app`, `postgres://u:p%40ss/w#rd@db/app`), or come as a query
//! parameter under an encoded name (`?pass%77ord=...`). Libraries parse such URLs their own
//! way and quote them whole in their errors and logs; so the password is taken out first, and
//! libraries only ever get the URL without it (the password travels separately, in the
//! connect options).

/// A database URL, split into what may be shown and the password.
pub struct DatabaseUrl {
    /// The URL without any password: what libraries get and what logs may show.
    public: String,
    /// The password (percent-decoded), if the URL has one.
    password: Option<String>,
    /// Every spelling of every secret of the URL, as written and decoded, to scrub from text.
    secrets: Vec<String>,
}

impl DatabaseUrl {
    /// Takes `url` apart. The user information ends at the URL's last `@` (a password may hold
    /// `@`, `/`, `?` and `#`; an `@` in a query value must then be written `%40`). Query
    /// parameters whose name (decoded) holds `password` are taken out; `password` itself is
    /// the password. SQLite URLs carry no secret and stay as they are.
    pub fn parse(url: &str) -> Self {
        let Some((scheme, rest)) = url
            .split_once("://")
            .filter(|(scheme, _)| scheme.starts_with("postgres"))
        else {
            return Self {
                public: url.to_owned(),
                password: None,
                secrets: Vec::new(),
            };
        };
        let mut secrets = Vec::new();
        let mut password = None;
        let (user, location) = match rest.rsplit_once('@') {
            Some((userinfo, location)) => {
                let user = match userinfo.split_once(':') {
                    Some((user, secret)) => {
                        password = Some(decode(secret));
                        remember(&mut secrets, secret);
                        user
                    }
                    None => userinfo,
                };
                (Some(user), location)
            }
            None => (None, rest),
        };
        // A fragment means nothing to a database URL and could hold anything.
        let location = location.split('#').next().unwrap_or_default();
        let (base, query) = match location.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (location, None),
        };
        let mut kept = Vec::new();
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name).to_ascii_lowercase();
            if name.contains("password") {
                remember(&mut secrets, value);
                if name == "password" {
                    password = Some(decode(value));
                }
            } else if !pair.is_empty() {
                kept.push(pair);
            }
        }
        let mut public = format!("{scheme}://");
        if let Some(user) = user.filter(|u| !u.is_empty()) {
            public.push_str(user);
            public.push('@');
        }
        public.push_str(base);
        if !kept.is_empty() {
            public.push('?');
            public.push_str(&kept.join("&"));
        }
        Self {
            public,
            password,
            secrets,
        }
    }

    /// The URL without its password, for libraries.
    pub fn public(&self) -> &str {
        &self.public
    }

    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The URL as logs show it: without secrets, saying that a password was given.
    pub fn shown(&self) -> String {
        match (&self.password, self.public.split_once("://")) {
            (Some(_), Some((scheme, rest))) => match rest.split_once('@') {
                Some((user, rest)) => format!("{scheme}://{user}:[redacted]@{rest}"),
                None => format!("{scheme}://:[redacted]@{rest}"),
            },
            _ => self.public.clone(),
        }
    }

    /// `text` with every spelling of the URL's secrets replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for secret in &self.secrets {
            text = text.replace(secret.as_str(), "[redacted]");
        }
        text
    }
}

/// The URL without its password, for logs.
pub fn redact_url(url: &str) -> String {
    DatabaseUrl::parse(url).shown()
}

/// A database error as text fit for a log: should anything ever quote a secret of the URL
/// back, it is replaced.
pub fn describe(err: &sea_orm::DbErr, url: &str) -> String {
    DatabaseUrl::parse(url).scrub(&err.to_string())
}

/// Records `secret` as written, percent-decoded and percent-encoded, longest first, so a
/// shorter spelling never leaves part of a longer one behind.
fn remember(secrets: &mut Vec<String>, secret: &str) {
    if secret.is_empty() {
        return;
    }
    let decoded = decode(secret);
    let encoded = encode(&decoded);
    for spelling in [secret.to_owned(), decoded, encoded] {
        if !secrets.contains(&spelling) {
            secrets.push(spelling);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Percent-decodes `text`; invalid escapes stay as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes every byte but ASCII letters and digits.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_taken_out_wherever_the_url_carries_them() {
        let url = DatabaseUrl::parse("postgres://app:s3cret@db:25060/app?sslmode=require");
        assert_eq!(url.public(), "postgres://app@db:25060/app?sslmode=require");
        assert_eq!(url.password(), Some("s3cret"));
        assert_eq!(
            url.shown(),
            "postgres://app:[redacted]@db:25060/app?sslmode=require"
        );
        let url = DatabaseUrl::parse("postgres://db/app?user=app&password=s3cret&sslmode=require");
        assert_eq!(url.public(), "postgres://db/app?user=app&sslmode=require");
        assert_eq!(url.password(), Some("s3cret"));
        let sqlite = "sqlite://data/app.sqlite?mode=rwc";
        assert_eq!(DatabaseUrl::parse(sqlite).public(), sqlite);
    }

    #[test]
    fn reserved_characters_and_encoded_names_cannot_smuggle_the_password_out() {
        for (url, password, public) in [
            (
                "postgres://postgres:s3c?ret@127.0.0.1:5432/x",
                "s3c?ret",
                "postgres://postgres@127.0.0.1:5432/x",
            ),
            (
                "postgres://u:p%40ss/w#rd@127.0.0.1:1/x",
                "p@ss/w#rd",
                "postgres://u@127.0.0.1:1/x",
            ),
            ("postgres://u:p@ss@db/x#frag", "p@ss", "postgres://u@db/x"),
            (
                "postgres://u@127.0.0.1:5432/x?pass%77ord=hunter2&sslmode=disable",
                "hunter2",
                "postgres://u@127.0.0.1:5432/x?sslmode=disable",
            ),
        ] {
            let parsed = DatabaseUrl::parse(url);
            assert_eq!(parsed.password(), Some(password), "{url}");
            assert_eq!(parsed.public(), public, "{url}");
            assert!(!parsed.shown().contains(password), "{url}");
        }
        let other = DatabaseUrl::parse("postgres://u@db/x?sslpassword=k3y&application_name=a");
        assert_eq!(other.public(), "postgres://u@db/x?application_name=a");
        assert_eq!(other.scrub("key k3y"), "key [redacted]");
    }

    #[test]
    fn error_texts_lose_every_spelling_of_the_password() {
        let url = "postgres://app:s3c%3Fret@db/app";
        for text in [
            "bad s3c?ret",
            "bad s3c%3Fret",
            "bad postgres://app:s3c%3Fret@db/app",
        ] {
            let err = sea_orm::DbErr::Custom(text.into());
            let shown = describe(&err, url);
            assert!(!shown.contains("s3c"), "{shown}");
        }
    }
}
