//! What netgraph writes under its state directory (spool, store) is for its own user
//! and group only: directories 0750, files 0640, whatever the umask it was started
//! with (outside systemd it is often 022, which would make them world-readable).

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

const DIRECTORY_MODE: u32 = 0o750;
const FILE_MODE: u32 = 0o640;

/// Creates a directory and its missing parents as 0750; an existing one is left as it is.
pub fn create_dir(path: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIRECTORY_MODE)
        .create(path)
}

/// Creates (or truncates) a file as 0640.
pub fn create_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Makes a file someone else created (SQLite) 0640.
pub fn restrict(path: &Path) -> std::io::Result<()> {
    std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn modes_hold_whatever_the_umask() {
        let base = std::env::temp_dir().join(format!("netgraph-private-{}", std::process::id()));
        // SAFETY: umask only changes this process's file creation mask.
        let old = unsafe { libc::umask(0) };
        create_dir(&base.join("a/b")).unwrap();
        let file = base.join("a/b/f");
        drop(create_file(&file).unwrap());
        // SAFETY: as above, restoring it.
        unsafe { libc::umask(old) };
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&base.join("a")), 0o750);
        assert_eq!(mode(&base.join("a/b")), 0o750);
        assert_eq!(mode(&file), 0o640);
        let _ = std::fs::remove_dir_all(&base);
    }
}
