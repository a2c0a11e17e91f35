//! Bytes decoded into a page list, offset, size, period and profile tweaks:
//! building never panics, and a built list covers the buffer exactly within
//! the profile's limits and encodes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wavert_core::geometry::CyclicBuffer;
use wavert_core::sg::{build, encode, Descriptor, SgProfile};

fn u32_at(d: &[u8], i: usize) -> u32 {
    let mut b = [0u8; 4];
    for (k, x) in b.iter_mut().enumerate() {
        *x = d.get(i + k).copied().unwrap_or(0);
    }
    u32::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let flags = data[0];
    let mut profile = if flags & 1 == 0 { SgProfile::AC97 } else { SgProfile::HDA };
    profile.coalesce = flags & 2 != 0;
    profile.max_entry_bytes = u32_at(data, 1) % 0x2_0000 + 1;
    let first = u32_at(data, 5) % 4096;
    let size = u32_at(data, 9) % (64 * 4096) + 1;
    let periods = u32::from(data[13] % 4) + 1;
    // Pages: 2 bytes each, page frame numbers (may repeat, may be adjacent).
    let pages: Vec<u64> = data[14..]
        .chunks(2)
        .map(|c| u64::from(u16::from_le_bytes([c[0], *c.get(1).unwrap_or(&0)])) * 4096)
        .collect();
    let Ok(buffer) = CyclicBuffer::new(&pages, first, size) else {
        return;
    };
    let mut out = vec![Descriptor::default(); 4096];
    let Ok(n) = build(&buffer, &profile, size / periods, &mut out) else {
        return;
    };
    let total: u64 = out[..n].iter().map(|d| u64::from(d.length_bytes)).sum();
    assert_eq!(total, u64::from(size));
    let mut offset = 0u32;
    for d in &out[..n] {
        assert_eq!(d.buffer_offset, offset);
        assert!(d.length_bytes <= profile.max_entry_bytes);
        offset += d.length_bytes;
    }
    if n <= usize::from(profile.max_entries) {
        let mut bytes = vec![0u8; n * profile.layout.entry_size()];
        assert_eq!(encode(&profile, &out[..n], &mut bytes), Ok(bytes.len()));
    }
});
