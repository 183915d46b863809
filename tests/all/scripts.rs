//! `scripts/side-by-side.sh` with stand-ins for both sides: it alternates
//! the peer and Waymark in pairs for every (workload, store), and reports
//! the median of the per-pair ratios with their spread.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// An executable shell script at `path`.
fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/usr/bin/env bash\n{body}")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn side_by_side_alternates_the_sides_and_reports_the_median_ratio() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("calls.log");
    let log = log.to_str().unwrap();
    // The peer's venv: its python answers the version probe, and otherwise
    // acts as the peer benchmark (`<script> --one SCENARIO STORE N`).
    let venv = dir.path().join("venv");
    std::fs::create_dir_all(venv.join("bin")).unwrap();
    script(
        &venv.join("bin/python"),
        &format!(
            r#"[[ "$2" == --one ]] || exit 0
echo "peer $3 $4 $5" >>{log}
echo "{{\"scenario\": \"$3\", \"store\": \"$4\", \"n\": $5, \"seconds\": 1.0, \"steps_per_s\": 100.0, \"runs_per_s\": 10.0}}"
"#
        ),
    );
    let peer_bench = dir.path().join("peer.py");
    std::fs::write(&peer_bench, "# stand-in\n").unwrap();
    // Waymark's side: `--bench --one SCENARIO STORE N`, three times faster.
    let waymark = dir.path().join("waymark-bench");
    script(
        &waymark,
        &format!(
            r#"echo "waymark $3 $4 $5" >>{log}
echo "{{\"scenario\": \"$3\", \"store\": \"$4\", \"n\": $5, \"seconds\": 1.0, \"steps_per_s\": 300.0, \"runs_per_s\": 30.0}}"
"#
        ),
    );
    let out = dir.path().join("out");
    let run = Command::new("bash")
        .arg(root.join("scripts/side-by-side.sh"))
        .env("PEER_VENV", &venv)
        .env("PEER_BENCH", &peer_bench)
        .env("WAYMARK_PEER_BENCH_BIN", &waymark)
        .env("SIDE_BY_SIDE_OUT", &out)
        .env("CHAIN_N", "10")
        .env("EFFCHAIN_N", "10")
        .env("RUNS", "2")
        .env("PAIRS", "3")
        // The scaling table's only size is the main table's: not run again.
        .env("SCALE_N", "10")
        .env("PEER_SCALE_N", "10")
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );

    let calls = std::fs::read_to_string(log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(calls.len(), 3 * 3 * 6, "{calls:?}");
    for group in calls.chunks(6) {
        let sides: Vec<&str> = group.iter().map(|c| c.split(' ').next().unwrap()).collect();
        assert_eq!(
            sides,
            ["peer", "waymark", "waymark", "peer", "peer", "waymark"],
            "{group:?}"
        );
        let workload = &group[0][group[0].find(' ').unwrap()..];
        assert!(group.iter().all(|c| c.ends_with(workload)), "{group:?}");
    }
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("Waymark / peer"), "{report}");
    assert!(report.contains("| 3.00× | 3.00–3.00× | 3 |"), "{report}");
}
