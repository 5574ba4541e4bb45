//! The `firmware-bridge` binary as a user runs it: the simulator's lines, and errors that say
//! what to fix. (The gateway against the real service is tested in the workspace's
//! `tests/integration/bridge.rs`.)

use std::process::Command;

fn bridge(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_firmware-bridge"))
        .args(args)
        .env("FIRMWARE_BRIDGE_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn simulate_prints_lines_a_gateway_can_read() {
    let out = bridge(&[
        "simulate",
        "--replay",
        "1h",
        "--speed",
        "100000",
        "--no-live",
        "--refrigerators",
        "1",
        "--freezers",
        "1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut per_serial = std::collections::BTreeMap::<String, usize>::new();
    for line in text.lines() {
        let r = firmware_bridge::sources::parse_line(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(r.ts <= chrono::Utc::now());
        *per_serial.entry(r.serial).or_default() += 1;
    }
    // One reading every 5 minutes over the hour, on the grid, for each logger.
    assert_eq!(per_serial.keys().collect::<Vec<_>>(), ["SIM-1", "SIM-2"]);
    assert!(per_serial.values().all(|n| (12..=13).contains(n)), "{per_serial:?}");
}

#[test]
fn bad_settings_are_refused_with_what_to_fix() {
    let cases: [(&[&str], &str); 5] = [
        (&["run", "--broker", "http://x", "--lines", "/dev/null"], "mqtt://"),
        (&["run", "--broker", "mqtt://127.0.0.1:1"], "name at least one source"),
        (&["run", "--lines", "/dev/null"], "--broker is required"),
        (&["simulate", "--scenario", "melt"], "door-open"),
        (
            &[
                "run",
                "--broker",
                "mqtt://127.0.0.1:1",
                "--watch",
                "/tmp",
                "--timezone",
                "Mars/Olympus",
            ],
            "IANA",
        ),
    ];
    for (args, says) in cases {
        let out = bridge(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}
