//! Files and folders the service writes are its user's alone: the database holds every record,
//! and an `.eml` file carries live acknowledgement links. Folders it creates are `0700`, files
//! `0600`, whatever the umask (on Unix; elsewhere the platform's defaults stand).

use std::io;
use std::path::Path;

#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

/// Creates `dir` (and its parents) if missing; `dir` itself is made `0700`. A folder that was
/// there and cannot be changed (a mounted volume owned by someone else) is used as it is, with
/// a warning: the service runs, and the operator is told.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    b.mode(0o700);
    b.create(dir)?;
    #[cfg(unix)]
    restrict(dir, 0o700);
    Ok(())
}

/// Makes an existing file `0600` (SQLite then creates its `-wal` and `-shm` files alike).
pub fn make_private(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    restrict(path, 0o600);
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) {
    let now = std::fs::metadata(path).map(|m| m.permissions().mode() & 0o777);
    if now.as_ref().is_ok_and(|m| *m == mode) {
        return;
    }
    if let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot make this the service user's alone (mode {mode:o}); using it as it is");
    }
}

/// Creates an empty `0600` file if there is none.
pub fn touch_private(path: &Path) -> io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path)?;
    make_private(path)
}

/// Writes `bytes` to a new `0600` file at `path` (replacing one that is there).
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.create(true).write(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    let mut f = o.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// [`write_private`] off the async runtime's threads.
pub async fn write_private_async(path: std::path::PathBuf, bytes: Vec<u8>) -> io::Result<()> {
    tokio::task::spawn_blocking(move || write_private(&path, &bytes))
        .await
        .map_err(io::Error::other)?
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn what_the_service_writes_is_its_users_alone_whatever_the_umask() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data/outbox");
        private_dir(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        let eml = data.join("1.eml");
        write_private(&eml, b"To: x").unwrap();
        assert_eq!(mode(&eml), 0o600);
        let db = dir.path().join("vfc.db");
        std::fs::write(&db, b"").unwrap();
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
        touch_private(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
    }
}
