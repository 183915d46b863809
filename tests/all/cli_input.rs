//! Bad command-line input gets a clear error and changes nothing: store
//! URLs this build does not support, out-of-range limits, and concurrent
//! processes opening one fresh store.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::cli::waymark;

fn waymark_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_waymark"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("waymark runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_store_url_of_an_unsupported_scheme_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["mysql://root:s3cret-pw@localhost/db", "redis:s3cret-pw"] {
        let out = waymark_in(dir.path(), &["--store", url, "list"]);
        assert_eq!(out.status.code(), Some(1), "{url}");
        let err = stderr(&out);
        let scheme = url.split(':').next().unwrap();
        assert!(err.contains(&format!("`{scheme}:`")), "{err}");
        assert!(
            err.contains("files:<dir>"),
            "lists what is supported: {err}"
        );
        assert!(
            !err.contains("s3cret-pw"),
            "the password is never printed: {err}"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{url} created {left:?}");
    }
    // The supported forms still work, a colon in a file name included.
    let out = waymark_in(dir.path(), &["--store", "./odd:name.db", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = waymark_in(dir.path(), &["--store", "files:fs", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_postgres_store_needs_a_data_dir_and_never_shows_its_password() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on the port: the connection is refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("postgres://someone:s3cret-pw@127.0.0.1:{port}/waymark");
    let out = waymark_in(dir.path(), &["--store", &url, "list"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("--data-dir"), "{err}");
    assert!(!err.contains("s3cret-pw"), "{err}");

    let out = waymark_in(
        dir.path(),
        &["--store", &url, "--data-dir", "state", "--json", "list"],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
    assert!(
        err.contains(&format!("postgres://someone@127.0.0.1:{port}/waymark")),
        "names the server: {err}"
    );
    assert!(!err.contains("s3cret-pw"), "{err}");
    let out = waymark_in(dir.path(), &["--store", "postgres://u@:x/db", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("PostgreSQL connection string"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn limit_overrides_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("w.db");
    for (args, why) in [
        (&["--step-timeout-ms", "0"][..], "0 is not in 1.."),
        (&["--fuel", "0"][..], "0 is not in 1.."),
        (
            &["--max-memory-mb", "100000"][..],
            "100000 is not in 1..=4096",
        ),
        (&["--max-memory-mb", "0"][..], "0 is not in 1..=4096"),
    ] {
        let mut all = args.to_vec();
        all.push("list");
        let out = waymark(&store, &all);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(why), "{args:?}: {}", stderr(&out));
    }
    assert!(!store.exists(), "a refused command opens no store");
    // The bounds themselves are accepted.
    let out = waymark(
        &store,
        &["--max-memory-mb", "4096", "--step-timeout-ms", "1", "list"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn processes_opening_one_fresh_store_together_all_succeed() {
    for round in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("fresh.db");
        let children: Vec<_> = (0..12)
            .map(|_| {
                Command::new(env!("CARGO_BIN_EXE_waymark"))
                    .arg("--store")
                    .arg(&store)
                    .arg("list")
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "round {round}: {}", stderr(&out));
        }
    }
}
