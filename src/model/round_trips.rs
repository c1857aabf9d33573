//! Round trips of what operators write, on generated values: a duration or a CIDR is
//! shown the way it is read, and read back to the same value. Fixed seed and a bounded
//! number of cases, so a run is deterministic and fast.

use std::net::Ipv4Addr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;

use super::duration::{HumanDuration, parse_duration};
use super::network::Ipv4Net;

const TEN_YEARS_MS: u64 = 10 * 365 * 86_400_000;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 512, rng_seed: RngSeed::Fixed(20260105), failure_persistence: None, ..Default::default() }
}

proptest! {
    #![proptest_config(config())]

    /// Any duration under ten years is shown as a text that reads back to it.
    #[test]
    fn a_duration_reads_back_as_it_is_shown(ms in 0..TEN_YEARS_MS) {
        let duration = Duration::from_millis(ms);
        let shown = HumanDuration(duration).to_string();
        prop_assert_eq!(parse_duration(&shown), Ok(duration), "{}", shown);
    }

    /// A duration written largest units first, each below the next (`1d2h3m4.005s`), is
    /// shown exactly as written; written any other way (`90m`), it is read to the same
    /// duration as its canonical form.
    #[test]
    fn a_written_duration_is_shown_in_its_canonical_form(
        parts in (0u64..3650, 0u64..24, 0u64..60, 0u64..60, 0u64..1000),
        minutes in 0u64..100_000,
    ) {
        let (d, h, m, s, ms) = parts;
        let mut text: String = [(d, "d"), (h, "h"), (m, "m")]
            .iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, unit)| format!("{n}{unit}"))
            .collect();
        match (s, ms) {
            (0, 0) => {}
            (s, 0) => text.push_str(&format!("{s}s")),
            (s, ms) => text.push_str(&format!("{s}.{}s", format!("{ms:03}").trim_end_matches('0'))),
        }
        let text = if text.is_empty() { "0s".to_string() } else { text };
        let parsed = parse_duration(&text).unwrap();
        prop_assert_eq!(HumanDuration(parsed).to_string(), text);
        let minutes = parse_duration(&format!("{minutes}m")).unwrap();
        prop_assert_eq!(parse_duration(&HumanDuration(minutes).to_string()), Ok(minutes));
    }

    /// Any network of a prefix drplan accepts (8 to 30) is shown as it is read, holds its
    /// first and last addresses and nothing either side.
    #[test]
    fn a_cidr_reads_back_as_it_is_shown(address in any::<u32>(), prefix in 8u8..=30) {
        let mask = u32::MAX << (32 - prefix);
        let base = address & mask;
        let text = format!("{}/{prefix}", Ipv4Addr::from(base));
        let net: Ipv4Net = text.parse().unwrap();
        prop_assert_eq!(net.to_string(), text.clone());
        prop_assert_eq!(serde_json::from_str::<Ipv4Net>(&serde_json::to_string(&net).unwrap()).unwrap(), net);
        let last = base | !mask;
        prop_assert!(net.contains(Ipv4Addr::from(base)) && net.contains(Ipv4Addr::from(last)));
        if let Some(before) = base.checked_sub(1) {
            prop_assert!(!net.contains(Ipv4Addr::from(before)));
        }
        if let Some(after) = last.checked_add(1) {
            prop_assert!(!net.contains(Ipv4Addr::from(after)));
        }
        // With a host bit set, the same text is refused.
        let with_host_bit = format!("{}/{prefix}", Ipv4Addr::from(base | 1));
        let refused = with_host_bit.parse::<Ipv4Net>().unwrap_err();
        prop_assert!(refused.contains("host bits"), "{}", refused);
    }
}
