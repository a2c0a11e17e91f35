//! The PE optional header's `CheckSum`, computed and written after linking.
//!
//! rust-lld leaves the field at 0, and Windows refuses to load a kernel image
//! whose checksum is missing or wrong: clang/lld-built drivers were refused
//! with `ERROR_BAD_EXE_FORMAT` until the checksum was recomputed
//! (reactos/reactos PR #8969), and Microsoft's page on `link.exe /RELEASE`
//! says the operating system requires the checksum for device drivers.
//! `link.exe` sets it by default for `/SUBSYSTEM:NATIVE`; on the Linux cross
//! build [`write_checksum`] does, right after the image is packaged.
//!
//! The value is the one imagehlp's `CheckSumMappedFile` produces: the file
//! read as little-endian 16-bit words (an odd trailing byte is a word of its
//! own), the 4-byte `CheckSum` field counted as zero, summed with the carry
//! folded back in after every addition, then the file length added.

/// Offset of `CheckSum` inside the PE32/PE32+ optional header (the same in both).
const CHECKSUM_IN_OPTIONAL_HEADER: usize = 64;

/// Offset of the optional header: `e_lfanew` (the `PE\0\0` signature's file
/// offset, stored at 0x3c) + the 4-byte signature + the 20-byte COFF header.
pub fn optional_header_offset(image: &[u8]) -> Option<usize> {
    let signature = u32::from_le_bytes(image.get(0x3c..0x40)?.try_into().ok()?);
    usize::try_from(signature).ok()?.checked_add(4 + 20)
}

/// File offset of the `CheckSum` field, if the headers are long enough to hold it.
pub fn checksum_offset(image: &[u8]) -> Option<usize> {
    let offset = optional_header_offset(image)?.checked_add(CHECKSUM_IN_OPTIONAL_HEADER)?;
    (offset.checked_add(4)? <= image.len()).then_some(offset)
}

