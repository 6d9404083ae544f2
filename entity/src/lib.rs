//! sea-orm entities of the API's shared database, one module per table.

pub mod request_log_spools;
pub mod request_stats;
pub mod requests_log;
pub mod user_counts;
pub mod users;

/// The entities, re-exported under their conventional names.
pub mod prelude {
    pub use super::request_log_spools::Entity as RequestLogSpools;
    pub use super::request_stats::Entity as RequestStats;
    pub use super::requests_log::Entity as RequestsLog;
    pub use super::user_counts::Entity as UserCounts;
    pub use super::users::Entity as Users;
}
