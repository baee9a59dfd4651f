//! The interval loop with a fake engine and sinks: every byte an engine hands over is
//! written once, across a reload and through the last interval at shutdown, and sinks
//! are flushed when they are let go.

use super::*;
use crate::accounting::IntervalReport;
use crate::engine::{EngineReport, KernelOwner, KernelOwnership, SocketTraffic};
use crate::traffic::{Counter, Protocol, Traffic};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::sync::Mutex;

const BYTES_PER_DRAIN: u64 = 100;

/// Hands over 100 bytes sent by this very process at every drain, stopped or not.
struct FakeEngine {
    drains: Arc<AtomicU64>,
}

impl Engine for FakeEngine {
    fn name(&self) -> &'static str {
        "fake"
    }

    fn records_addresses(&self) -> bool {
        false
    }

    fn drain(&mut self) -> EngineReport {
        self.drains.fetch_add(1, Ordering::SeqCst);
        let mut traffic = Traffic::default();
        traffic.sent.merge(Counter {
            bytes: BYTES_PER_DRAIN,
            packets: 1,
        });
        EngineReport {
            sockets: vec![SocketTraffic {
                interface: Arc::from("eth0"),
                protocol: Protocol::Tcp,
                cookie: Some(1),
                ownership: KernelOwnership {
                    socket: Some(KernelOwner {
                        tgid: std::process::id(),
                        uid: 0,
                        comm: "fake".into(),
                        cgroup_id: 0,
                        cgroup_path: None,
                        exe: None,
                        netns: 0,
                    }),
                    mover: None,
                },
                ends: None,
                traffic,
            }],
            ..EngineReport::default()
        }
    }

    fn stop(&mut self) {}
}

#[derive(Default)]
struct Seen {
    sent: u64,
    writes: u64,
    flushes: u64,
}

struct FakeSink(Arc<Mutex<Seen>>);

impl Sink for FakeSink {
    fn name(&self) -> &str {
        "fake"
    }

    fn write(&mut self, report: &IntervalReport) -> anyhow::Result<()> {
        let mut seen = self.0.lock().unwrap();
        seen.writes += 1;
        seen.sent += report
            .processes
            .iter()
            .map(|row| row.last.sent.bytes)
            .sum::<u64>();
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.0.lock().unwrap().flushes += 1;
        Ok(())
    }
}

fn pipeline(drains: &Arc<AtomicU64>, sink: &Arc<Mutex<Seen>>) -> Pipeline {
    let (_, hints) = crossbeam_channel::bounded(1);
    Pipeline {
        engine: Box::new(FakeEngine {
            drains: drains.clone(),
        }),
        attributor: Attributor::start(hints, crate::workload::RuntimeSockets::none(), false)
            .unwrap(),
        accountant: Accountant::new(SystemTime::now()),
        sinks: Vec::new(),
        reloadable: vec![Box::new(FakeSink(sink.clone()))],
        interval: Duration::from_millis(100),
        reload: None,
        write_failures: HashMap::new(),
        slow_intervals: Repeats::every_minute(),
        limits: crate::limits::Limits::new(
            Default::default(),
            Default::default(),
            Default::default(),
        ),
        applied_limits: Default::default(),
        capturing: crate::capture::Capturing::new(Default::default()),
    }
}

#[test]
fn shutdown_writes_the_last_interval_and_flushes() {
    let (drains, sink) = (Arc::new(AtomicU64::new(0)), Arc::default());
    let pipeline = pipeline(&drains, &sink);
    let requests = Requests::default();
    let stop = requests.clone();
    let running = std::thread::spawn(move || pipeline.run(&stop));
    std::thread::sleep(Duration::from_millis(450));
    requests.shutdown();
    running.join().unwrap();
    let seen = sink.lock().unwrap();
    let drains = drains.load(Ordering::SeqCst);
    assert!(drains >= 4, "{drains} drains");
    assert_eq!(
        seen.writes, drains,
        "one write per drain, the last one included"
    );
    assert_eq!(seen.sent, drains * BYTES_PER_DRAIN);
    assert_eq!(seen.flushes, 1);
}

#[test]
fn a_reload_hands_over_without_losing_a_byte() {
    let (drains, old) = (Arc::new(AtomicU64::new(0)), Arc::default());
    let new: Arc<Mutex<Seen>> = Arc::default();
    let mut pipeline = pipeline(&drains, &old);
    let handed = new.clone();
    pipeline.reload = Some(Reload {
        load: Box::new(move || {
            let sink = handed.clone();
            Ok(Reloaded {
                interval: Duration::from_millis(200),
                geo: None,
                limits: Default::default(),
                build: Box::new(move || Ok(vec![Box::new(FakeSink(sink)) as Box<dyn Sink>])),
            })
        }),
    });
    let requests = Requests::default();
    let stop = requests.clone();
    let running = std::thread::spawn(move || pipeline.run(&stop));
    std::thread::sleep(Duration::from_millis(350));
    requests.reload();
    std::thread::sleep(Duration::from_millis(700));
    requests.shutdown();
    running.join().unwrap();
    let (old, new) = (old.lock().unwrap(), new.lock().unwrap());
    let drains = drains.load(Ordering::SeqCst);
    assert_eq!(old.flushes, 1, "the old sinks are flushed when let go");
    assert!(
        old.writes >= 3 && new.writes >= 2,
        "{} then {}",
        old.writes,
        new.writes
    );
    assert_eq!(new.flushes, 1);
    assert_eq!(
        old.sent + new.sent,
        drains * BYTES_PER_DRAIN,
        "every byte once"
    );
}
