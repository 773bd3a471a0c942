//! Trace ids: taken from a valid W3C `traceparent`, or generated.

use rand::RngCore;

/// The trace id of an incoming `traceparent` header, when it is valid:
/// `00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>`, lower-case, with
/// neither id all zeros.
pub fn from_traceparent(value: &str) -> Option<String> {
    let mut parts = value.trim().split('-');
    let (version, trace_id, parent_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let all_zero = |s: &str| s.bytes().all(|b| b == b'0');
    let valid = is_hex(version, 2)
        && version != "ff"
        // Version 00 has exactly four fields; later versions may add more.
        && (version != "00" || parts.next().is_none())
        && is_hex(trace_id, 32)
        && !all_zero(trace_id)
        && is_hex(parent_id, 16)
        && !all_zero(parent_id)
        && is_hex(flags, 2);
    valid.then(|| trace_id.to_owned())
}

/// A fresh random trace id.
pub fn generate() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_valid_traceparents() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(from_traceparent(good).as_deref(), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(from_traceparent(&format!("00-{a}-00f067aa0ba902b7-01")).is_some());
    }
}
