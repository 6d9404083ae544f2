//! The domain section: the name served over HTTPS, if any.

use super::keys::Section;
use super::reader::Reader;

/// `domain`: a bare domain name, or none for HTTP only.
pub(super) fn parse(r: &mut Reader) -> Option<String> {
    const KEY: &str = "domain";
    let r = r.enter(Section::Domain);
    let domain = r.string(KEY).filter(|d| !d.is_empty());
    if let Some(d) = &domain
        && (!d.contains('.') || d.contains('/') || d.contains(':'))
    {
        r.err(
            KEY,
            format!("must be a bare domain name like api.example.com (got {d:?})"),
        );
    }
    domain
}
