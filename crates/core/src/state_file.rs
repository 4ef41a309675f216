//! A state file (the edge's store, a device's queue) that cannot be opened is set aside, not
//! deleted: the operator asked to start over (`--reset-store`), and the bad file stays next to
//! the new one for inspection.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Renames `path` to `<path>.bad-<unix seconds>` (with `-N` added if that exists) and returns
/// the new name.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".bad-{secs}"));
    let mut target = PathBuf::from(&name);
    let mut n = 1;
    while target.exists() {
        let mut again = name.clone();
        again.push(format!("-{n}"));
        target = PathBuf::from(again);
        n += 1;
    }
    std::fs::rename(path, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_set_aside_keeps_its_bytes_under_a_new_name() {
        let dir = std::env::temp_dir().join(format!("vigil-set-aside-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("queue.redb");
        std::fs::write(&file, b"bad").unwrap();
        let first = set_aside(&file).unwrap();
        std::fs::write(&file, b"worse").unwrap();
        let second = set_aside(&file).unwrap();
        assert_ne!(first, second);
        assert!(!file.exists());
        assert_eq!(std::fs::read(&first).unwrap(), b"bad");
        assert_eq!(std::fs::read(&second).unwrap(), b"worse");
        assert!(first.to_string_lossy().contains("queue.redb.bad-"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
