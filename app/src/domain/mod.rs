//! Values the API accepts, parsed once at the edge: the service never sees an unchecked string.

#[cfg(test)]
mod agreement;
mod chars;
mod email;
mod invalid;
mod user_name;

pub use email::Email;
pub use invalid::Invalid;
pub use user_name::UserName;

/// A user's name and email, both valid: what creating or replacing a user takes.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: UserName,
    pub email: Email,
}
