//! The capture floor for `bench/run.py`: reads one interface's packets the way the
//! capture engine does and does nothing with them, until SIGTERM or SIGINT; prints
//! `frames=N`. Usage: capture_floor INTERFACE (root, or CAP_NET_RAW).

use netgraph::engine::capture::hot_path::read_ring_only;
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn main() -> ExitCode {
    let Some(interface) = std::env::args().nth(1) else {
        eprintln!("usage: capture_floor INTERFACE");
        return ExitCode::from(2);
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, stop.clone()) {
            eprintln!("capture_floor: cannot install signal handlers: {error}");
            return ExitCode::FAILURE;
        }
    }
    match read_ring_only(&interface, &stop) {
        Ok(frames) => {
            println!("frames={frames}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("capture_floor: {error}");
            ExitCode::FAILURE
        }
    }
}
