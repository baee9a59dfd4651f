//! The generated skeleton of the eBPF programs (see build.rs).
#![allow(
    clippy::all,
    missing_docs,
    unused_imports,
    non_camel_case_types,
    dead_code
)]

include!(concat!(env!("OUT_DIR"), "/netgraph.skel.rs"));
