//! Bit packing of codes: each code takes exactly its width in bits.
//!
//! Codes are written least significant bit first into a continuous stream
//! of bytes, with no padding between codes of different widths; only the end
//! of the stream is padded with zero bits to a whole byte.

/// Appends codes of 1 to 8 bits to a byte stream.
#[derive(Debug, Default)]
pub struct BitWriter {
    bytes: Vec<u8>,
    bit_len: u64,
}

impl BitWriter {
    /// Creates an empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the low `width` bits of every code.
    ///
    /// The codes gather in a 64-bit word, which is written out 4 bytes at a
    /// time. A partly filled last byte is first taken back into the word.
    pub fn push_all(&mut self, codes: &[u8], width: u8) {
        debug_assert!((1..=8).contains(&width));
        let mask = (1u64 << width) - 1;
        let mut used = (self.bit_len % 8) as u32;
        let mut word = if used > 0 { self.bytes.pop().map_or(0, u64::from) } else { 0 };
        self.bytes.reserve(codes.len() * width as usize / 8 + 8);
        for &code in codes {
            word |= (u64::from(code) & mask) << used;
            used += u32::from(width);
            if used >= 32 {
                self.bytes.extend_from_slice(&(word as u32).to_le_bytes());
                word >>= 32;
                used -= 32;
            }
        }
        for _ in 0..used.div_ceil(8) {
            self.bytes.push(word as u8);
            word >>= 8;
        }
        self.bit_len += codes.len() as u64 * u64::from(width);
    }

    /// Number of bits written.
    pub fn bit_len(&self) -> u64 {
        self.bit_len
    }

    /// Returns the stream, padded to a whole byte.
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Reads codes back from a stream written by [`BitWriter`].
pub struct BitReader<'a> {
    bytes: &'a [u8],
    bit_pos: u64,
}

impl<'a> BitReader<'a> {
    /// Starts reading at the first bit of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        BitReader { bytes, bit_pos: 0 }
    }

    /// Reads `out.len()` codes of `width` bits; returns `None` when the stream is too short.
    pub fn read_into(&mut self, out: &mut [u8], width: u8) -> Option<()> {
        let end_bit = self.bit_pos + out.len() as u64 * width as u64;
        if end_bit > self.bytes.len() as u64 * 8 {
            return None;
        }
        let mask = (1u16 << width) - 1;
        for code in out.iter_mut() {
            let byte = (self.bit_pos / 8) as usize;
            let offset = (self.bit_pos % 8) as u32;
            let low = self.bytes[byte] as u16;
            let high = if offset + width as u32 > 8 { self.bytes[byte + 1] as u16 } else { 0 };
            *code = (((low | (high << 8)) >> offset) & mask) as u8;
            self.bit_pos += width as u64;
        }
        Some(())
    }
}

/// Bytes needed for `bits` bits.
pub fn bytes_for_bits(bits: u64) -> u64 {
    bits.div_ceil(8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::SmallRng, Rng, SeedableRng};

    #[test]
    fn pack_round_trips_every_width() {
        let mut rng = SmallRng::seed_from_u64(3);
        for width in 1..=8u8 {
            for len in [0usize, 1, 7, 8, 9, 1000] {
                let codes: Vec<u8> = (0..len).map(|_| rng.random_range(0..=((1u16 << width) - 1)) as u8).collect();
                let mut writer = BitWriter::new();
                writer.push_all(&codes, width);
                assert_eq!(writer.bit_len(), len as u64 * width as u64);
                let bytes = writer.finish();
                assert_eq!(bytes.len() as u64, bytes_for_bits(len as u64 * width as u64), "width {width}, length {len}");
                let mut back = vec![0u8; len];
                BitReader::new(&bytes).read_into(&mut back, width).expect("stream long enough");
                assert_eq!(back, codes, "width {width}, length {len}");
            }
        }
    }

    #[test]
    fn mixed_widths_share_one_stream() {
        let mut writer = BitWriter::new();
        writer.push_all(&[1, 0, 1], 1);
        writer.push_all(&[5, 7], 3);
        writer.push_all(&[200], 8);
        let bytes = writer.finish();
        assert_eq!(bytes.len(), 3, "3 + 6 + 8 = 17 bits fit in 3 bytes");
        let mut reader = BitReader::new(&bytes);
        let (mut a, mut b, mut c) = ([0u8; 3], [0u8; 2], [0u8; 1]);
        reader.read_into(&mut a, 1).expect("bits");
        reader.read_into(&mut b, 3).expect("bits");
        reader.read_into(&mut c, 8).expect("bits");
        assert_eq!((a, b, c), ([1, 0, 1], [5, 7], [200]));
    }

    #[test]
    fn many_pushes_of_mixed_widths_round_trip() {
        let mut rng = SmallRng::seed_from_u64(9);
        let mut writer = BitWriter::new();
        let mut pushed = Vec::new();
        for _ in 0..200 {
            let width = rng.random_range(1..=8u8);
            let len = rng.random_range(0..40usize);
            let codes: Vec<u8> = (0..len).map(|_| rng.random_range(0..=((1u16 << width) - 1)) as u8).collect();
            writer.push_all(&codes, width);
            pushed.push((width, codes));
        }
        let total_bits: u64 = pushed.iter().map(|(width, codes)| *width as u64 * codes.len() as u64).sum();
        assert_eq!(writer.bit_len(), total_bits);
        let bytes = writer.finish();
        assert_eq!(bytes.len() as u64, bytes_for_bits(total_bits));
        let mut reader = BitReader::new(&bytes);
        for (width, codes) in pushed {
            let mut back = vec![0u8; codes.len()];
            reader.read_into(&mut back, width).expect("stream long enough");
            assert_eq!(back, codes, "width {width}");
        }
    }

    #[test]
    fn short_stream_is_reported() {
        let mut out = [0u8; 9];
        assert!(BitReader::new(&[0xff]).read_into(&mut out, 1).is_none());
    }
}
