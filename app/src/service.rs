//! Users in the database: `Query` reads, `Mutation` writes, both over `&DatabaseConnection`.

use chrono::Utc;
use entity::prelude::*;
use entity::users::{self, canonical_email};
use std::collections::HashSet;

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, DatabaseConnection, DbErr, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, SqlErr, TransactionTrait,
};
use uuid::Uuid;

use crate::domain::NewUser;

/// Reads.
pub struct Query;

/// Writes.
pub struct Mutation;

/// Why a user write did not happen.
#[derive(Debug)]
pub enum WriteError {
    /// Another user already has this email (compared in its canonical form: case and Unicode
    /// normalisation aside).
    EmailTaken,
    NotFound,
    Db(DbErr),
}

impl From<DbErr> for WriteError {
    fn from(err: DbErr) -> Self {
        if matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            Self::EmailTaken
        } else {
            Self::Db(err)
        }
    }
}

impl Query {
    /// `SELECT 1`, for `/health`.
    pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
        db.ping().await
    }

    /// A page of users, newest first, and the total count.
    pub async fn list_users(
        db: &DatabaseConnection,
        limit: u64,
        offset: u64,
    ) -> Result<(Vec<users::Model>, u64), DbErr> {
        let page = Users::find()
            .order_by_desc(users::Column::CreatedAt)
            .order_by_desc(users::Column::Id)
            .limit(limit)
            .offset(offset)
            .all(db);
        let total = Self::count_users(db);
        let (page, total) = tokio::try_join!(page, total)?;
        Ok((page, total))
    }

    pub async fn find_user(
        db: &DatabaseConnection,
        id: Uuid,
    ) -> Result<Option<users::Model>, DbErr> {
        Users::find_by_id(id).one(db).await
    }

    /// The users there are, from the count triggers keep in `user_counts` (summing its few
    /// rows instead of reading every user).
    pub async fn count_users(db: &DatabaseConnection) -> Result<u64, DbErr> {
        let total: Option<i64> = UserCounts::find()
            .select_only()
            // PostgreSQL sums BIGINT into NUMERIC; the cast keeps both databases on i64.
            .column_as(
                Expr::cust("CAST(COALESCE(SUM(users), 0) AS BIGINT)"),
                "total",
            )
            .into_tuple()
            .one(db)
            .await?;
        Ok(total.unwrap_or(0).max(0) as u64)
    }
}

impl Mutation {
    /// The row a create writes: a new id, the canonical email key, both times now.
    pub fn new_user_row(user: NewUser, created_by: &str) -> users::Model {
        let now = Utc::now();
        let email_key = canonical_email(user.email.as_ref());
        users::Model {
            id: Uuid::now_v7(),
            name: user.name.into(),
            email: user.email.into(),
            email_key,
            created_at: now,
            updated_at: now,
            created_by: created_by.to_owned(),
        }
    }

    /// Inserts one prepared row ([`Mutation::new_user_row`]); `EmailTaken` when the email is
    /// in use in any letter case or Unicode normalisation.
    pub async fn insert_user(
        db: &DatabaseConnection,
        row: users::Model,
    ) -> Result<users::Model, WriteError> {
        // SQLite hands a RETURNING row back before the autocommit's COMMIT, whose failure (a
        // full disk) would then go unseen: the row answered would not exist. Without RETURNING
        // the INSERT runs to its end and its commit's error is this call's; the row is the one
        // written. PostgreSQL commits before it answers, so it keeps RETURNING.
        if db.get_database_backend() == DatabaseBackend::Sqlite {
            Users::insert(row.clone().into_active_model())
                .exec_without_returning(db)
                .await?;
            Ok(row)
        } else {
            Ok(insert_user(db, row.into_active_model()).await?)
        }
    }

    /// Inserts many prepared rows in one statement (PostgreSQL), skipping each whose email
    /// key is taken, by an existing user or by an earlier row of the same statement; the ids
    /// of the rows inserted. One round trip and one commit for all of them.
    pub async fn insert_users<'a>(
        db: &DatabaseConnection,
        rows: impl IntoIterator<Item = &'a users::Model>,
    ) -> Result<HashSet<Uuid>, DbErr> {
        use users::Column;
        let mut insert = sea_orm::sea_query::Query::insert();
        insert.into_table(Users).columns([
            Column::Id,
            Column::Name,
            Column::Email,
            Column::EmailKey,
            Column::CreatedAt,
            Column::UpdatedAt,
            Column::CreatedBy,
        ]);
        for r in rows {
            insert.values_panic([
                r.id.into(),
                r.name.clone().into(),
                r.email.clone().into(),
                r.email_key.clone().into(),
                r.created_at.into(),
                r.updated_at.into(),
                r.created_by.clone().into(),
            ]);
        }
        insert
            .on_conflict(OnConflict::column(Column::EmailKey).do_nothing().to_owned())
            .returning_col(Column::Id);
        let statement = db.get_database_backend().build(&insert);
        db.query_all_raw(statement)
            .await?
            .iter()
            .map(|row| row.try_get::<Uuid>("", "id"))
            .collect()
    }

    /// Replaces a user's name and email.
    pub async fn update_user(
        db: &DatabaseConnection,
        id: Uuid,
        user: NewUser,
    ) -> Result<users::Model, WriteError> {
        // As in `insert_user`: on SQLite the answer waits for the commit.
        let rows = if db.get_database_backend() == DatabaseBackend::Sqlite {
            let txn = db.begin().await?;
            let rows = update_user(&txn, id, user).await?;
            txn.commit().await?;
            rows
        } else {
            update_user(db, id, user).await?
        };
        rows.into_iter().next().ok_or(WriteError::NotFound)
    }

    /// Deletes a user; false when there was none.
    pub async fn delete_user(db: &DatabaseConnection, id: Uuid) -> Result<bool, DbErr> {
        Ok(Users::delete_by_id(id).exec(db).await?.rows_affected > 0)
    }
}

async fn insert_user<C: ConnectionTrait>(
    db: &C,
    model: users::ActiveModel,
) -> Result<users::Model, DbErr> {
    Users::insert(model).exec_with_returning(db).await
}

async fn update_user<C: ConnectionTrait>(
    db: &C,
    id: Uuid,
    user: NewUser,
) -> Result<Vec<users::Model>, DbErr> {
    let email_key = canonical_email(user.email.as_ref());
    Users::update_many()
        .col_expr(users::Column::Name, Expr::value(String::from(user.name)))
        .col_expr(users::Column::Email, Expr::value(String::from(user.email)))
        .col_expr(users::Column::EmailKey, Expr::value(email_key))
        .col_expr(users::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(users::Column::Id.eq(id))
        .exec_with_returning(db)
        .await
}
