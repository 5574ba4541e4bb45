//! The command line on a fresh data directory, and settings that fail clearly.

use std::process::Command;

fn vfc(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vfc"))
        .args(args)
        .env_clear()
        .env("VFC_DATA_DIR", dir.join("data"))
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn every_command_works_on_a_fresh_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = vfc(
        dir.path(),
        &[
            "token",
            "create",
            "--role",
            "clinic",
            "--location",
            "012345A",
            "--name",
            "EHR",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let secret = stdout.lines().last().unwrap();
    assert!(
        secret.starts_with("vfc_") && secret.len() == 4 + 64,
        "256-bit secret as the last line: {secret}"
    );
    assert!(dir.path().join("data/vfc.db").exists());
    let out = vfc(dir.path(), &["migrate"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8(vfc(dir.path(), &["--help"], &[]).stdout).unwrap();
    for cmd in ["serve", "migrate", "token", "bench"] {
        assert!(help.contains(cmd), "{help}");
    }
    let help = String::from_utf8(vfc(dir.path(), &["serve", "--help"], &[]).stdout).unwrap();
    for var in [
        "VFC_DATA_DIR",
        "VFC_DATABASE_URL",
        "VFC_HTTP_ADDR",
        "VFC_MQTT_URL",
        "VFC_MQTT_EMBEDDED_ADDR",
        "VFC_MQTT_CLIENT_ID",
        "VFC_MQTT_SHARE_GROUP",
        "VFC_SMTP_URL",
        "VFC_MAIL_FROM",
        "VFC_PUBLIC_URL",
        "VFC_HL7_MLLP_ADDR",
    ] {
        assert!(help.contains(var), "serve --help documents {var}");
    }
}

#[test]
fn a_bad_setting_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("VFC_MQTT_URL", "amqp://broker"),
        ("VFC_HTTP_ADDR", "localhost"),
        ("VFC_DATABASE_URL", "mysql://db"),
        ("VFC_MQTT_EMBEDDED_ADDR", "0.0.0.0:1883"),
        ("VFC_PUBLIC_URL", "ftp://x"),
    ] {
        let out = vfc(dir.path(), &["serve"], &[(var, value)]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
    std::fs::write(dir.path().join("vfc.toml"), "http_addr = \"127.0.0.1:notaport\"\n").unwrap();
    let out = vfc(dir.path(), &["migrate"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("VFC_HTTP_ADDR"));
    std::fs::write(dir.path().join("vfc.toml"), "htp_addr = \"127.0.0.1:8080\"\n").unwrap();
    let out = vfc(dir.path(), &["migrate"], &[]);
    assert!(
        !out.status.success(),
        "a misspelt key in vfc.toml is an error, not ignored"
    );
}

#[test]
fn the_embedded_broker_refuses_a_taken_port_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = vfc(
        dir.path(),
        &["serve"],
        &[("VFC_MQTT_EMBEDDED_ADDR", &addr), ("VFC_HTTP_ADDR", "127.0.0.1:0")],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("VFC_MQTT_EMBEDDED_ADDR") && err.contains("VFC_MQTT_URL"),
        "{err}"
    );
}

#[test]
fn a_token_for_a_location_not_registered_yet_says_so_and_is_still_the_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = vfc(
        dir.path(),
        &[
            "token",
            "create",
            "--role",
            "clinic",
            "--location",
            "012345B",
            "--name",
            "EHR",
        ],
        &[],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("location 012345B is not registered yet") && err.contains("sees nothing"),
        "{err}"
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.lines().last().unwrap().starts_with("vfc_"), "{stdout}");
}

#[test]
fn a_log_filter_that_cannot_be_read_stops_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let out = vfc(dir.path(), &["migrate"], &[("VFC_LOG", "info,vfc_monitor=loud")]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("VFC_LOG") && err.contains("not valid"), "{err}");
    assert!(!dir.path().join("data/vfc.db").exists(), "nothing was done");
}

#[test]
fn an_smtp_option_that_is_not_understood_stops_serve() {
    let dir = tempfile::tempdir().unwrap();
    let out = vfc(
        dir.path(),
        &["serve"],
        &[
            ("VFC_SMTP_URL", "smtp://mail.example.org:587?tls=yes"),
            ("VFC_HTTP_ADDR", "127.0.0.1:0"),
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("VFC_SMTP_URL") && err.contains("tls=yes"), "{err}");
}

#[test]
fn a_serve_that_cannot_start_leaves_no_database_behind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = vfc(
        dir.path(),
        &["serve"],
        &[("VFC_HTTP_ADDR", &addr), ("VFC_MQTT_EMBEDDED_ADDR", "127.0.0.1:0")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("VFC_HTTP_ADDR"));
    assert!(
        !dir.path().join("data/vfc.db").exists(),
        "a fresh data directory stays fresh"
    );
}

#[test]
fn a_commands_help_shows_its_own_options_before_the_settings() {
    let dir = tempfile::tempdir().unwrap();
    let help = String::from_utf8(vfc(dir.path(), &["import", "--help"], &[]).stdout).unwrap();
    let own = help.find("--as-serial").unwrap_or_else(|| panic!("{help}"));
    let settings = help.find("Settings (").unwrap_or_else(|| panic!("{help}"));
    let data_dir = help.find("--data-dir").unwrap_or_else(|| panic!("{help}"));
    assert!(own < settings && settings < data_dir, "{help}");
}

#[test]
fn a_serve_whose_acknowledgement_key_is_damaged_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("VFC_HTTP_ADDR", "127.0.0.1:0"),
        ("VFC_MQTT_EMBEDDED_ADDR", "127.0.0.1:0"),
    ];
    let args = ["token", "create", "--role", "state-coordinator", "--name", "state"];
    assert!(vfc(dir.path(), &args, &env).status.success());
    // A key that reads as empty would let anyone sign acknowledgement links.
    let db = dir.path().join("data/vfc.db");
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = sqlx::AnyConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .unwrap();
        sqlx::query("INSERT INTO service_secrets (name, value) VALUES ('ack_links', 'not hex') ON CONFLICT (name) DO UPDATE SET value = excluded.value")
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    // Should it serve anyway, it is stopped after a minute and the test fails, not hangs.
    let mut serve = Command::new(env!("CARGO_BIN_EXE_vfc"))
        .arg("serve")
        .env_clear()
        .env("VFC_DATA_DIR", dir.path().join("data"))
        .envs(env.iter().copied())
        .current_dir(dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = serve.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            serve.kill().unwrap();
            panic!("serve started with a damaged key");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!status.success(), "it must not serve");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut serve.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("service_secrets row 'ack_links'"), "names the row: {err}");
}

