//! Values stored differently by the two backends, with one Rust type each: so the
//! statements and the row mappers are written once.
//!
//! - `Ts`, a UTC instant: `timestamptz` on PostgreSQL; fixed-width UTC text on SQLite
//!   (`2026-11-24T09:00:00.000000Z`), so text order is time order and indexes work.
//! - `Tags`, a list of strings: `jsonb` on PostgreSQL; JSON text on SQLite.
//! - `Ids`, a list of row ids as a parameter: a `bigint[]` on PostgreSQL (`= ANY($n)`, which
//!   the planner answers from the primary key); JSON text on SQLite (`json_each`).

use super::StoreError;
use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Postgres, Sqlite, Type};

/// A UTC instant as each backend stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ts(pub DateTime<Utc>);

impl From<DateTime<Utc>> for Ts {
    fn from(t: DateTime<Utc>) -> Self {
        Ts(t)
    }
}

/// A lead's tags as each backend stores them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tags(pub Vec<String>);

/// UTC text in one fixed-width format: how SQLite stores timestamps (text order is time
/// order), and how both backends pass them inside JSON batches.
pub(crate) fn ts(t: DateTime<Utc>) -> String {
    storable(t).format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// `t` within the years 1 to 9999 (`lead::fields::earliest`, `latest`), which both
/// backends store, as text too (PostgreSQL reads no year 0 in text), and whose text is
/// fixed width (a time past 9999, say a saturated pause, would print as `+10000-...` and
/// sort before `2026-...`): later is the last microsecond of 9999, earlier the first of
/// year 1. So `DateTime::MIN_UTC` is "before every stored time", as a page cursor's start.
pub(crate) fn storable(t: DateTime<Utc>) -> DateTime<Utc> {
    t.clamp(
        crate::lead::fields::earliest(),
        crate::lead::fields::latest(),
    )
}

pub(crate) fn parse_ts(s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

impl Type<Sqlite> for Ts {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(ts(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for Ts {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
        Ok(Ts(parse_ts(text)?))
    }
}

impl Type<Postgres> for Ts {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Postgres> for Ts {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <DateTime<Utc> as Encode<'q, Postgres>>::encode_by_ref(&storable(self.0), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Ts {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(Ts(<DateTime<Utc> as Decode<'r, Postgres>>::decode(value)?))
    }
}

/// A parameter of a hot statement (`sql/hot.rs`), kept apart from the statement so the
/// same statement can be run or explained.
#[derive(Debug, Clone)]
pub enum Arg {
    Ts(Ts),
    Int(i64),
    Text(String),
    /// Text or NULL.
    MaybeText(Option<String>),
    Ids(Ids),
}

/// Row ids bound as one parameter (see `Dialect::in_ids`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ids(pub Vec<i64>);

impl Type<Sqlite> for Ids {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
}

impl<'q> Encode<'q, Sqlite> for Ids {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <String as Encode<'q, Sqlite>>::encode(serde_json::to_string(&self.0)?, buf)
    }
}

impl Type<Postgres> for Ids {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <Vec<i64> as Type<Postgres>>::type_info()
    }
}

impl<'q> Encode<'q, Postgres> for Ids {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <Vec<i64> as Encode<'q, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

impl Type<Sqlite> for Tags {
    fn type_info() -> <Sqlite as Database>::TypeInfo {
        <String as Type<Sqlite>>::type_info()
    }
    fn compatible(ty: &<Sqlite as Database>::TypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for Tags {
    fn decode(value: <Sqlite as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
        Ok(Tags(serde_json::from_str(text)?))
    }
}

impl Type<Postgres> for Tags {
    fn type_info() -> <Postgres as Database>::TypeInfo {
        <sqlx::types::Json<Vec<String>> as Type<Postgres>>::type_info()
    }
    fn compatible(ty: &<Postgres as Database>::TypeInfo) -> bool {
        <sqlx::types::Json<Vec<String>> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for Tags {
    fn decode(value: <Postgres as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let sqlx::types::Json(tags) =
            <sqlx::types::Json<Vec<String>> as Decode<'r, Postgres>>::decode(value)?;
        Ok(Tags(tags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_text_is_fixed_width_so_text_order_is_time_order() {
        let a = DateTime::from_timestamp(1_800_000_000, 5_000).unwrap_or_default();
        let b = a + chrono::Duration::microseconds(1);
        assert_eq!(ts(a).len(), ts(b).len());
        assert!(ts(a) < ts(b));
        assert_eq!(parse_ts(&ts(a)).ok(), Some(a));
    }

    #[test]
    fn times_past_year_9999_are_stored_as_its_last_microsecond_and_still_sort_last() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        let far = DateTime::<Utc>::MAX_UTC;
        assert_eq!(ts(far), "9999-12-31T23:59:59.999999Z");
        assert_eq!(ts(far).len(), ts(now).len());
        assert!(ts(now) < ts(far));
        assert_eq!(ts(DateTime::<Utc>::MIN_UTC), "0001-01-01T00:00:00.000000Z");
        assert_eq!(storable(now), now);
    }
}
