use super::*;
use crate::engine::capture::link::LinkType;
use etherparse::PacketBuilder;

const OWN_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

fn ethernet() -> Link {
    Link {
        link_type: LinkType::Ethernet,
        own_mac: Some(OWN_MAC),
    }
}

fn raw_ip() -> Link {
    Link {
        link_type: LinkType::RawIp,
        own_mac: None,
    }
}

fn built(builder: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut frame = Vec::new();
    builder(&mut frame);
    frame
}

fn ip(decoded: Decoded) -> IpPacket {
    match decoded {
        Decoded::Ip(packet) => packet,
        other => panic!("expected an IP packet, got {other:?}"),
    }
}

#[test]
fn ethernet_ipv4_tcp_outgoing() {
    let frame = built(|f| {
        PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1, 1000)
            .write(f, &[7; 100])
            .unwrap()
    });
    let packet = ip(decode(&ethernet(), &frame, frame.len() as u32));
    assert_eq!(packet.ip_number, 6);
    assert_eq!(packet.src.address(), "10.0.0.1:40000".parse().unwrap());
    assert_eq!(packet.dst.address(), "10.0.0.2:80".parse().unwrap());
    assert_eq!(packet.ip_len, 20 + 20 + 100, "IP layer: no Ethernet header");
    assert_eq!(packet.direction, LinkDirection::Outgoing);
}

#[test]
fn snap_length_keeps_the_wire_size() {
    let frame = built(|f| {
        PacketBuilder::ethernet2(PEER_MAC, OWN_MAC)
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .udp(53, 40000)
            .write(f, &[0; 1400])
            .unwrap()
    });
    let captured = &frame[..96];
    let packet = ip(decode(&ethernet(), captured, frame.len() as u32));
    assert_eq!(packet.ip_len, 20 + 8 + 1400);
    assert_eq!(packet.dst.port(), 40000);
    assert_eq!(packet.direction, LinkDirection::Incoming);
}

#[test]
fn a_tcp_header_cut_by_the_snap_length_keeps_its_ports_and_length() {
    // 40 bytes of TCP options: the header ends at byte 14 + 20 + 60 = 94 of the frame.
    let frame = built(|f| {
        PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 443, 1, 1000)
            .options_raw(&[1; 40])
            .unwrap()
            .write(f, &[7; 1000])
            .unwrap()
    });
    for snap in [70, 80, 93] {
        let packet = ip(decode(&ethernet(), &frame[..snap], frame.len() as u32));
        assert_eq!(
            packet.src.address(),
            "10.0.0.1:40000".parse().unwrap(),
            "snap {snap}"
        );
        assert_eq!(packet.dst.address(), "10.0.0.2:443".parse().unwrap());
        assert_eq!(packet.ip_len, 20 + 60 + 1000);
        assert_eq!(
            packet.headers,
            20 + 60,
            "GRO segments keep their header size"
        );
    }
    // Cut before the ports: the packet still counts, for no flow.
    let packet = ip(decode(&ethernet(), &frame[..36], frame.len() as u32));
    assert_eq!((packet.src.port(), packet.ip_len), (0, 1080));
}

#[test]
fn vlan_tagged_frame() {
    let frame = built(|f| {
        PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
            .single_vlan(etherparse::VlanId::try_new(42).unwrap())
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1000, 2000)
            .write(f, &[1; 10])
            .unwrap()
    });
    let packet = ip(decode(&ethernet(), &frame, frame.len() as u32));
    assert_eq!(packet.ip_len, 40 + 8 + 10);
    assert_eq!(packet.src.port(), 1000);
}

#[test]
fn linux_cooked_v1_and_v2() {
    let ip_packet = built(|f| {
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, 6000)
            .write(f, &[0; 32])
            .unwrap()
    });
    // SLL: packet type 4 (outgoing), ARPHRD, address length, address, protocol 0x0800.
    let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend(&ip_packet);
    let link = Link {
        link_type: LinkType::LinuxSll,
        own_mac: None,
    };
    let packet = ip(decode(&link, &sll, sll.len() as u32));
    assert_eq!(
        (packet.ip_len, packet.direction),
        (60, LinkDirection::Outgoing)
    );
    // SLL2: protocol, reserved, ifindex, ARPHRD, packet type 0 (to us), address length, address.
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 2, 0, 0,
    ];
    sll2.extend(&ip_packet);
    let link = Link {
        link_type: LinkType::LinuxSll2,
        own_mac: None,
    };
    let packet = ip(decode(&link, &sll2, sll2.len() as u32));
    assert_eq!(
        (packet.ip_len, packet.direction),
        (60, LinkDirection::Incoming)
    );
}

