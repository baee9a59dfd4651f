//! Hands every interval to the embedded store's writer thread (see `crate::store`):
//! writing and maintaining the store never holds up the interval loop.

use super::Sink;
use crate::accounting::IntervalReport;
use crate::store::StoreWriter;

pub struct StoreSink {
    writer: StoreWriter,
}

impl StoreSink {
    pub fn new(writer: StoreWriter) -> StoreSink {
        StoreSink { writer }
    }
}

impl Sink for StoreSink {
    fn name(&self) -> &str {
        "store"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        self.writer.write(report)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.writer.finish()
    }
}
