//! Names for the multicast groups and broadcast a host talks to without any lookup
//! (mDNS, SSDP, neighbour discovery): a row says what it is rather than `ff02::fb`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The group's well-known name, else `multicast` for any other group; None for unicast.
pub fn name(address: IpAddr) -> Option<&'static str> {
    match crate::traffic::canonical_ip(address) {
        IpAddr::V4(v4) => v4_name(v4),
        IpAddr::V6(v6) => v6_name(v6),
    }
}

fn v4_name(address: Ipv4Addr) -> Option<&'static str> {
    if address.is_broadcast() {
        return Some("broadcast");
    }
    if !address.is_multicast() {
        return None;
    }
    Some(match address.octets() {
        [224, 0, 0, 1] => "all hosts (multicast)",
        [224, 0, 0, 2] => "all routers (multicast)",
        [224, 0, 0, 22] => "IGMP reports (multicast)",
        [224, 0, 0, 251] => "mDNS (multicast)",
        [224, 0, 0, 252] => "LLMNR (multicast)",
        [239, 255, 255, 250] => "SSDP (multicast)",
        _ => "multicast",
    })
}

fn v6_name(address: Ipv6Addr) -> Option<&'static str> {
    if !address.is_multicast() {
        return None;
    }
    let segments = address.segments();
    // Link-local scope (ff02::/16) holds the well-known groups.
    if segments[0] != 0xff02 {
        return Some("multicast");
    }
    Some(match segments[1..] {
        [0, 0, 0, 0, 0, 0, 1] => "all nodes (multicast)",
        [0, 0, 0, 0, 0, 0, 2] => "all routers (multicast)",
        [0, 0, 0, 0, 0, 0, 0x16] => "MLD reports (multicast)",
        [0, 0, 0, 0, 0, 0, 0xfb] => "mDNS (multicast)",
        [0, 0, 0, 0, 0, 0, 0xc] => "SSDP (multicast)",
        [0, 0, 0, 0, 0, 1, 2] => "DHCPv6 (multicast)",
        [0, 0, 0, 0, 0, 1, 3] => "LLMNR (multicast)",
        [0, 0, 0, 0, 1, high, _] if high >> 8 == 0xff => "neighbour discovery (multicast)",
        _ => "multicast",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_named_and_unicast_is_not() {
        let named = |text: &str| name(text.parse().unwrap());
        assert_eq!(named("224.0.0.251"), Some("mDNS (multicast)"));
        assert_eq!(named("ff02::fb"), Some("mDNS (multicast)"));
        assert_eq!(named("::ffff:239.255.255.250"), Some("SSDP (multicast)"));
        assert_eq!(
            named("ff02::1:ff12:3456"),
            Some("neighbour discovery (multicast)")
        );
        assert_eq!(named("ff02::1:2"), Some("DHCPv6 (multicast)"));
        assert_eq!(named("ff05::1:3"), Some("multicast"));
        assert_eq!(named("239.1.2.3"), Some("multicast"));
        assert_eq!(named("255.255.255.255"), Some("broadcast"));
        for unicast in ["192.0.2.1", "127.0.0.1", "2001:db8::1", "fe80::1", "::1"] {
            assert_eq!(named(unicast), None, "{unicast}");
        }
    }
}
