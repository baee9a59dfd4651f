//! Bytes as a person reads them, the same everywhere (report, top, alerts, the page):
//! decimal SI units, 1 kB = 1000 B, as limits and bills are given.

const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];

/// `bytes` in the largest unit under which it is at least 1, with `decimals` places
/// (whole bytes have none).
pub fn human(bytes: f64, decimals: usize) -> String {
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.decimals$} {}", UNITS[unit])
    }
}

/// Whole bytes with two decimals in their unit: reports and notices.
pub fn bytes(bytes: u64) -> String {
    human(bytes as f64, 2)
}

/// A rate in bits per second, as links and limits are given ("20.0 Mbit/s").
pub fn bits_per_second(bytes_per_second: f64) -> String {
    const BIT_UNITS: [&str; 5] = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s", "Tbit/s"];
    let mut value = bytes_per_second * 8.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < BIT_UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", BIT_UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::{bits_per_second, human};

    #[test]
    fn rates_in_bits_as_links_are_given() {
        assert_eq!(bits_per_second(2_500_000.0), "20.0 Mbit/s");
        assert_eq!(bits_per_second(100.0), "800.0 bit/s");
        assert_eq!(bits_per_second(125_000_000.0), "1.0 Gbit/s");
    }

    #[test]
    fn decimal_units_with_a_lowercase_k() {
        assert_eq!(human(999.0, 2), "999 B");
        assert_eq!(human(1_500.0, 1), "1.5 kB");
        assert_eq!(human(186_000_000.0, 2), "186.00 MB");
        assert_eq!(human(3.65e9, 2), "3.65 GB");
    }
}
