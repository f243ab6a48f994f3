//! Relay-style keyset pagination shared by every list.
//!
//! Lists are ordered by a `(time, id)` pair, so pages stay stable while rows
//! are inserted concurrently: a cursor names a position in that order, not an
//! offset. Cursors are opaque to clients (base64url of a versioned string);
//! a forged or malformed one is `BAD_USER_INPUT`.

use async_graphql::connection::CursorType;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeZone, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, IntoColumnRef};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select};
use uuid::Uuid;

use crate::error::{AppError, AppResult};

/// A position in a `(time, id)` ordering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cursor {
    /// The time component (microsecond precision).
    pub at: DateTime<Utc>,
    /// The id component, breaking ties.
    pub id: Uuid,
}

impl Cursor {
    /// A cursor at `(at, id)`.
    pub fn new(at: DateTime<Utc>, id: Uuid) -> Self {
        Cursor { at, id }
    }

    /// The opaque string form.
    pub fn encode(&self) -> String {
        self.encode_tagged(DEFAULT_TAG)
    }

    /// Parses the opaque string form.
    pub fn decode(s: &str) -> AppResult<Cursor> {
        match Cursor::decode_tagged(s)? {
            (DEFAULT_TAG, c) => Ok(c),
            _ => Err(AppError::bad_input("cursor", "invalid cursor")),
        }
    }

    /// The opaque string form of a position in another `(time, id)` order
    /// of the same rows, told apart by `tag` (a short ASCII word without
    /// `:`, e.g. `c1` for the commit order of events). [`Cursor::decode`]
    /// refuses tagged cursors; [`Cursor::decode_tagged`] returns the tag.
    pub fn encode_tagged(&self, tag: &str) -> String {
        URL_SAFE_NO_PAD.encode(format!(
            "{tag}:{}:{}",
            self.at.timestamp_micros(),
            self.id.simple()
        ))
    }

    /// Parses a cursor of any tag; the tag is `v1` for [`Cursor::encode`].
    pub fn decode_tagged(s: &str) -> AppResult<(&'static str, Cursor)> {
        let invalid = || AppError::bad_input("cursor", "invalid cursor");
        if s.len() > 200 {
            return Err(invalid());
        }
        let raw = URL_SAFE_NO_PAD
            .decode(s.as_bytes())
            .map_err(|_| invalid())?;
        let text = std::str::from_utf8(&raw).map_err(|_| invalid())?;
        let mut parts = text.split(':');
        let (Some(tag), Some(micros), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let tag = KNOWN_TAGS
            .iter()
            .copied()
            .find(|t| *t == tag)
            .ok_or_else(invalid)?;
        let micros: i64 = micros.parse().map_err(|_| invalid())?;
        let at = Utc.timestamp_micros(micros).single().ok_or_else(invalid)?;
        let id = Uuid::parse_str(id).map_err(|_| invalid())?;
        Ok((tag, Cursor { at, id }))
    }
}

/// The tag of ordinary cursors.
pub const DEFAULT_TAG: &str = "v1";

/// The tag of cursors in the commit order of events (`received_at`, id).
pub const COMMIT_TAG: &str = "c1";

/// The tag of cursors over metric samples (`timestamp`, integer id).
pub const SAMPLE_TAG: &str = "m1";

/// Every tag a cursor may carry.
const KNOWN_TAGS: [&str; 3] = [DEFAULT_TAG, COMMIT_TAG, SAMPLE_TAG];

impl CursorType for Cursor {
    type Error = String;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        Cursor::decode(s).map_err(|e| e.message)
    }

    fn encode_cursor(&self) -> String {
        self.encode()
    }
}

/// The Relay arguments of a list field, before validation.
#[derive(Debug, Clone, Default)]
pub struct PageArgs {
    /// Items after `after`, at most this many.
    pub first: Option<i32>,
    /// Exclusive lower cursor.
    pub after: Option<String>,
    /// Items before `before`, at most this many (from the end).
    pub last: Option<i32>,
    /// Exclusive upper cursor.
    pub before: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Exclusive lower bound.
    pub after: Option<Cursor>,
    /// Exclusive upper bound.
    pub before: Option<Cursor>,
    /// Page size.
    pub limit: u64,
    /// Whether the page is taken from the end (`last`).
    pub backward: bool,
}

impl Page {
    /// Validates Relay arguments: sizes must be 0..=`max` (default
    /// `default`), `first` and `last` are not combined, cursors must decode.
    pub fn from_args(args: PageArgs, default: u64, max: u64) -> AppResult<Page> {
        let check = |name: &str, v: i32| -> AppResult<u64> {
            if v < 0 {
                return Err(AppError::bad_input(
                    name,
                    format!("{name} must not be negative"),
                ));
            }
            let v = v as u64;
            if v > max {
                return Err(AppError::bad_input(
                    name,
                    format!("{name} must be at most {max}"),
                ));
            }
            Ok(v)
        };
        let (limit, backward) = match (args.first, args.last) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_input(
                    "last",
                    "pass either first or last, not both",
                ));
            }
            (Some(f), None) => (check("first", f)?, false),
            (None, Some(l)) => (check("last", l)?, true),
            (None, None) => (
                std::cmp::min(default, max),
                args.before.is_some() && args.after.is_none(),
            ),
        };
        let after = args
            .after
            .as_deref()
            .map(Cursor::decode)
            .transpose()
            .map_err(|e| e.with_field("after"))?;
        let before = args
            .before
            .as_deref()
            .map(Cursor::decode)
            .transpose()
            .map_err(|e| e.with_field("before"))?;
        Ok(Page {
            after,
            before,
            limit,
            backward,
        })
    }

    /// The first `limit` items from the start.
    pub fn first(limit: u64) -> Page {
        Page {
            after: None,
            before: None,
            limit,
            backward: false,
        }
    }
}