#[cfg(unix)]
#[test]
fn the_database_and_the_data_directory_are_the_services_user_s_alone() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let args = ["token", "create", "--role", "state-coordinator", "--name", "state"];
    assert!(vfc(dir.path(), &args, &[]).status.success());
    let mode = |p: &str| {
        std::fs::metadata(dir.path().join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!((mode("data"), mode("data/vfc.db")), (0o700, 0o600));
}

/// A wrong broker password must not look like a quiet broker: `serve` says at once what to check.
#[test]
fn a_wrong_broker_password_is_said_at_once_with_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let broker = crate::harness::Mosquitto::start(dir.path());
    let log = dir.path().join("serve.log");
    let url = format!(
        "mqtt://{}:wrong-password@127.0.0.1:{}",
        crate::harness::SERVICE_USER,
        broker.port
    );
    let mut serve = Command::new(env!("CARGO_BIN_EXE_vfc"))
        .arg("serve")
        .env_clear()
        .env("VFC_DATA_DIR", dir.path().join("data"))
        .env("VFC_HTTP_ADDR", "127.0.0.1:0")
        .env("VFC_MQTT_URL", &url)
        .current_dir(dir.path())
        .stderr(std::fs::File::create(&log).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let said = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("cannot reach the MQTT broker") || std::time::Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    serve.kill().unwrap();
    let _ = serve.wait();
    assert!(
        said.contains("cannot reach the MQTT broker") && said.contains("VFC_MQTT_URL"),
        "{said}"
    );
    assert!(!said.contains("wrong-password"), "the password is never logged: {said}");
}

/// `vfc bench pages` end to end on PostgreSQL, small: its setup marks a serial's readings more
/// than once in one statement, which PostgreSQL refused until the marks were made one per
/// serial. The figures themselves are measured on a release build, never asserted here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_bench_runs_on_postgresql_and_prints_its_figures() {
    let pg = crate::harness::ScratchPostgres::create().await;
    let dir = tempfile::tempdir().unwrap();
    let out = vfc(
        dir.path(),
        &[
            "bench",
            "pages",
            "--json",
            "--database-url",
            &pg.url,
            "--locations",
            "40",
            "--open",
            "8",
            "--samples",
            "3",
        ],
        &[
            ("VFC_HTTP_ADDR", "127.0.0.1:0"),
            ("VFC_MQTT_EMBEDDED_ADDR", "127.0.0.1:0"),
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    let figures: serde_json::Value = serde_json::from_str(line.lines().last().unwrap()).unwrap();
    assert_eq!(figures["database"], "postgres", "{figures}");
    assert_eq!(figures["locations"], 40, "{figures}");
    for key in ["unit_page_p99_ms", "readings_api_p99_ms", "state_home_p99_ms"] {
        assert!(figures[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {figures}");
    }
}
