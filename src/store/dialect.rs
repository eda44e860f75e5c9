//! What truly differs between the SQLite and PostgreSQL statements: how a JSON batch is
//! unpacked into rows, how a write transaction begins and locks, and a few functions
//! (`GREATEST` against SQLite's two-argument `MAX`, tag lookups). The statements
//! themselves are written once (`sql/`), with `$N` placeholders, which sqlx's SQLite
//! driver reads too.

/// A column of a JSON batch, and its SQL type.
#[derive(Debug, Clone, Copy)]
pub enum Col {
    Int(&'static str),
    Text(&'static str),
    Bool(&'static str),
    Ts(&'static str),
}

impl Col {
    fn name(self) -> &'static str {
        match self {
            Col::Int(n) | Col::Text(n) | Col::Bool(n) | Col::Ts(n) => n,
        }
    }
}

/// The SQL of one backend.
pub trait Dialect {
    /// `sqlite` or `postgres`.
    const NAME: &'static str;
    /// Begins a transaction that will write (SQLite takes the write lock up front, instead
    /// of failing to upgrade a read lock later).
    const BEGIN_WRITE: &'static str;
    /// Locks the rows a `SELECT` reads until the transaction ends (SQLite: its write
    /// transaction already holds the whole database).
    const FOR_UPDATE: &'static str;
    /// Locks the rows a `SELECT` reads, skipping rows another transaction holds.
    const FOR_UPDATE_SKIP_LOCKED: &'static str;
    /// Locks the rows of the `leads` table aliased `l` that a statement reads, so a
    /// concurrent change is waited for and then seen (PostgreSQL's `FOR SHARE OF l`).
    const FOR_SHARE_LEADS: &'static str;
    /// When a contacted lead went quiet: the later of last contact and last reply.
    const QUIET_SINCE: &'static str;
    /// A join the planner must drive from its left side (SQLite's `CROSS JOIN`).
    const JOIN_IN_ORDER: &'static str;
    /// What `LIMIT` takes for "no limit".
    const NO_LIMIT: Option<i64>;
    /// Counts the migrations tables (0 or 1): 0 means never migrated.
    const HAS_MIGRATIONS_TABLE: &'static str;
    /// Put before a statement, returns the plan the database would use for it ...
    const EXPLAIN: &'static str;
    /// ... one step a row, in this text column.
    const PLAN_COLUMN: &'static str;
    /// Refreshes the planner's statistics of leads after a big import, where needed.
    const REFRESH_STATS: Option<&'static str>;
    /// Whether an index seek uses a whole row value `(a, b) > ($1, $2)`, not only `a`
    /// (see `keyset_page` in `sql/hot.rs`).
    const ROW_VALUE_SEEK: bool;
    /// Whether a `WITH` may hold `INSERT`/`UPDATE` (PostgreSQL's data-modifying CTEs): two
    /// writes in one statement, one round trip.
    const WRITES_IN_WITH: bool;
    /// Whether the runner writes a group of answers and the next group's start in one
    /// transaction (`RunnerStore::settle_and_start`): on PostgreSQL each commit is a WAL
    /// flush, one saved per group. Not on SQLite: in WAL mode with `synchronous = NORMAL`
    /// a commit flushes nothing, and combined commits failing on a full disk left
    /// `/v1/status` unable to read for the whole outage (`tests/it/storage_faults.rs`).
    const GROUP_COMMIT: bool;

    /// A JSON array of objects (parameter `$n`) as a table `alias` with typed `cols`.
    fn records(n: u8, alias: &str, cols: &[Col]) -> String;
    /// `IN` the ids of parameter `$n` (bound as `Ids`), to follow a column: `id {in_ids}`.
    fn in_ids(n: u8) -> String;
    /// A JSON array of strings (parameter `$n`) as a one-column subquery.
    fn texts(n: u8) -> String;
    /// `IN` the strings of the JSON array `$n`, to follow a column, as an index condition
    /// (PostgreSQL: `= ANY` of an array built once, not a semi-join per row).
    fn in_texts(n: u8) -> String;
    /// Element `index_expr` (0-based) of a JSON array of times (parameter `$n`).
    fn ts_at(n: u8, index_expr: &str) -> String;
    /// Tags from JSON text `expr`, as the `tags` column stores them.
    fn tags_from(expr: &str) -> String;
    /// Whether the lead's tags hold the text parameter `$n`.
    fn has_tag(n: u8) -> String;
    /// Takes the daily cap lock of the job named by parameter `$1`, held until the
    /// transaction ends; `None` where the write transaction is lock enough.
    fn cap_lock() -> Option<&'static str>;
    /// The UTC hour of timestamp column `col` as text, `YYYY-MM-DDTHH`.
    fn utc_hour(col: &str) -> String;
    /// Text column `col` compared and ordered byte by byte (code point order), whatever
    /// the database's collation: a prefix is then exactly a range (`leads_target_bytes`,
    /// migration 0015, indexes `leads.target` so on PostgreSQL).
    fn bytes(col: &str) -> String;
}

/// SQLite.
pub struct Lite;

impl Dialect for Lite {
    const NAME: &'static str = "sqlite";
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    const FOR_UPDATE: &'static str = "";
    const FOR_UPDATE_SKIP_LOCKED: &'static str = "";
    const FOR_SHARE_LEADS: &'static str = "";
    const QUIET_SINCE: &'static str =
        "MAX(COALESCE(last_contact_at, last_reply_at), COALESCE(last_reply_at, last_contact_at))";
    const JOIN_IN_ORDER: &'static str = "CROSS JOIN";
    const WRITES_IN_WITH: bool = false;
    const GROUP_COMMIT: bool = false;
    const NO_LIMIT: Option<i64> = Some(-1);
    const HAS_MIGRATIONS_TABLE: &'static str =
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";
    const EXPLAIN: &'static str = "EXPLAIN QUERY PLAN";
    const PLAN_COLUMN: &'static str = "detail";
    /// SQLite's plans for these statements do not depend on statistics (the test in
    /// `tests/it/query_plans.rs` runs without them), and ANALYZE reads the whole table.
    const REFRESH_STATS: Option<&'static str> = None;
    const ROW_VALUE_SEEK: bool = false;

    /// `jsonb_each`, not `json_each`: its `value` of an object is SQLite's binary JSON,
    /// which `json_extract` reads as it is; `json_each` hands out text that each
    /// `json_extract` parses again (an import spent a fifth of its time there).
    fn records(n: u8, alias: &str, cols: &[Col]) -> String {
        let fields: Vec<String> = cols
            .iter()
            .map(|c| format!("json_extract(value, '$.{0}') AS {0}", c.name()))
            .collect();
        format!(
            "(SELECT {} FROM jsonb_each(${n})) AS {alias}",
            fields.join(", ")
        )
    }

    fn in_ids(n: u8) -> String {
        format!("IN (SELECT value FROM json_each(${n}))")
    }

    fn texts(n: u8) -> String {
        format!("(SELECT value FROM json_each(${n}))")
    }

    fn in_texts(n: u8) -> String {
        format!("IN (SELECT value FROM json_each(${n}))")
    }

    fn ts_at(n: u8, index_expr: &str) -> String {
        format!("json_extract(${n}, '$[' || {index_expr} || ']')")
    }

    fn tags_from(expr: &str) -> String {
        expr.to_string()
    }

    fn has_tag(n: u8) -> String {
        format!("EXISTS (SELECT 1 FROM json_each(leads.tags) WHERE value = ${n})")
    }

    fn cap_lock() -> Option<&'static str> {
        None
    }

    /// The stored text is UTC in one fixed width: its first 13 characters are the hour.
    fn utc_hour(col: &str) -> String {
        format!("substr({col}, 1, 13)")
    }

    /// SQLite's default collation (BINARY) is already byte order.
    fn bytes(col: &str) -> String {
        col.to_string()
    }
}

/// PostgreSQL.
pub struct Pg;

impl Dialect for Pg {
    const NAME: &'static str = "postgres";
    const BEGIN_WRITE: &'static str = "BEGIN";
    const FOR_UPDATE: &'static str = " FOR UPDATE";
    const FOR_UPDATE_SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const FOR_SHARE_LEADS: &'static str = " FOR SHARE OF l";
    const QUIET_SINCE: &'static str = "GREATEST(last_contact_at, last_reply_at)";
    const JOIN_IN_ORDER: &'static str = "JOIN";
    const WRITES_IN_WITH: bool = true;
    const GROUP_COMMIT: bool = true;
    const NO_LIMIT: Option<i64> = None;
    const HAS_MIGRATIONS_TABLE: &'static str =
        "SELECT COUNT(*) FROM (SELECT to_regclass('_sqlx_migrations') AS t) x WHERE t IS NOT NULL";
    const EXPLAIN: &'static str = "EXPLAIN";
    const PLAN_COLUMN: &'static str = "QUERY PLAN";
    /// Autovacuum analyzes a grown table only after a while; until then the planner takes
    /// it for empty and scans and sorts. ANALYZE samples a fixed number of rows.
    const REFRESH_STATS: Option<&'static str> = Some("ANALYZE leads");
    const ROW_VALUE_SEEK: bool = true;

    fn records(n: u8, alias: &str, cols: &[Col]) -> String {
        let fields: Vec<String> = cols
            .iter()
            .map(|c| {
                let ty = match c {
                    Col::Int(_) => "bigint",
                    Col::Text(_) => "text",
                    Col::Bool(_) => "boolean",
                    Col::Ts(_) => "timestamptz",
                };
                format!("{} {ty}", c.name())
            })
            .collect();
        format!(
            "jsonb_to_recordset(CAST(${n} AS JSONB)) AS {alias}({})",
            fields.join(", ")
        )
    }

    fn in_ids(n: u8) -> String {
        format!("= ANY(${n})")
    }

    fn texts(n: u8) -> String {
        format!("(SELECT value FROM jsonb_array_elements_text(CAST(${n} AS JSONB)))")
    }

    fn in_texts(n: u8) -> String {
        format!("= ANY(ARRAY(SELECT jsonb_array_elements_text(CAST(${n} AS JSONB))))")
    }

    fn ts_at(n: u8, index_expr: &str) -> String {
        format!("CAST(CAST(${n} AS JSONB) ->> ({index_expr}) AS TIMESTAMPTZ)")
    }

    fn tags_from(expr: &str) -> String {
        format!("CAST({expr} AS JSONB)")
    }

    fn has_tag(n: u8) -> String {
        format!("leads.tags ? ${n}")
    }

    fn cap_lock() -> Option<&'static str> {
        // Runners count and add to a job's day one at a time: the lock is the
        // transaction's, held until the attempts are committed.
        Some("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
    }

    fn utc_hour(col: &str) -> String {
        format!("to_char({col} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')")
    }

    fn bytes(col: &str) -> String {
        format!("{col} COLLATE \"C\"")
    }
}
