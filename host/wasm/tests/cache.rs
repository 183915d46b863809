//! The on-disk compile cache: hits skip compilation, and anything the host
//! did not write itself (damaged, truncated, forged, or for another engine
//! configuration) is recompiled, never deserialized and never an error.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::json;
use waymark_runtime::{StepContext, Workflow};
use waymark_wasm::{
    CacheOutcome, CompileCache, EngineConfig, StepLimits, WasmEngine, WasmError, WasmWorkflow,
};

fn chain_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| std::fs::read(waymark_guest_artifacts::CHAIN).unwrap())
}

/// Small pools: these tests make several engines.
fn config() -> EngineConfig {
    EngineConfig {
        pool_instances: 8,
        ..EngineConfig::default()
    }
}

fn engine() -> WasmEngine {
    WasmEngine::new(config()).unwrap()
}

fn load(engine: &WasmEngine, cache: &CompileCache) -> (WasmWorkflow, CacheOutcome) {
    engine
        .load_cached(chain_bytes(), StepLimits::default(), Some(cache))
        .expect("the chain component loads")
}

/// Runs the chain's `end` node and checks what it returns.
fn assert_runs(wf: &WasmWorkflow) {
    assert_eq!(wf.info().workflow_id, "chain");
    let vars = json!({"counter": 7});
    let out = wf
        .run_node(&StepContext {
            run_id: "r",
            workflow_id: "chain",
            node_id: "end",
            attempt: 1,
            vars: &vars,
            now_ms: 1,
        })
        .unwrap();
    assert_eq!(
        out.plan.transition,
        waymark_core::Transition::CompleteOutput(json!({"counter": 7}))
    );
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    found.sort();
    found
}

fn only_entry(dir: &Path) -> PathBuf {
    let found = entries(dir);
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn miss_then_hit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path().join("cache")).unwrap();
    let engine = engine();

    let (wf, outcome) = load(&engine, &cache);
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_runs(&wf);
    let entry = only_entry(cache.dir());
    let name = entry.file_name().unwrap().to_str().unwrap();
    let sha = wf.digest().unwrap();
    assert!(name.starts_with(&format!("{sha}-")), "{name}");
    assert_eq!(name.len(), 64 + 1 + 64 + ".cwasm".len(), "{name}");

    let (wf, outcome) = load(&engine, &cache);
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_runs(&wf);
    // The same digest either way: it names the component, not the code.
    assert_eq!(wf.digest(), Some(sha));

    // Another process (another engine, the cache opened again) hits too.
    let again = CompileCache::open(cache.dir()).unwrap();
    let (wf, outcome) = load(&WasmEngine::new(config()).unwrap(), &again);
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_runs(&wf);

    // Without a cache: compiled, and said so.
    let (wf, outcome) = engine
        .load_cached(chain_bytes(), StepLimits::default(), None)
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Disabled);
    assert_runs(&wf);
}

#[cfg(unix)]
#[test]
fn directory_and_secret_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path().join("a/b")).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(cache.dir()), 0o700);
    let key = cache.dir().join("cache.key");
    assert_eq!(mode(&key), 0o600);
    assert_eq!(std::fs::read(&key).unwrap().len(), 32);
    let (_, outcome) = load(&engine(), &cache);
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_eq!(mode(&only_entry(cache.dir())), 0o600);
    // Opening again keeps the secret.
    let before = std::fs::read(&key).unwrap();
    CompileCache::open(cache.dir()).unwrap();
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // Nothing left behind but the key and the entry.
    assert_eq!(std::fs::read_dir(cache.dir()).unwrap().count(), 2);

    // A secret others can read, or a directory others can write, is refused.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CompileCache::open(cache.dir()).unwrap_err();
    assert!(matches!(err, WasmError::Cache(_)), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = CompileCache::open(cache.dir()).unwrap_err();
    assert!(matches!(err, WasmError::Cache(_)), "{err}");
    std::fs::set_permissions(cache.dir(), std::fs::Permissions::from_mode(0o700)).unwrap();

    // A key file of the wrong size is refused, not silently replaced.
    std::fs::write(&key, b"short").unwrap();
    let err = CompileCache::open(cache.dir()).unwrap_err();
    assert!(err.to_string().contains("5 bytes"), "{err}");
}