/// `(at, id) > c` (or `<` when `greater` is false) as a condition.
pub fn after_condition(
    at: impl IntoColumnRef + Copy,
    id: impl IntoColumnRef + Copy,
    c: &Cursor,
    greater: bool,
) -> Condition {
    if greater {
        Condition::any().add(Expr::col(at).gt(c.at)).add(
            Condition::all()
                .add(Expr::col(at).eq(c.at))
                .add(Expr::col(id).gt(c.id)),
        )
    } else {
        Condition::any().add(Expr::col(at).lt(c.at)).add(
            Condition::all()
                .add(Expr::col(at).eq(c.at))
                .add(Expr::col(id).lt(c.id)),
        )
    }
}

/// Applies the page's bounds, order and limit (+1 to learn whether more
/// exist) to a query ordered by `(at, id)`.
pub fn keyset<E: EntityTrait>(
    query: Select<E>,
    at: E::Column,
    id: E::Column,
    page: &Page,
) -> Select<E>
where
    E::Column: ColumnTrait + Copy,
{
    let mut query = query;
    if let Some(c) = &page.after {
        query = query.filter(after_condition(at, id, c, true));
    }
    if let Some(c) = &page.before {
        query = query.filter(after_condition(at, id, c, false));
    }
    query = if page.backward {
        query.order_by_desc(at).order_by_desc(id)
    } else {
        query.order_by_asc(at).order_by_asc(id)
    };
    query.limit(page.limit + 1)
}

/// One page of rows in ascending order, with what lies beyond it.
#[derive(Debug, Clone)]
pub struct Rows<T> {
    /// The rows, ascending.
    pub items: Vec<(Cursor, T)>,
    /// Whether rows exist before the first one.
    pub has_previous: bool,
    /// Whether rows exist after the last one.
    pub has_next: bool,
}

impl<T> Rows<T> {
    /// Trims the extra row fetched by [`keyset`] and restores ascending order.
    /// When paging forward from a cursor, rows before it are known to exist
    /// (the cursor came from one), and likewise backward.
    pub fn new(mut rows: Vec<T>, page: &Page, cursor: impl Fn(&T) -> Cursor) -> Rows<T> {
        let more = rows.len() as u64 > page.limit;
        rows.truncate(page.limit as usize);
        if page.backward {
            rows.reverse();
        }
        let items = rows.into_iter().map(|r| (cursor(&r), r)).collect();
        let (has_previous, has_next) = if page.backward {
            (more, page.before.is_some())
        } else {
            (page.after.is_some(), more)
        };
        Rows {
            items,
            has_previous,
            has_next,
        }
    }

    /// Maps the rows, keeping the cursors.
    pub fn map<U>(self, mut f: impl FnMut(T) -> U) -> Rows<U> {
        Rows {
            items: self.items.into_iter().map(|(c, t)| (c, f(t))).collect(),
            has_previous: self.has_previous,
            has_next: self.has_next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let c = Cursor::new(crate::util::now(), Uuid::now_v7());
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn tagged_cursors_round_trip_and_are_refused_as_plain_ones() {
        let c = Cursor::new(crate::util::now(), Uuid::now_v7());
        let tagged = c.encode_tagged(COMMIT_TAG);
        assert_eq!(Cursor::decode_tagged(&tagged).unwrap(), (COMMIT_TAG, c));
        assert_eq!(
            Cursor::decode_tagged(&c.encode()).unwrap(),
            (DEFAULT_TAG, c)
        );
        assert!(Cursor::decode(&tagged).is_err());
        assert!(Cursor::decode_tagged(&c.encode_tagged("zz")).is_err());
    }

    #[test]
    fn forged_cursors_are_bad_user_input() {
        for bad in [
            "",
            "xyz",
            "djE6MTIz",
            &URL_SAFE_NO_PAD.encode("v1:abc:def"),
            &"A".repeat(500),
        ] {
            let err = Cursor::decode(bad).unwrap_err();
            assert_eq!(err.code, crate::error::ErrorCode::BadUserInput, "{bad}");
        }
    }

    #[test]
    fn negative_or_oversized_page_sizes_are_rejected() {
        let args = |first, last| PageArgs {
            first,
            last,
            ..Default::default()
        };
        assert!(Page::from_args(args(Some(-1), None), 100, 1000).is_err());
        assert!(Page::from_args(args(Some(1001), None), 100, 1000).is_err());
        assert!(Page::from_args(args(Some(1), Some(1)), 100, 1000).is_err());
        assert_eq!(
            Page::from_args(args(None, None), 100, 1000).unwrap().limit,
            100
        );
        assert!(
            Page::from_args(args(None, Some(5)), 100, 1000)
                .unwrap()
                .backward
        );
    }

    #[test]
    fn a_backward_page_is_returned_in_ascending_order() {
        let page = Page {
            after: None,
            before: None,
            limit: 2,
            backward: true,
        };
        let t = crate::util::now();
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        // Fetched descending, one extra.
        let rows = vec![ids[2], ids[1], ids[0]];
        let r = Rows::new(rows, &page, |id| Cursor::new(t, *id));
        let got: Vec<Uuid> = r.items.iter().map(|(_, id)| *id).collect();
        assert_eq!(got, vec![ids[1], ids[2]]);
        assert!(r.has_previous);
        assert!(!r.has_next);
    }
}
