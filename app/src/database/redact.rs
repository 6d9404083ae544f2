//! Database URLs and errors as logs may show them: without the password.

/// The URL without its password (in the user info or a `password=` parameter), for logs.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &base[scheme_end + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!(
                "{}{}:[redacted]{}",
                &base[..scheme_end + 3],
                user,
                &base[at..]
            )
        }
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(query) => {
            let params: Vec<String> = query
                .split('&')
                .map(|p| match p.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => {
                        format!("{k}=[redacted]")
                    }
                    _ => p.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

/// A database error as text fit for a log: should a driver ever quote the URL (or just its
/// password) back, the password is replaced.
pub fn describe(err: &sea_orm::DbErr, url: &str) -> String {
    let text = err.to_string();
    match password(url) {
        Some(secret) if !secret.is_empty() => text.replace(secret, "[redacted]"),
        _ => text,
    }
}

/// The password in a URL's user info or its `password=` parameter.
fn password(url: &str) -> Option<&str> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let in_query = query
        .split('&')
        .find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case("password"))
        })
        .map(|(_, v)| v);
    let scheme_end = base.find("://")? + 3;
    let in_userinfo = base[scheme_end..]
        .rsplit_once('@')
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, pass)| pass);
    in_userinfo.or(in_query)
}

#[cfg(test)]
mod tests {
    use sea_orm::DbErr;

    use super::*;

    #[test]
    fn passwords_are_redacted_wherever_the_url_carries_them() {
        let shown = redact_url("postgres://app:s3cret@db:25060/app?sslmode=require");
        assert_eq!(
            shown,
            "postgres://app:[redacted]@db:25060/app?sslmode=require"
        );
        let shown = redact_url("postgres://db/app?user=app&password=s3cret&sslmode=require");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("sslmode=require"));
        assert_eq!(
            redact_url("sqlite://data/app.sqlite?mode=rwc"),
            "sqlite://data/app.sqlite?mode=rwc"
        );
    }

    #[test]
    fn error_texts_lose_the_password_too() {
        let err = DbErr::Custom("could not use postgres://app:s3cret@db/app".into());
        let text = describe(&err, "postgres://app:s3cret@db/app");
        assert!(!text.contains("s3cret"), "{text}");
        let err = DbErr::Custom("password s3cret rejected".into());
        let text = describe(&err, "postgres://db/app?user=app&password=s3cret");
        assert!(!text.contains("s3cret"), "{text}");
    }
}
