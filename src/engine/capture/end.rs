//! One end of a captured packet, address and port, as the flow table compares and
//! hashes it: built straight from the header's bytes. Building `SocketAddr`s per packet
//! and taking them apart again for the table's key stalled the capture thread on its
//! own stack (stores and loads of different widths).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct End {
    ip: u128,
    port: u16,
    v6: bool,
}

impl End {
    pub fn v4(octets: [u8; 4], port: u16) -> End {
        End {
            ip: u128::from(u32::from_be_bytes(octets)),
            port,
            v6: false,
        }
    }

    /// An IPv4-mapped IPv6 address is its IPv4 address, as `canonical_addr` has it.
    pub fn v6(octets: [u8; 16], port: u16) -> End {
        let ip = u128::from_be_bytes(octets);
        const MAPPED: u128 = 0xffff << 32;
        if ip >> 32 == MAPPED >> 32 {
            return End {
                ip: ip & u128::from(u32::MAX),
                port,
                v6: false,
            };
        }
        End { ip, port, v6: true }
    }

    pub fn of(address: SocketAddr) -> End {
        match address.ip() {
            IpAddr::V4(v4) => End::v4(v4.octets(), address.port()),
            IpAddr::V6(v6) => End::v6(v6.octets(), address.port()),
        }
    }

    pub fn address(self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port)
    }

    pub fn ip(self) -> IpAddr {
        if self.v6 {
            IpAddr::V6(Ipv6Addr::from_bits(self.ip))
        } else {
            IpAddr::V4(Ipv4Addr::from_bits(self.ip as u32))
        }
    }

    pub fn port(self) -> u16 {
        self.port
    }

    pub fn set_port(&mut self, port: u16) {
        self.port = port;
    }
}

#[cfg(test)]
mod tests {
    use super::End;
    use std::net::SocketAddr;

    #[test]
    fn ends_round_trip_and_mapped_addresses_are_ipv4() {
        for text in ["10.0.0.1:80", "[2001:db8::1]:443", "[::1]:53", "0.0.0.0:0"] {
            let address: SocketAddr = text.parse().unwrap();
            assert_eq!(End::of(address).address(), address);
        }
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:80".parse().unwrap();
        assert_eq!(End::of(mapped), End::v4([10, 0, 0, 1], 80));
        assert_eq!(End::of(mapped).address().to_string(), "10.0.0.1:80");
        // Only the ::ffff:0:0/96 prefix is mapped; ::a00:1 (IPv4-compatible) is not.
        let compatible: SocketAddr = "[::a00:1]:80".parse().unwrap();
        assert!(End::of(compatible).address().is_ipv6());
    }
}
