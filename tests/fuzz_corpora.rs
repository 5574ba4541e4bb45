//! Replays what the fuzzers know, as an ordinary stable test: the seeds, the corpora they grew
//! (`fuzz/corpus/<target>`, minimized) and every crash input they ever found
//! (`fuzz/regressions/<target>`), through the same entry points `cargo fuzz` drives
//! (`vfc_monitor::fuzz_targets`). CI never fuzzes (`scripts/fuzz.sh` does); it replays.

use std::path::Path;

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kind).join(target)) else {
            continue;
        };
        for e in dir {
            let p = e.unwrap().path();
            if p.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_fuzz_input_ever_found_is_answered_without_a_panic() {
    let mut replayed = Vec::new();
    for (target, run) in vfc_monitor::fuzz_targets::TARGETS {
        let files = inputs(target);
        assert!(
            !files.is_empty(),
            "fuzz target {target} has no seeds in fuzz/seeds/{target}"
        );
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{target} panicked on {}", f.display());
        }
        replayed.push(format!("{target}: {}", files.len()));
    }
    println!("replayed {}", replayed.join(", "));
}
