//! What `netgraph check` says about the store, touching nothing: no file, directory
//! or journal is created, so a daemon that runs as another user finds the place as it
//! was.

use super::{schema, Store, STORE_FILE};
use std::io::Read;
use std::path::Path;

/// The header every SQLite database file starts with.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";
/// Where the header keeps `PRAGMA user_version` (big-endian).
const USER_VERSION_OFFSET: usize = 60;

fn writable(path: &Path) -> bool {
    nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_ok()
}

impl Store {
    /// Whether a store can be opened (or made) in `state_directory`, from the file's
    /// header and the places' permissions alone.
    pub fn inspect(state_directory: &Path) -> anyhow::Result<String> {
        let path = state_directory.join(STORE_FILE);
        if path.exists() {
            let mut header = Vec::with_capacity(100);
            std::fs::File::open(&path)
                .and_then(|file| file.take(100).read_to_end(&mut header))
                .map_err(|e| anyhow::anyhow!("cannot read the store {}: {e}", path.display()))?;
            // An empty file is a database SQLite has not written to yet.
            if header.is_empty() {
                header.resize(100, 0);
                header[..16].copy_from_slice(SQLITE_MAGIC);
            }
            if header.len() < 100 || &header[..16] != SQLITE_MAGIC {
                anyhow::bail!(
                    "the store {} is not an SQLite database; netgraph will move it aside and start a new one",
                    path.display()
                );
            }
            let at = USER_VERSION_OFFSET;
            let version = i64::from(u32::from_be_bytes(
                header[at..at + 4].try_into().expect("four bytes"),
            ));
            if version > schema::current_version() {
                anyhow::bail!(
                    "the store {} has schema version {version}, newer than this netgraph ({}); upgrade netgraph or move the store away",
                    path.display(),
                    schema::current_version()
                );
            }
            if !writable(&path) || !writable(state_directory) {
                anyhow::bail!(
                    "the store {} is not writable by this user; run as its owner or fix the permissions",
                    path.display()
                );
            }
            return Ok(format!("{} (schema {version}) is writable", path.display()));
        }
        // The nearest place that exists must let the directories and the file be made.
        let existing = state_directory
            .ancestors()
            .find(|p| p.exists())
            .unwrap_or(Path::new("/"));
        if !existing.is_dir() || !writable(existing) {
            anyhow::bail!(
                "cannot create {} ({} is not a writable directory); set state_directory to a writable place",
                path.display(),
                existing.display()
            );
        }
        Ok(format!(
            "{} will be created at the first start ({} is writable)",
            path.display(),
            existing.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Retention;

    #[test]
    fn inspecting_creates_nothing_and_reads_what_is_there() {
        let dir = std::env::temp_dir().join(format!("netgraph-inspect-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let state = dir.join("state");
        std::fs::create_dir_all(&dir).unwrap();
        let said = Store::inspect(&state).unwrap();
        assert!(said.contains("will be created"), "{said}");
        assert!(!state.exists(), "inspect made the directory");
        drop(Store::open(&state, Retention::default()).unwrap());
        let files = || std::fs::read_dir(&state).unwrap().count();
        let before = files();
        let said = Store::inspect(&state).unwrap();
        assert!(
            said.contains(&format!("(schema {})", schema::current_version())),
            "{said}"
        );
        assert_eq!(files(), before, "inspect left a journal behind");
        std::fs::write(
            state.join(STORE_FILE),
            b"garbage, not a database at all ......",
        )
        .unwrap();
        let error = Store::inspect(&state).unwrap_err().to_string();
        assert!(error.contains("not an SQLite database"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
