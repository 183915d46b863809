//! Numbered schema steps, as the SQL stores keep them: one SQL file per
//! version, embedded in the binary and applied in order. A database at
//! version n has had exactly the first n steps applied, so every database
//! ends up with the same schema whichever version it started from. A
//! released step is never edited: a change is a new file and a new entry.

/// One step of a schema: the SQL that takes a database from `version - 1`
/// to `version`.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version a database has once this step is applied.
    pub version: i64,
    /// What the step is about, as in its file name, `{version:04}_{name}.sql`.
    pub name: &'static str,
    /// The step's statements, run as one batch.
    pub sql: &'static str,
}

impl Migration {
    /// The step's file name, `{version:04}_{name}.sql`.
    pub fn file_name(&self) -> String {
        format!("{:04}_{}.sql", self.version, self.name)
    }
}

/// The last step's version. Evaluated at compile time (in a `const`), it
/// fails the build unless the steps are numbered 1, 2, 3... in order: a gap
/// or a swap would make version n stop meaning "the first n steps were
/// applied".
pub const fn latest_version(steps: &[Migration]) -> i64 {
    assert!(!steps.is_empty(), "a schema needs at least one migration");
    let mut expected = 1;
    let mut i = 0;
    while i < steps.len() {
        assert!(
            steps[i].version == expected,
            "migrations must be numbered 1, 2, 3... in order"
        );
        expected += 1;
        i += 1;
    }
    expected - 1
}

/// The steps a database at `version` still lacks, oldest first.
pub fn pending(
    steps: &'static [Migration],
    version: i64,
) -> impl Iterator<Item = &'static Migration> {
    steps.iter().filter(move |step| step.version > version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration {
            version: 1,
            name: "a",
            sql: "",
        },
        Migration {
            version: 2,
            name: "b",
            sql: "",
        },
        Migration {
            version: 3,
            name: "c",
            sql: "",
        },
    ];

    #[test]
    fn pending_steps_are_those_above_the_version() {
        let versions = |from| pending(STEPS, from).map(|m| m.version).collect::<Vec<_>>();
        assert_eq!(latest_version(STEPS), 3);
        assert_eq!(versions(0), [1, 2, 3]);
        assert_eq!(versions(2), [3]);
        assert!(versions(3).is_empty());
        assert_eq!(STEPS[1].file_name(), "0002_b.sql");
    }
}
