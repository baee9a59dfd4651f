//! Writes every interval into the embedded store (see `crate::store`).

use super::Sink;
use crate::accounting::IntervalReport;
use crate::store::Store;

pub struct StoreSink {
    store: Store,
}

impl StoreSink {
    pub fn new(store: Store) -> StoreSink {
        StoreSink { store }
    }
}

impl Sink for StoreSink {
    fn name(&self) -> &str {
        "store"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        self.store.write(report)
    }
}
