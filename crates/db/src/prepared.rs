//! Statements prepared once per connection.
//!
//! diesel prepares a raw [`sql_query`](diesel::sql_query), an `UPDATE`, an upsert or an
//! `= ANY` afresh for every execution: an extra round trip to PostgreSQL (Parse and
//! Describe, then Bind and Execute) and a parse and plan on the server, every time. On a
//! hot path that is a third of what a write costs. [`prepared`] marks a query whose SQL
//! text comes from a small fixed set as safe to keep: the connection's statement cache
//! then holds it, keyed by its SQL text and bind types, and later executions only bind
//! and execute.
//!
//! Only for SQL that does not grow with its input (a literal, or a statement whose
//! shape varies over a handful of forms): every distinct text stays in the cache for
//! the life of the connection.

use diesel::QueryResult;
use diesel::pg::Pg;
use diesel::query_builder::{AstPass, BoxedSqlQuery, Query, QueryFragment, QueryId, SqlQuery};
use diesel::serialize::ToSql;
use diesel::sql_types::HasSqlType;

/// A query whose prepared statement the connection keeps (see the module docs).
#[derive(Debug, Clone, Copy)]
#[must_use = "a query does nothing until it is run"]
pub struct Prepared<Q>(Q);

/// Marks `query` for the connection's statement cache (see the module docs).
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    // What diesel asks before caching; the wrapped query answers "no" for its whole
    // kind, while this one's text is known to come from a fixed set.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

// No static id: the cache keys the statement by its SQL text.
impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

/// [`diesel::sql_query`] whose statement the connection keeps (see the module docs):
/// `sql` is a literal, so its text comes from a fixed set by construction.
pub fn sql<'f>(sql: &'static str) -> Prepared<BoxedSqlQuery<'f, Pg, SqlQuery>> {
    Prepared(diesel::sql_query(sql).into_boxed())
}

impl<'f> Prepared<BoxedSqlQuery<'f, Pg, SqlQuery>> {
    /// Binds the next parameter, as [`BoxedSqlQuery::bind`].
    pub fn bind<ST, V>(self, value: V) -> Self
    where
        Pg: HasSqlType<ST>,
        V: ToSql<ST, Pg> + Send + 'f,
        ST: Send + 'f,
    {
        Prepared(self.0.bind::<ST, V>(value))
    }
}

/// A query with a `LIMIT` written into its text rather than bound (see [`limited`]).
#[derive(Debug, Clone, Copy)]
#[must_use = "a query does nothing until it is run"]
pub struct Limited<Q> {
    query: Q,
    limit: u8,
}

/// `query LIMIT limit`, the limit a literal, the statement kept prepared.
///
/// diesel binds a `LIMIT` as a parameter. PostgreSQL plans a prepared statement
/// generically only once that plan costs about as much as the plans made for the
/// parameters of its first executions; with the row count unknown it assumes a tenth
/// of the rows, so a page of a large channel (`ORDER BY id DESC LIMIT $2`) keeps
/// getting planned afresh on every execution. With the number in the text its generic
/// plan is the index scan the custom ones are. One statement per limit and query, kept
/// for the connection's life: the query's own text must come from a small fixed set
/// (no `LIMIT`, `FOR UPDATE` or values written in), and callers should round limits
/// to a few sizes.
pub fn limited<Q>(query: Q, limit: u8) -> Limited<Q> {
    Limited { query, limit }
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Limited<Q> {
    fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.query.walk_ast(pass.reborrow())?;
        pass.push_sql(" LIMIT ");
        pass.push_sql(&self.limit.to_string());
        Ok(())
    }

    // The wrapped query's text comes from a fixed set; the limit from 256 values.
    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Limited<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Limited<Q> {
    type SqlType = Q::SqlType;
}
