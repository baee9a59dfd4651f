//! Compiles the eBPF programs with clang (CO-RE) and generates their Rust skeleton.

use libbpf_cargo::SkeletonBuilder;
use std::path::PathBuf;

const SOURCE: &str = "src/engine/ebpf/bpf/netgraph.bpf.c";
/// Empty programs at the same hooks, for the cost bench (examples/bpf_floor.rs).
const FLOOR: &str = "bench/floor/floor.bpf.c";

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    // Debian keeps asm/types.h under the multiarch directory, which -target bpf omits.
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        other => other,
    };
    for (source, skeleton) in [(SOURCE, "netgraph.skel.rs"), (FLOOR, "floor.skel.rs")] {
        if let Err(error) = SkeletonBuilder::new()
            .source(source)
            .clang_args([
                format!("-I/usr/include/{multiarch}"),
                "-Wall".to_string(),
                "-O2".to_string(),
                // Atomic exchanges and fetching adds (socket storage counters).
                "-mcpu=v3".to_string(),
            ])
            .build_and_generate(out.join(skeleton))
        {
            panic!(
                "cannot build the eBPF programs of {source}: {error:#}\n\
                 install clang, libelf-dev, zlib1g-dev and linux-libc-dev (apt-get install clang libelf-dev zlib1g-dev linux-libc-dev)"
            );
        }
    }
    println!("cargo:rerun-if-changed=src/engine/ebpf/bpf");
    println!("cargo:rerun-if-changed=bench/floor");
}
