//! The consistency check: a user written through one server must be readable from every other.

use std::collections::BTreeSet;

use serde_json::json;

use super::probe::{Answer, Probe};
use super::report::Check;

const NAME: &str = "consistency";

/// Creates a user through the load balancer, reads it back until every server has answered
/// with it, deletes it, and checks it is gone.
pub(super) async fn consistency(probe: &mut Probe, servers: &BTreeSet<String>) -> Check {
    let email = format!("verify-{}@rustlb.invalid", uuid::Uuid::now_v7().simple());
    let (created, id) = match create_user(probe, &email).await {
        Ok(created) => created,
        Err(failed) => return failed,
    };
    let path = app::paths::user(&id);
    let (seen, attempts) = match read_back(probe, servers, &path, &email, &created).await {
        Ok(read) => read,
        Err(failed) => return failed,
    };
    if let Err(failed) = delete_user(probe, &path).await {
        return failed;
    }
    let missing: Vec<&String> = servers.difference(&seen).collect();
    if missing.is_empty() {
        Check::pass(
            NAME,
            format!(
                "a user created through {} was read back from {} and deleted",
                created.server_id.as_deref().unwrap_or("?"),
                seen.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        )
    } else {
        Check::fail(
            NAME,
            format!("never read back from {missing:?} in {attempts} requests"),
        )
    }
}

/// The answer to the POST and the new user's id.
async fn create_user(probe: &mut Probe, email: &str) -> Result<(Answer, String), Check> {
    let body = json!({"name": "infra verify", "email": email});
    let created = match probe.write("POST", app::paths::USERS, Some(&body)).await {
        Ok(a) if a.status == 201 => a,
        Ok(a) if a.status == 401 => {
            return Err(Check::fail(
                NAME,
                "POST /api/users answered 401: pass --api-key",
            ));
        }
        Ok(a) => {
            return Err(Check::fail(
                NAME,
                format!("POST /api/users answered {}", a.status),
            ));
        }
        Err(e) => return Err(Check::fail(NAME, format!("POST /api/users: {e}"))),
    };
    let Some(id) = created
        .json
        .as_ref()
        .and_then(|j| j["user"]["id"].as_str().map(str::to_owned))
    else {
        return Err(Check::fail(
            NAME,
            "POST /api/users answered 201 without user.id",
        ));
    };
    Ok((created, id))
}

/// Reads the user at `path` until every server has answered with it (or attempts run out);
/// the servers that did and the requests it took.
async fn read_back(
    probe: &mut Probe,
    servers: &BTreeSet<String>,
    path: &str,
    email: &str,
    created: &Answer,
) -> Result<(BTreeSet<String>, usize), Check> {
    let mut seen = BTreeSet::new();
    let mut attempts = 0;
    // Round robin reaches every server in `servers.len()` requests; leave room for others' traffic.
    while seen.len() < servers.len() && attempts < servers.len() * 6 {
        attempts += 1;
        match probe.get(path).await {
            Ok(a) if a.status == 200 => {
                let same = a.json.as_ref().is_some_and(|j| j["user"]["email"] == email);
                if !same {
                    return Err(Check::fail(
                        NAME,
                        format!("{path} answered a different user"),
                    ));
                }
                if let Some(s) = a.server_id {
                    seen.insert(s);
                }
            }
            Ok(a) => {
                return Err(Check::fail(
                    NAME,
                    format!(
                        "{} answered {} for the user created by {}",
                        a.server_id.as_deref().unwrap_or("a server"),
                        a.status,
                        created.server_id.as_deref().unwrap_or("another server")
                    ),
                ));
            }
            Err(e) => return Err(Check::fail(NAME, format!("GET {path}: {e}"))),
        }
    }
    Ok((seen, attempts))
}

/// Deletes the user at `path` and checks that it is gone.
async fn delete_user(probe: &mut Probe, path: &str) -> Result<(), Check> {
    let deleted = probe.write("DELETE", path, None).await;
    if !matches!(&deleted, Ok(a) if a.status == 204) {
        return Err(Check::fail(
            NAME,
            format!("DELETE {path} answered {:?}", deleted.map(|a| a.status)),
        ));
    }
    match probe.get(path).await {
        Ok(a) if a.status == 404 => Ok(()),
        other => Err(Check::fail(
            NAME,
            format!(
                "after DELETE, {path} answered {:?}",
                other.map(|a| a.status)
            ),
        )),
    }
}
