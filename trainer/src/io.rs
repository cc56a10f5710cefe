//! Files that must never be left half-written: write to a temporary file beside the target, flush
//! it to disk, then rename over the target (atomic on POSIX file systems).
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::KeelError;

/// Atomically replaces `path` with `bytes`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeelError> {
    let fail =
        |e: std::io::Error| KeelError::usage(format!("cannot write {}: {e}", path.display()));
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".tmp{}", std::process::id()));
    path.with_file_name(name)
}

/// Creates `dir` (and parents) and checks that it is writable, so a run fails before training
/// rather than after.
pub fn ensure_writable_dir(dir: &Path) -> Result<(), KeelError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        KeelError::usage(format!(
            "cannot create output directory {}: {e}",
            dir.display()
        ))
    })?;
    let probe = dir.join(".keel-write-test");
    std::fs::write(&probe, b"")
        .and_then(|_| std::fs::remove_file(&probe))
        .map_err(|e| {
            KeelError::usage(format!(
                "output directory {} is not writable: {e}",
                dir.display()
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        let bad = dir.path().join("missing-dir").join("x");
        assert!(write_atomic(&bad, b"x").is_err());
    }
}
