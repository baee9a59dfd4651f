//! Reading the kernel side's structs out of map bytes. Only types marked `PlainData`
//! can be read: repr(C) structs of integers and arrays of integers, generated from the
//! BPF object's BTF, for which every bit pattern is a valid value. (`bool` or an enum is
//! not, which an unbounded `read_unaligned` would allow.)

use super::skeleton::types;

/// # Safety
/// Implement only for `Copy` types valid for any bit pattern of their size.
pub unsafe trait PlainData: Copy {}

// SAFETY: each is a repr(C) struct of unsigned integers, byte arrays, transparent
// wrappers of integers (the generated C enums) and such structs.
unsafe impl PlainData for types::traffic_key {}
// SAFETY: as above.
unsafe impl PlainData for types::peer_traffic_key {}
// SAFETY: as above.
unsafe impl PlainData for types::traffic_value {}
// SAFETY: as above (`comm` is an array of C chars, which is i8).
unsafe impl PlainData for types::owner {}
// SAFETY: as above.
unsafe impl PlainData for types::interface_key {}
// SAFETY: as above.
unsafe impl PlainData for types::interface_peer_key {}
// SAFETY: as above (an array of C chars).
unsafe impl PlainData for types::cgroup_path {}
// SAFETY: as above: a NUL-padded character array.
unsafe impl PlainData for types::exe_path {}
// SAFETY: as above.
unsafe impl PlainData for types::payload_sample {}
// SAFETY: as above.
unsafe impl PlainData for types::slot_report {}
// SAFETY: as above.
unsafe impl PlainData for types::tcp_health {}
// SAFETY: as above.
unsafe impl PlainData for types::drop_key {}
// SAFETY: as above.
unsafe impl PlainData for types::drop_count {}

/// The value in `bytes`, if they are exactly its size.
pub fn read<T: PlainData>(bytes: &[u8]) -> Option<T> {
    (bytes.len() == std::mem::size_of::<T>())
        // SAFETY: T is plain data (any bit pattern is valid) and the length matches.
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The bytes of a value, as the kernel would hold it: a key to delete, or a test's map
/// entry.
pub fn bytes_of<T: PlainData>(value: &T) -> Vec<u8> {
    // SAFETY: plain data is repr(C) integers with named padding: every byte is
    // initialised.
    unsafe {
        std::slice::from_raw_parts((value as *const T).cast::<u8>(), std::mem::size_of::<T>())
    }
    .to_vec()
}
