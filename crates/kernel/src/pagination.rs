//! Cursor pagination: `limit` (1-100, default 50) and a `before` or `after` id, or
//! both for the ids strictly between them.
//! Never offsets: a cursor is stable while new rows arrive.

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::{AppError, ErrorCode};

/// The largest page a client may ask for.
pub const MAX_LIMIT: u32 = 100;
/// The page size when the client does not say.
pub const DEFAULT_LIMIT: u32 = 50;

/// The cursor query parameters of a list route.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// How many items to return, 1-100 (default 50).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Only items whose id sorts before this id: the page nearest to it. With
    /// `after` too, the items strictly between the two, from the `after` side.
    pub before: Option<Uuid>,
    /// Only items whose id sorts after this id: the page nearest to it.
    pub after: Option<Uuid>,
}

/// Where a page starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// From the start.
    Start,
    /// Items with ids below this one.
    Before(Uuid),
    /// Items with ids above this one.
    After(Uuid),
    /// Items with ids above `after` and below `before`, from the `after` side.
    Between {
        /// The exclusive lower bound.
        after: Uuid,
        /// The exclusive upper bound.
        before: Uuid,
    },
}

/// A parsed, valid page request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// 1-100.
    pub limit: i64,
    /// Where the page starts.
    pub cursor: Cursor,
}

impl PageQuery {
    /// Checks the range of `limit`; reads the cursors.
    pub fn parse(&self) -> Result<Page, AppError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(AppError::new(
                ErrorCode::InvalidQuery,
                "limit must be between 1 and 100",
            ));
        }
        let cursor = match (self.before, self.after) {
            (None, None) => Cursor::Start,
            (Some(id), None) => Cursor::Before(id),
            (None, Some(id)) => Cursor::After(id),
            (Some(before), Some(after)) => Cursor::Between { after, before },
        };
        Ok(Page {
            limit: i64::from(limit),
            cursor,
        })
    }
}

impl Page {
    /// Puts rows loaded by a [`keyset!`](crate::keyset) query in ascending order (a
    /// `before` page is read from its end, nearest first).
    pub fn in_order<T>(&self, mut rows: Vec<T>) -> Vec<T> {
        if matches!(self.cursor, Cursor::Before(_)) {
            rows.reverse();
        }
        rows
    }
}

/// Applies a [`Page`] to a boxed diesel query, keyed on a UUID column: ascending from
/// the start or from `after`, descending from `before` (then [`Page::in_order`]), or the
/// ids strictly between. `keyset!(query, users::id, page)`.
#[macro_export]
macro_rules! keyset {
    ($query:expr, $column:expr, $page:expr) => {{
        use ::diesel::{ExpressionMethods as _, QueryDsl as _};
        let page: $crate::Page = $page;
        let query = $query.limit(page.limit);
        match page.cursor {
            $crate::pagination::Cursor::Start => query.order($column.asc()),
            $crate::pagination::Cursor::After(id) => {
                query.filter($column.gt(id)).order($column.asc())
            }
            $crate::pagination::Cursor::Before(id) => {
                query.filter($column.lt(id)).order($column.desc())
            }
            $crate::pagination::Cursor::Between { after, before } => query
                .filter($column.gt(after))
                .filter($column.lt(before))
                .order($column.asc()),
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(PageQuery::default().parse().unwrap().limit, 50);
        for bad in [0, 101] {
            let query = PageQuery {
                limit: Some(bad),
                ..Default::default()
            };
            assert_eq!(query.parse().unwrap_err().code(), ErrorCode::InvalidQuery);
        }
        let query = PageQuery {
            limit: Some(100),
            ..Default::default()
        };
        assert_eq!(query.parse().unwrap().limit, 100);
    }

    #[test]
    fn cursors() {
        let id = Uuid::now_v7();
        let later = Uuid::now_v7();
        let both = PageQuery {
            before: Some(later),
            after: Some(id),
            ..Default::default()
        };
        assert_eq!(
            both.parse().unwrap().cursor,
            Cursor::Between {
                after: id,
                before: later
            }
        );
        let after = PageQuery {
            after: Some(id),
            ..Default::default()
        };
        assert_eq!(after.parse().unwrap().cursor, Cursor::After(id));
    }
}