#[test]
fn a_flipped_byte_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path()).unwrap();
    let engine = engine();
    load(&engine, &cache);
    let entry = only_entry(cache.dir());
    let mut bytes = std::fs::read(&entry).unwrap();
    // Somewhere in the machine code, well past the header and tag.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&entry, &bytes).unwrap();

    let (wf, outcome) = load(&engine, &cache);
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_runs(&wf);
    // The bad entry was replaced by a good one.
    assert_ne!(std::fs::read(&entry).unwrap(), bytes);
    let (wf, outcome) = load(&engine, &cache);
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_runs(&wf);
}

#[test]
fn truncated_and_garbage_entries_are_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path()).unwrap();
    let engine = engine();
    load(&engine, &cache);
    let entry = only_entry(cache.dir());
    let good = std::fs::read(&entry).unwrap();
    for bad in [
        good[..good.len() - 1].to_vec(),
        good[..good.len() / 2].to_vec(),
        good[..40].to_vec(),
        good[..8].to_vec(),
        Vec::new(),
        b"not a cache entry at all".to_vec(),
    ] {
        std::fs::write(&entry, &bad).unwrap();
        let (wf, outcome) = load(&engine, &cache);
        assert_eq!(outcome, CacheOutcome::Miss, "{} bytes", bad.len());
        assert_runs(&wf);
    }
}

#[test]
fn an_entry_made_with_another_secret_is_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let ours = CompileCache::open(dir.path().join("ours")).unwrap();
    let theirs = CompileCache::open(dir.path().join("theirs")).unwrap();
    let engine = engine();
    // A well-formed entry for the same component and configuration, tagged
    // with another key: what someone without our secret can produce at best.
    let (_, outcome) = load(&engine, &theirs);
    assert_eq!(outcome, CacheOutcome::Miss);
    let forged = only_entry(theirs.dir());
    let planted = ours.dir().join(forged.file_name().unwrap());
    std::fs::copy(&forged, &planted).unwrap();

    let (wf, outcome) = load(&engine, &ours);
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_runs(&wf);
    assert_ne!(
        std::fs::read(&planted).unwrap(),
        std::fs::read(&forged).unwrap(),
        "the forged entry was replaced by our own"
    );

    // An authentic entry of another component, put under this component's
    // name, does not verify either: the key is inside the MAC.
    let quickstart = std::fs::read(waymark_guest_artifacts::QUICKSTART).unwrap();
    let (_, outcome) = engine
        .load_cached(&quickstart, StepLimits::default(), Some(&ours))
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Miss);
    let quickstart_entry = entries(ours.dir())
        .into_iter()
        .find(|p| p != &planted)
        .unwrap();
    std::fs::copy(&quickstart_entry, &planted).unwrap();
    let (wf, outcome) = load(&engine, &ours);
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_runs(&wf);
}

#[test]
fn another_engine_configuration_does_not_reuse_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let cache = CompileCache::open(dir.path()).unwrap();
    let metered = engine();
    let unmetered = WasmEngine::new(EngineConfig {
        consume_fuel: false,
        ..config()
    })
    .unwrap();

    assert_eq!(load(&metered, &cache).1, CacheOutcome::Miss);
    let (wf, outcome) = load(&unmetered, &cache);
    assert_eq!(outcome, CacheOutcome::Miss);
    assert_runs(&wf);
    // One entry per configuration, same component.
    let found = entries(cache.dir());
    assert_eq!(found.len(), 2, "{found:?}");
    let name = |p: &PathBuf| p.file_name().unwrap().to_str().unwrap().to_owned();
    assert_eq!(name(&found[0])[..64], name(&found[1])[..64]);
    assert_ne!(name(&found[0])[65..], name(&found[1])[65..]);

    assert_eq!(load(&metered, &cache).1, CacheOutcome::Hit);
    assert_eq!(load(&unmetered, &cache).1, CacheOutcome::Hit);

    // Code compiled without fuel checks must not run under a metered engine
    // even if someone swaps the files: the key is inside the MAC.
    let [a, b] = <[PathBuf; 2]>::try_from(found).unwrap();
    let (a_bytes, b_bytes) = (std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    std::fs::write(&a, &b_bytes).unwrap();
    std::fs::write(&b, &a_bytes).unwrap();
    assert_eq!(load(&metered, &cache).1, CacheOutcome::Miss);
    assert_eq!(load(&unmetered, &cache).1, CacheOutcome::Miss);
}

