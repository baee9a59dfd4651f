//! netgraph: which application used how much network bandwidth.
//!
//! A pipeline in one direction: [`engine`] -> [`attribution`] -> [`accounting`] -> [`sinks`],
//! driven once per interval by [`pipeline`]; accounting names countries with [`geo`];
//! [`alerts`] read what accounting produced, as sinks do.

pub mod accounting;
pub mod alerts;
pub mod attribution;
pub mod background;
pub mod bounded;
pub mod capture;
pub mod cgroup;
pub mod cgroup_tree;
pub mod check;
pub mod config;
pub mod daemon_client;
pub mod engine;
pub mod geo;
pub mod http;
pub mod limits;
pub mod locks;
pub mod malloc_arenas;
pub mod outputs;
pub mod periods;
pub mod pipeline;
pub mod private_files;
pub mod rate_limited;
pub mod report;
pub mod requests;
pub mod sinks;
pub mod startup;
pub mod store;
pub mod thread_priority;
pub mod top;
pub mod traffic;
pub mod units;
pub mod web;
pub mod workload;
