//! What the two SQLite databases — the embedded store (`bars.db`) and the metadata db
//! (`meta.db`) — share: versioned schema migrations.

use rusqlite::Connection;

/// Applies the `migrations` not yet applied, in order, each in its own transaction;
/// `PRAGMA user_version` records how many ran. Migrations are only ever appended: a
/// database migrated by a newer build is left as it is.
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    let done: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in migrations.iter().enumerate().skip(done.max(0) as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_migration_runs_once_and_later_ones_are_applied_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let first = ["CREATE TABLE a (x INTEGER);"];
        let both = ["CREATE TABLE a (x INTEGER);", "CREATE TABLE b (y INTEGER);"];
        migrate(&mut Connection::open(&path).unwrap(), &first).unwrap();
        // Re-running the first would fail (table exists): only the new one runs.
        let mut c = Connection::open(&path).unwrap();
        migrate(&mut c, &both).unwrap();
        migrate(&mut c, &both).unwrap();
        let v: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        c.execute("INSERT INTO b (y) VALUES (1)", []).unwrap();
    }
}