#[test]
fn fuel_and_epoch_switches() {
    let vars = json!({"counter": 1});
    let ctx = StepContext {
        run_id: "r",
        workflow_id: "chain",
        node_id: "end",
        attempt: 1,
        vars: &vars,
        now_ms: 1,
    };
    for (fuel, epochs) in [(true, true), (false, true), (true, false), (false, false)] {
        let engine = WasmEngine::new(EngineConfig {
            consume_fuel: fuel,
            epoch_interruption: epochs,
            ..config()
        })
        .unwrap();
        let wf = engine.load(chain_bytes(), StepLimits::default()).unwrap();
        let out = wf.run_node(&ctx).unwrap();
        assert_eq!(
            out.fuel_consumed.is_some(),
            fuel,
            "fuel {fuel}, epochs {epochs}: {:?}",
            out.fuel_consumed
        );
    }
}

/// The budget evicts the least recently used entries, never the one just
/// written, and a hit counts as a use.
#[test]
fn the_budget_evicts_the_least_recently_used_entries() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let quickstart = std::fs::read(waymark_guest_artifacts::QUICKSTART).unwrap();
    let packing = std::fs::read(waymark_guest_artifacts::PACKING).unwrap();
    let open = || CompileCache::open(dir.path().join("cache")).unwrap();
    let load = |cache: &CompileCache, bytes: &[u8]| {
        engine
            .load_cached(bytes, StepLimits::default(), Some(cache))
            .unwrap()
            .1
    };
    let size = |path: &Path| std::fs::metadata(path).unwrap().len();
    let age = |path: &Path, secs: u64| {
        let file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        let then = std::time::SystemTime::now() - std::time::Duration::from_secs(secs);
        file.set_modified(then).unwrap();
    };

    // Three entries under the default budget.
    let cache = open();
    assert_eq!(
        cache.budget_bytes(),
        waymark_wasm::DEFAULT_COMPILE_CACHE_BUDGET
    );
    let mut made = Vec::new();
    for bytes in [chain_bytes(), &quickstart, &packing] {
        assert_eq!(load(&cache, bytes), CacheOutcome::Miss);
        let new: Vec<_> = entries(cache.dir())
            .into_iter()
            .filter(|e| !made.contains(e))
            .collect();
        made.push(new.into_iter().next().unwrap());
    }
    let [chain_entry, quickstart_entry, packing_entry] = made.try_into().unwrap();

    // Oldest first: quickstart, chain, packing. Then a hit makes the
    // quickstart the most recently used.
    age(&quickstart_entry, 3 * 3600);
    age(&chain_entry, 2 * 3600);
    age(&packing_entry, 3600);
    assert_eq!(load(&cache, &quickstart), CacheOutcome::Hit);

    // Room for two of them: a new entry evicts the least recently used
    // (the chain's), not the one just hit.
    let budget = size(&quickstart_entry) + size(&packing_entry);
    std::fs::remove_file(&packing_entry).unwrap();
    let cache = open().with_budget(budget);
    assert_eq!(load(&cache, &packing), CacheOutcome::Miss);
    assert_eq!(entries(cache.dir()), {
        let mut kept = vec![quickstart_entry.clone(), packing_entry.clone()];
        kept.sort();
        kept
    });

    // A budget smaller than any entry keeps only the one just written.
    let cache = open().with_budget(1);
    assert_eq!(load(&cache, chain_bytes()), CacheOutcome::Miss);
    assert_eq!(entries(cache.dir()), [chain_entry]);
}
