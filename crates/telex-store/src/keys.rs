//! Key encoding: `group (u32 BE) ‖ suffix`, so that each group owns one contiguous range.

use std::ops::Range;

pub fn group_prefix(group: u32) -> [u8; 4] {
    group.to_be_bytes()
}

pub fn group_key(group: u32, suffix: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(4 + suffix.len());
    k.extend_from_slice(&group.to_be_bytes());
    k.extend_from_slice(suffix);
    k
}

/// The whole key range of one group, as `[start, end)`.
pub fn group_range(group: u32) -> Range<Vec<u8>> {
    let start = group.to_be_bytes().to_vec();
    let end = match group.checked_add(1) {
        Some(next) => next.to_be_bytes().to_vec(),
        None => vec![0xff; 5],
    };
    start..end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ranges_do_not_overlap() {
        let r = group_range(7);
        assert!(group_key(7, b"") >= r.start && group_key(7, &[0xff; 20]) < r.end);
        assert!(group_key(8, b"") >= r.end);
        assert!(group_key(6, &[0xff; 20]) < r.start);
    }
}
