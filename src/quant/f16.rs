//! IEEE half-precision conversions (weights' scales and the KV cache).

/// f16 bits → f32, exact for every value (normals, subnormals, zero, inf, NaN).
#[inline(always)]
pub fn to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let em = (h as u32) & 0x7fff;
    if em >= 0x7c00 {
        // inf / NaN: keep the payload
        return f32::from_bits(sign | 0x7f80_0000 | ((em & 0x03ff) << 13));
    }
    // Placing exponent+mantissa 13 bits up and multiplying by 2^112 rebiases the exponent
    // (15 → 127) and normalises subnormals in one exact multiplication.
    let v = f32::from_bits(em << 13) * f32::from_bits(0x7780_0000);
    f32::from_bits(v.to_bits() | sign)
}

/// f32 → f16 bits, rounding to nearest even (as F16C and ggml do).
#[inline]
pub fn from_f32(x: f32) -> u16 {
    half::f16::from_f32(x).to_bits()
}

#[inline(always)]
pub fn le(b: [u8; 2]) -> f32 {
    to_f32(u16::from_le_bytes(b))
}

#[inline(always)]
pub fn to_le(x: f32) -> [u8; 2] {
    from_f32(x).to_le_bytes()
}

/// Rounds an f32 to the nearest f16 value (kept as f32).
#[inline(always)]
pub fn round(x: f32) -> f32 {
    to_f32(from_f32(x))
}

#[cfg(test)]
mod tests {
    #[test]
    fn matches_half_for_every_bit_pattern() {
        for h in 0..=u16::MAX {
            let a = super::to_f32(h);
            let b = half::f16::from_bits(h).to_f32();
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{h:#06x}: {a} vs {b}");
        }
    }
}
