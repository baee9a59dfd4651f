//! Sinks read what accounting produced and deliver it somewhere.

pub mod json_lines;

use crate::accounting::IntervalReport;

pub trait Sink: Send {
    fn name(&self) -> &'static str;
    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()>;
    /// Called once at shutdown, after the last interval.
    fn flush(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}
