//! `cargo run -p migration -- up|down|status|fresh`: the sea-orm migration CLI.
//!
//! The database comes from `DATABASE_URL` (or `-u`), as with `sea-orm-cli`.

use sea_orm_migration::prelude::*;

#[tokio::main]
async fn main() {
    cli::run_cli(migration::Migrator).await;
}