/// The checksum of `image` with the four bytes at `field_offset` taken as 0
/// (imagehlp's `CheckSumMappedFile`). The field's own content never matters,
/// so the result is the value to store there.
#[expect(
    clippy::cast_possible_truncation,
    reason = "imagehlp adds the length as a 32-bit DWORD; a PE file is far below 4 GiB"
)]
pub fn pe_checksum(image: &[u8], field_offset: usize) -> u32 {
    let field = field_offset..field_offset.saturating_add(4);
    let byte_at = |index: usize| {
        if field.contains(&index) {
            0
        } else {
            image.get(index).copied().unwrap_or(0)
        }
    };
    let mut sum: u32 = 0;
    for word_start in (0..image.len()).step_by(2) {
        // A trailing odd byte reads as a word whose high byte is 0.
        let word = u16::from_le_bytes([byte_at(word_start), byte_at(word_start + 1)]);
        sum += u32::from(word);
        // End-around carry keeps the running sum within 16 bits
        // (at most 0xffff + 0xffff before the fold, 0xffff after it).
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum.wrapping_add(image.len() as u32)
}

/// The checksum an image should carry, or `None` if it has no PE headers.
pub fn computed_checksum(image: &[u8]) -> Option<u32> {
    checksum_offset(image).map(|offset| pe_checksum(image, offset))
}

/// Stores `value` as the image's `CheckSum`.
pub fn store_checksum(image: &mut [u8], value: u32) -> Result<(), String> {
    let offset = checksum_offset(image)
        .ok_or_else(|| "image too short for a PE optional header".to_owned())?;
    image
        .get_mut(offset..offset + 4)
        .ok_or_else(|| "CheckSum field past the end of the image".to_owned())?
        .copy_from_slice(&value.to_le_bytes());
    Ok(())
}

/// The post-link step: computes the checksum and stores it; returns it.
pub fn write_checksum(image: &mut [u8]) -> Result<u32, String> {
    let value = computed_checksum(image)
        .ok_or_else(|| "image too short for a PE optional header".to_owned())?;
    store_checksum(image, value)?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Beyond the end of every small buffer below: no byte is masked.
    const NO_FIELD: usize = usize::MAX - 8;

    fn stored_checksum(image: &[u8]) -> Option<u32> {
        let offset = checksum_offset(image)?;
        Some(u32::from_le_bytes(
            image[offset..offset + 4].try_into().ok()?,
        ))
    }

    #[test]
    fn hand_computed_sum_with_carry() {
        // 0xffff + 0x0002 = 0x1_0001, carry folded: 0x0002; + length 4 = 6.
        assert_eq!(pe_checksum(&[0xff, 0xff, 0x02, 0x00], NO_FIELD), 6);
        // 0x1234 + 0x5678 = 0x68ac, no carry; + 4.
        assert_eq!(pe_checksum(&[0x34, 0x12, 0x78, 0x56], NO_FIELD), 0x68b0);
        // Three words of 0xffff: 0xffff, then 0x1_fffe -> 0xffff twice; + 6.
        assert_eq!(pe_checksum(&[0xff; 6], NO_FIELD), 0xffff + 6);
        assert_eq!(pe_checksum(&[], NO_FIELD), 0);
    }

    #[test]
    fn odd_trailing_byte_is_a_word_of_its_own() {
        // 0x1234 + 0x0078 = 0x12ac; + length 3.
        assert_eq!(pe_checksum(&[0x34, 0x12, 0x78], NO_FIELD), 0x12af);
        // The trailing byte is the low byte: 0x00ff, not 0xff00.
        assert_eq!(pe_checksum(&[0xff], NO_FIELD), 0x00ff + 1);
    }

    #[test]
    fn the_field_itself_is_ignored() {
        let mut image = [0x11_u8, 0x22, 0, 0, 0, 0, 0x33, 0x44];
        let empty_field = pe_checksum(&image, 2);
        assert_eq!(empty_field, 0x2211 + 0x4433 + 8);
        image[2..6].copy_from_slice(&0xdead_beef_u32.to_le_bytes());
        assert_eq!(pe_checksum(&image, 2), empty_field);
        // Not masked, those bytes count.
        assert_ne!(pe_checksum(&image, NO_FIELD), empty_field);
    }

    /// The synthetic image of [`known_answer_matches_pefile`]: a pseudo-random
    /// fill (Knuth's multiplicative hash of the index, top byte) with just
    /// enough PE32+ header for pefile to parse it, an odd length, and garbage
    /// in the `CheckSum` field.
    fn synthetic_image() -> Vec<u8> {
        let mut image: Vec<u8> = (0..0x1001_u32)
            .map(|index| (index.wrapping_mul(2_654_435_761) >> 24).to_le_bytes()[0])
            .collect();
        let mut put = |offset: usize, bytes: &[u8]| {
            image[offset..offset + bytes.len()].copy_from_slice(bytes);
        };
        put(0, b"MZ");
        put(0x3c, &0x40_u32.to_le_bytes());
        put(0x40, b"PE\0\0");
        // COFF header: AMD64, no sections, time 0, no symbols, a 0xf0-byte
        // optional header, characteristics EXECUTABLE_IMAGE | LARGE_ADDRESS_AWARE.
        let mut coff = Vec::new();
        for half in [0x8664_u16, 0] {
            coff.extend_from_slice(&half.to_le_bytes());
        }
        for word in [0_u32; 3] {
            coff.extend_from_slice(&word.to_le_bytes());
        }
        for half in [0xf0_u16, 0x22] {
            coff.extend_from_slice(&half.to_le_bytes());
        }
        put(0x44, &coff);
        put(0x58, &0x20b_u16.to_le_bytes());
        // NumberOfRvaAndSizes = 16, so pefile reads no garbage directory count.
        put(0x58 + 108, &16_u32.to_le_bytes());
        put(0x98, &0xdead_beef_u32.to_le_bytes());
        image
    }

    /// Known answer from an independent implementation: the bytes of
    /// [`synthetic_image`] were built once with the same recipe in Python and
    /// `pefile.PE(data=..., fast_load=True).generate_checksum()` (pefile
    /// 2024.8.26, installed with pip, which sums 32-bit dwords and folds, a different
    /// route to the same value) returned 0xa6f3.
    #[test]
    fn known_answer_matches_pefile() {
        let image = synthetic_image();
        assert_eq!(image.len(), 0x1001);
        assert_eq!(checksum_offset(&image), Some(0x98));
        assert_eq!(stored_checksum(&image), Some(0xdead_beef));
        assert_eq!(computed_checksum(&image), Some(0xa6f3));
    }

    #[test]
    fn writing_stores_the_value_and_is_idempotent() {
        let mut image = synthetic_image();
        assert_eq!(write_checksum(&mut image), Ok(0xa6f3));
        assert_eq!(stored_checksum(&image), Some(0xa6f3));
        assert_eq!(write_checksum(&mut image), Ok(0xa6f3));
        assert!(write_checksum(&mut [0_u8; 0x40]).is_err());
    }
}