#[test]
fn bsd_loopback_family_header() {
    let ip_packet = built(|f| {
        PacketBuilder::ipv6([0; 16], [0; 16], 64)
            .tcp(1, 2, 0, 100)
            .write(f, &[])
            .unwrap()
    });
    let mut null = 10u32.to_ne_bytes().to_vec();
    null.extend(&ip_packet);
    let link = Link {
        link_type: LinkType::Null {
            network_order: false,
        },
        own_mac: None,
    };
    assert_eq!(ip(decode(&link, &null, null.len() as u32)).ip_len, 60);
    let mut other_family = 99u32.to_ne_bytes().to_vec();
    other_family.extend(&ip_packet);
    assert!(matches!(
        decode(&link, &other_family, other_family.len() as u32),
        Decoded::NotIp { .. }
    ));
}

#[test]
fn ipv4_options_and_ipv6_extension_headers() {
    // IHL 6: four bytes of options (NOP NOP NOP EOL), then UDP.
    let mut v4 = vec![
        0x46, 0, 0, 36, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    v4.extend([1, 1, 1, 0]);
    v4.extend([0x13, 0x88, 0x17, 0x70, 0, 12, 0, 0, 9, 9, 9, 9]);
    let packet = ip(decode(&raw_ip(), &v4, v4.len() as u32));
    assert_eq!(
        (packet.ip_len, packet.src.port(), packet.dst.port()),
        (36, 5000, 6000)
    );
    // IPv6 with a hop-by-hop header (8 bytes of padding) before UDP.
    let mut v6 = vec![0x60, 0, 0, 0, 0, 20, 0, 64];
    v6.extend([0xfd; 16]);
    v6.extend([0xfe; 16]);
    v6.extend([17, 0, 1, 4, 0, 0, 0, 0]);
    v6.extend([0x13, 0x88, 0x17, 0x70, 0, 12, 0, 0, 9, 9, 9, 9]);
    let packet = ip(decode(&raw_ip(), &v6, v6.len() as u32));
    assert_eq!(
        (packet.ip_number, packet.ip_len, packet.dst.port()),
        (17, 60, 6000)
    );
}

#[test]
fn icmp_echo_identifier_is_the_port() {
    let frame = built(|f| {
        PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .icmpv4_echo_request(4242, 1)
            .write(f, &[0; 56])
            .unwrap()
    });
    let packet = ip(decode(&raw_ip(), &frame, frame.len() as u32));
    assert_eq!((packet.src.port(), packet.dst.port()), (4242, 4242));
    let frame = built(|f| {
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
            .icmpv6_echo_request(77, 1)
            .write(f, &[0; 8])
            .unwrap()
    });
    let packet = ip(decode(&raw_ip(), &frame, frame.len() as u32));
    assert_eq!((packet.ip_number, packet.src.port()), (58, 77));
}

#[test]
fn other_protocols_by_number_and_arp_is_not_ip() {
    let mut gre = vec![
        0x45, 0, 0, 24, 0, 0, 0, 0, 64, 47, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    gre.extend([0; 4]);
    let packet = ip(decode(&raw_ip(), &gre, gre.len() as u32));
    assert_eq!(
        (packet.ip_number, packet.ip_len, packet.src.port()),
        (47, 24, 0)
    );
    let mut arp = PEER_MAC.to_vec();
    arp.extend(OWN_MAC);
    arp.extend([0x08, 0x06]);
    arp.extend([0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend([0; 20]);
    assert!(matches!(
        decode(&ethernet(), &arp, arp.len() as u32),
        Decoded::NotIp { .. }
    ));
}

#[test]
fn fragments_carry_their_identity() {
    // First fragment (more fragments set, offset 0), then a later one (offset 185 * 8).
    let first = [
        0x45, 0, 0, 28, 0x12, 0x34, 0x20, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 0x13, 0x88,
        0x17, 0x70, 0, 100, 0, 0,
    ];
    let packet = ip(decode(&raw_ip(), &first, first.len() as u32));
    assert_eq!(
        packet.fragment,
        Some(Fragment {
            id: 0x1234,
            first: true
        })
    );
    assert_eq!(packet.dst.port(), 6000);
    let later = [
        0x45, 0, 0, 28, 0x12, 0x34, 0x00, 185, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, 1, 2, 3, 4,
        5, 6, 7, 8,
    ];
    let packet = ip(decode(&raw_ip(), &later, later.len() as u32));
    assert_eq!(
        packet.fragment,
        Some(Fragment {
            id: 0x1234,
            first: false
        })
    );
    assert_eq!(packet.dst.port(), 0, "ports come from the first fragment");
}

#[test]
fn malformed_headers_are_recognised() {
    let malformed = |frame: &[u8]| {
        matches!(
            decode(&raw_ip(), frame, frame.len() as u32),
            Decoded::Malformed { .. }
        )
    };
    // Cut inside the IPv4 header.
    assert!(malformed(&[0x45, 0, 0, 40, 0, 0, 0, 0, 64, 6]));
    // Header length below five words.
    assert!(malformed(&[
        0x43, 0, 0, 20, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2
    ]));
    // Total length beyond what was on the wire.
    let mut long = vec![
        0x45, 0, 0x03, 0xe8, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    long.extend([0; 8]);
    assert!(malformed(&long));
    // A complete packet whose TCP header is cut short.
    let mut short_tcp = vec![
        0x45, 0, 0, 28, 0, 0, 0, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
    ];
    short_tcp.extend([0; 8]);
    assert!(malformed(&short_tcp));
    // Version nibble neither 4 nor 6.
    assert!(malformed(&[0x75; 40]));
    // An Ethernet frame shorter than its header.
    assert!(matches!(
        decode(&ethernet(), &[1, 2, 3], 3),
        Decoded::Malformed { .. }
    ));
}

#[test]
fn random_bytes_never_panic() {
    // A fixed xorshift sequence: reproducible, and wide enough to hit every branch.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let links = [
        ethernet(),
        raw_ip(),
        Link {
            link_type: LinkType::LinuxSll,
            own_mac: None,
        },
        Link {
            link_type: LinkType::LinuxSll2,
            own_mac: None,
        },
        Link {
            link_type: LinkType::Null {
                network_order: true,
            },
            own_mac: None,
        },
    ];
    for round in 0..20_000 {
        let len = (next() % 120) as usize;
        let mut frame: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Bias towards IP so the deeper decoders see garbage too.
        if round % 2 == 0 && !frame.is_empty() {
            frame[0] = if round % 4 == 0 { 0x45 } else { 0x60 };
        }
        let wire_len = len as u32 + (next() % 3) as u32 * 100;
        for link in &links {
            let _ = decode(link, &frame, wire_len);
        }
    }
}

/// Frames of the kinds the lab and the bench see, as the short way's test corpus, and
/// whether the short way takes each as it is (all but ICMP).
fn corpus() -> Vec<(Link, Vec<u8>, bool)> {
    let payload = [0x42u8; 64];
    let mut frames = vec![
        built(|f| {
            PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 80, 1, 1000)
                .write(f, &payload)
                .unwrap()
        }),
        built(|f| {
            PacketBuilder::ethernet2(PEER_MAC, OWN_MAC)
                .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
                .udp(53, 40000)
                .write(f, &payload)
                .unwrap()
        }),
        built(|f| {
            PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
                .ipv6([0xfd; 16], [0xfe; 16], 64)
                .tcp(40000, 443, 1, 1000)
                .write(f, &payload)
                .unwrap()
        }),
        built(|f| {
            PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
                .ipv6([0xfd; 16], [0xfe; 16], 64)
                .udp(5353, 5353)
                .write(f, &[])
                .unwrap()
        }),
        built(|f| {
            PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .icmpv4_echo_request(7, 1)
                .write(f, &payload)
                .unwrap()
        }),
    ];
    // Padded to Ethernet's minimum, as short frames are on the wire.
    let mut padded = built(|f| {
        PacketBuilder::ethernet2(OWN_MAC, PEER_MAC)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(1, 2)
            .write(f, &[1, 2])
            .unwrap()
    });
    padded.resize(60, 0);
    frames.push(padded);
    let common = |frame: &[u8]| !matches!(frame[14] >> 4, 4 if frame[23] == 1);
    let mut all: Vec<(Link, Vec<u8>, bool)> = frames
        .iter()
        .map(|frame| (raw_ip(), frame[14..].to_vec(), common(frame)))
        .collect();
    all.extend(frames.into_iter().map(|frame| {
        let common = common(&frame);
        (ethernet(), frame, common)
    }));
    all
}

/// The short way's answer, or `None`, checked against the full decoder's.
fn agree(link: &Link, frame: &[u8], wire_len: u32) -> bool {
    let Some(mut short) = common::decode(link, frame, wire_len) else {
        return false;
    };
    short.direction = link.direction(frame);
    assert_eq!(
        decode_in_full(link, frame, wire_len, short.direction),
        Decoded::Ip(short),
        "frame {frame:02x?}, wire length {wire_len}"
    );
    true
}

#[test]
fn common_frames_take_the_short_way() {
    for (link, frame, common) in corpus() {
        assert_eq!(
            agree(&link, &frame, frame.len() as u32),
            common,
            "{frame:02x?}"
        );
    }
}

#[test]
fn the_short_way_agrees_with_the_full_decoder_on_any_bytes() {
    // xorshift64: reproducible, no dependency for a test corpus.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut taken = 0;
    for (link, frame, _) in corpus() {
        let wire_len = frame.len() as u32;
        for cut in 0..=frame.len() {
            // Cut at the snap length (the wire had it all), and a frame that short.
            agree(&link, &frame[..cut], wire_len);
            agree(&link, &frame[..cut], cut as u32);
        }
        for _ in 0..20_000 {
            let mut mutated = frame.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % mutated.len().min(80) as u64) as usize;
                mutated[at] = next() as u8;
            }
            let wire_len = match next() % 4 {
                0 => (next() % 2000) as u32,
                _ => mutated.len() as u32,
            };
            taken += usize::from(agree(&link, &mutated, wire_len));
        }
    }
    assert!(
        taken > 10_000,
        "mutated frames mostly still common: {taken}"
    );
}
