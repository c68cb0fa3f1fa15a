//! Queries on `users`. Each takes a connection, so a caller can run several in one
//! transaction. Soft-deleted users are invisible to every read here.

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Text};
use diesel_async::RunQueryDsl;
use synctalk_db::AsyncPgConnection;
use synctalk_db::schema::users;
use synctalk_kernel::UserId;
use synctalk_kernel::pagination::Page;

use crate::model::{NewUser, UserChanges, UserRow};

/// Why an account could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    /// A live user has this username.
    #[error("username taken")]
    UsernameTaken,
    /// A live user has this email (ignoring case).
    #[error("email taken")]
    EmailTaken,
    /// The query failed.
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// Inserts an account.
pub async fn create(
    conn: &mut AsyncPgConnection,
    user: NewUser<'_>,
) -> Result<UserRow, CreateUserError> {
    diesel::insert_into(users::table)
        .values(&user)
        .returning(UserRow::as_returning())
        .get_result(conn)
        .await
        .map_err(|error| match synctalk_db::unique_violation(&error) {
            Some("users_username_key") => CreateUserError::UsernameTaken,
            Some("users_email_key") => CreateUserError::EmailTaken,
            _ => CreateUserError::Db(error),
        })
}

/// A live user by id.
pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<UserRow>> {
    users::table
        .filter(users::id.eq(id))
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Live users by id, in one query (missing or deleted ones are left out).
pub async fn find_many(conn: &mut AsyncPgConnection, ids: &[UserId]) -> QueryResult<Vec<UserRow>> {
    users::table
        .filter(users::id.eq_any(ids))
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .load(conn)
        .await
}

/// A live user by username, or by email ignoring case.
pub async fn find_by_login(
    conn: &mut AsyncPgConnection,
    login: &str,
) -> QueryResult<Option<UserRow>> {
    let query = users::table
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select());
    if login.contains('@') {
        query
            .filter(
                sql::<Bool>("lower(email) = lower(")
                    .bind::<Text, _>(login)
                    .sql(")"),
            )
            .first(conn)
            .await
            .optional()
    } else {
        query
            .filter(users::username.eq(login))
            .first(conn)
            .await
            .optional()
    }
}

/// Whether a live user has this email, ignoring case.
pub async fn email_taken(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        users::table.filter(users::deleted_at.is_null()).filter(
            sql::<Bool>("lower(email) = lower(")
                .bind::<Text, _>(email)
                .sql(")"),
        ),
    ))
    .get_result(conn)
    .await
}

/// Applies a profile change to a live user; `None` when there is no such user.
pub async fn update(
    mut conn: &AsyncPgConnection,
    id: UserId,
    changes: UserChanges,
) -> QueryResult<Option<UserRow>> {
    // Its text varies only with which fields change.
    synctalk_db::prepared(
        diesel::update(
            users::table
                .filter(users::id.eq(id))
                .filter(users::deleted_at.is_null()),
        )
        .set(&changes)
        .returning(UserRow::as_returning()),
    )
    .get_result(&mut conn)
    .await
    .optional()
}

/// Soft-deletes a user; `false` when there was no live user.
pub async fn soft_delete(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<bool> {
    let now = chrono::Utc::now();
    let updated = diesel::update(
        users::table
            .filter(users::id.eq(id))
            .filter(users::deleted_at.is_null()),
    )
    .set((users::deleted_at.eq(now), users::updated_at.eq(now)))
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Live users whose username starts with `prefix` (all when empty), by id.
pub async fn search(
    conn: &mut AsyncPgConnection,
    prefix: &str,
    page: Page,
) -> QueryResult<Vec<UserRow>> {
    let mut query = users::table
        .filter(users::deleted_at.is_null())
        .select(UserRow::as_select())
        .into_boxed();
    if !prefix.is_empty() {
        query = query.filter(users::username.like(format!("{}%", escape_like(prefix))));
    }
    let rows = synctalk_kernel::keyset!(query, users::id, page)
        .load(conn)
        .await?;
    Ok(page.in_order(rows))
}

fn escape_like(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}
