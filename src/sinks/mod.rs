//! Sinks read what accounting produced and deliver it somewhere.

pub mod delivery;
pub mod influxdb;
pub mod ipfix;
pub mod json_lines;
pub mod line_protocol;
pub mod live;
pub mod otlp;
pub mod prometheus;
pub mod seats;
pub mod self_metrics;
pub mod spool;
pub mod store;

use crate::accounting::IntervalReport;

pub trait Sink: Send {
    fn name(&self) -> &str;
    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()>;
    /// Called once at shutdown, after the last interval.
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
    /// Called at a reload, before a new sink takes over: lets go without waiting on
    /// anything slow (a network call), which the new sink carries on.
    fn release(&mut self) -> anyhow::Result<()> {
        self.flush()
    }
}
