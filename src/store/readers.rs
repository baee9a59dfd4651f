//! Connections for queries, shared by the web API's requests: each query takes an idle
//! one or opens its own, so that a slow query never makes another wait (WAL readers do
//! not block each other or the writer).

use super::{open_connection, Reader};
use crate::locks::lock;
use rusqlite::OpenFlags;
use std::path::PathBuf;
use std::sync::Mutex;

/// Idle connections kept for the next queries.
const KEPT_IDLE: usize = 4;

pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Reader>>,
}

impl Readers {
    pub fn new(path: PathBuf) -> Readers {
        Readers {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `query` on a connection of its own.
    pub fn with<T>(&self, query: impl FnOnce(&Reader) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let taken = lock(&self.idle).pop();
        let reader = match taken {
            Some(reader) => reader,
            None => Reader {
                connection: open_connection(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?,
            },
        };
        let answer = query(&reader);
        // An idle connection keeps no page cache: an hour's query can fill megabytes of
        // it, times every idle connection, for good; the pages are in the OS's cache.
        if let Err(error) = reader.connection.release_memory() {
            tracing::debug!("a store reader kept its cache: {error}");
        }
        let mut idle = lock(&self.idle);
        if idle.len() < KEPT_IDLE {
            idle.push(reader);
        }
        answer
    }
}
