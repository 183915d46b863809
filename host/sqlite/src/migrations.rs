//! The schema's history: one SQL file per version under `migrations/`,
//! embedded in the binary so that a store needs nothing beside its own
//! file. [`schema::migrate`](crate::schema::migrate) applies them.
//!
//! A file at `user_version` n has had exactly the first n steps applied, and
//! a fresh file runs them all, so every file ends up with the same schema
//! whichever version it started from. A released step is never edited: a
//! change to the schema is a new file and a new entry here.

pub(crate) use waymark_core::migration::Migration;
use waymark_core::migration::latest_version;

/// Every step, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "runs_and_ledger",
        sql: include_str!("../migrations/0001_runs_and_ledger.sql"),
    },
    Migration {
        version: 2,
        name: "pause_and_host_tables",
        sql: include_str!("../migrations/0002_pause_and_host_tables.sql"),
    },
    Migration {
        version: 3,
        name: "leases",
        sql: include_str!("../migrations/0003_leases.sql"),
    },
    Migration {
        version: 4,
        name: "partial_run_indexes",
        sql: include_str!("../migrations/0004_partial_run_indexes.sql"),
    },
    Migration {
        version: 5,
        name: "root_run_id",
        sql: include_str!("../migrations/0005_root_run_id.sql"),
    },
    Migration {
        version: 6,
        name: "run_listing",
        sql: include_str!("../migrations/0006_run_listing.sql"),
    },
    Migration {
        version: 7,
        name: "schedules",
        sql: include_str!("../migrations/0007_schedules.sql"),
    },
    Migration {
        version: 8,
        name: "retention",
        sql: include_str!("../migrations/0008_retention.sql"),
    },
    Migration {
        version: 9,
        name: "flow_control",
        sql: include_str!("../migrations/0009_flow_control.sql"),
    },
];

/// The version the last step leaves a file at.
pub(crate) const LATEST_VERSION: i64 = latest_version(MIGRATIONS);

/// The steps a file at `version` still lacks, oldest first.
pub(crate) fn pending(version: i64) -> impl Iterator<Item = &'static Migration> {
    waymark_core::migration::pending(MIGRATIONS, version)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The folder and the list name the same files with the same text, so a
    /// file added without its entry (or renamed) fails here rather than
    /// being silently left out.
    #[test]
    fn the_list_matches_the_migrations_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("read migrations folder")
            .map(|entry| {
                let path = entry.expect("read migrations entry").path();
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .expect("utf-8 file name")
                    .to_owned();
                let sql = std::fs::read_to_string(&path).expect("read migration");
                (name, sql)
            })
            .collect();
        on_disk.sort();
        let listed: Vec<(String, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.file_name(), m.sql.to_owned()))
            .collect();
        assert_eq!(listed, on_disk);
    }

    #[test]
    fn pending_steps_are_those_above_the_version() {
        let versions = |from| pending(from).map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(versions(0), (1..=LATEST_VERSION).collect::<Vec<_>>());
        assert_eq!(versions(3), (4..=LATEST_VERSION).collect::<Vec<_>>());
        assert!(versions(LATEST_VERSION).is_empty());
    }
}
