//! The schema's history: one SQL file per version under `migrations/`,
//! embedded in the binary, applied in order by
//! [`schema::migrate`](crate::schema::migrate). A released step is never
//! edited: a change is a new file and a new entry here.

use waymark_core::migration::{Migration, latest_version};

/// Every step, oldest first.
pub(crate) const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("../migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "schedules",
        sql: include_str!("../migrations/0002_schedules.sql"),
    },
    Migration {
        version: 3,
        name: "retention",
        sql: include_str!("../migrations/0003_retention.sql"),
    },
    Migration {
        version: 4,
        name: "flow_control",
        sql: include_str!("../migrations/0004_flow_control.sql"),
    },
];

/// The version the last step leaves a database at.
pub(crate) const LATEST_VERSION: i64 = latest_version(MIGRATIONS);

#[cfg(test)]
mod tests {
    use super::*;

    /// The folder and the list name the same files with the same text.
    #[test]
    fn the_list_matches_the_migrations_folder() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("read migrations folder")
            .map(|entry| {
                let path = entry.expect("read migrations entry").path();
                let name = path.file_name().and_then(|n| n.to_str()).expect("utf-8");
                (
                    name.to_owned(),
                    std::fs::read_to_string(&path).expect("read"),
                )
            })
            .collect();
        on_disk.sort();
        let listed: Vec<(String, String)> = MIGRATIONS
            .iter()
            .map(|m| (m.file_name(), m.sql.to_owned()))
            .collect();
        assert_eq!(listed, on_disk);
    }
}
