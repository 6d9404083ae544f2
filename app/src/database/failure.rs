//! What a database error means: the database is away, it refused some rows, or something else.

use sea_orm::{DbErr, RuntimeErr};

/// How a failed database operation is to be treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The database cannot be talked to right now (down, refusing sessions, out of
    /// connections, network or TLS trouble): nothing is wrong with the request, so it is
    /// answered 503 and work such as log rows is kept for later.
    Unreachable,
    /// The database refused the data itself (a constraint, a value out of range): retrying
    /// the same rows cannot help.
    RowRejected,
    /// Anything else (a bug, a missing table, a permission).
    Other,
}

/// Classifies `err`. Errors while getting a connection count as unreachable whatever their
/// cause; after that, the driver error and its SQLSTATE class decide.
pub fn classify(err: &DbErr) -> Failure {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Failure::Unreachable,
        DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err)) => {
            classify_sqlx(err)
        }
        _ => Failure::Other,
    }
}

/// [`classify`] for a driver error.
fn classify_sqlx(err: &sea_orm::sqlx::Error) -> Failure {
    use sea_orm::sqlx::Error as E;
    match err {
        E::Io(_)
        | E::Tls(_)
        | E::Protocol(_)
        | E::PoolTimedOut
        | E::PoolClosed
        | E::WorkerCrashed => Failure::Unreachable,
        E::Database(db) => {
            let postgres = db
                .try_downcast_ref::<sea_orm::sqlx::postgres::PgDatabaseError>()
                .is_some();
            match db.code() {
                Some(code) if postgres => classify_sqlstate(&code),
                Some(code) => code.parse().map_or(Failure::Other, classify_sqlite),
                None => Failure::Other,
            }
        }
        _ => Failure::Other,
    }
}

/// A PostgreSQL error by its SQLSTATE class (the first two characters).
fn classify_sqlstate(code: &str) -> Failure {
    match code.get(..2) {
        // Connection exception, invalid authorization, insufficient resources (too many
        // connections, disk full), operator intervention (sessions killed, shutting down).
        Some("08" | "28" | "53" | "57") => Failure::Unreachable,
        // Data exception, integrity constraint violation.
        Some("22" | "23") => Failure::RowRejected,
        _ => Failure::Other,
    }
}

/// A SQLite error by its result code; extended codes keep the primary one in the low byte.
fn classify_sqlite(code: i32) -> Failure {
    match code & 0xff {
        // BUSY, LOCKED, IOERR, FULL, CANTOPEN: the file is busy or the disk is in trouble.
        5 | 6 | 10 | 13 | 14 => Failure::Unreachable,
        // TOOBIG, CONSTRAINT, MISMATCH, RANGE.
        18 | 19 | 20 | 25 => Failure::RowRejected,
        _ => Failure::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_classes_and_sqlite_codes_decide() {
        for code in ["08006", "28P01", "53300", "57P01", "57P03"] {
            assert_eq!(classify_sqlstate(code), Failure::Unreachable, "{code}");
        }
        for code in ["23514", "23505", "22001"] {
            assert_eq!(classify_sqlstate(code), Failure::RowRejected, "{code}");
        }
        for code in ["42P01", "42501", "XX000"] {
            assert_eq!(classify_sqlstate(code), Failure::Other, "{code}");
        }
        // BUSY, BUSY_SNAPSHOT, IOERR, FULL; CONSTRAINT, CONSTRAINT_CHECK, _UNIQUE, TOOBIG; ERROR.
        for (code, failure) in [
            (5, Failure::Unreachable),
            (517, Failure::Unreachable),
            (10, Failure::Unreachable),
            (13, Failure::Unreachable),
            (19, Failure::RowRejected),
            (275, Failure::RowRejected),
            (2067, Failure::RowRejected),
            (18, Failure::RowRejected),
            (1, Failure::Other),
        ] {
            assert_eq!(classify_sqlite(code), failure, "{code}");
        }
    }

    #[test]
    fn connection_errors_are_unreachable_whatever_their_text() {
        use sea_orm::ConnAcquireErr;
        assert_eq!(
            classify(&DbErr::ConnectionAcquire(ConnAcquireErr::Timeout)),
            Failure::Unreachable
        );
        let refused = sea_orm::sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into());
        let exec = DbErr::Exec(RuntimeErr::SqlxError(std::sync::Arc::new(refused)));
        assert_eq!(classify(&exec), Failure::Unreachable);
        assert_eq!(classify(&DbErr::Custom("x".into())), Failure::Other);
    }
}
