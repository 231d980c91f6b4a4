//! IEEE half-precision conversions (weights' scales and the KV cache).

/// f16 bits → f32, exact for every value (normals, subnormals, zero, inf, NaN). Branch-free so
/// loops over it vectorize.
#[inline(always)]
pub fn to_f32(h: u16) -> f32 {
    let sign = ((h as u32) & 0x8000) << 16;
    let em = (h as u32) & 0x7fff;
    // Placing exponent+mantissa 13 bits up and multiplying by 2^112 rebiases the exponent
    // (15 → 127) and normalises subnormals in one exact multiplication.
    let finite = (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits();
    let inf_nan = 0x7f80_0000 | (em << 13);
    f32::from_bits(if em >= 0x7c00 { inf_nan } else { finite } | sign)
}

/// f32 → f16 bits, rounding to nearest even (as F16C and ggml do; NaN stays NaN, quieted). The
/// value is rounded by `round`, then its bits are repacked. Branch-free so loops over it vectorize
/// (the KV cache's writes).
#[inline(always)]
pub fn from_f32(x: f32) -> u16 {
    let r = round(x).to_bits();
    let a = r & 0x7fff_ffff;
    // below 2^-14 the rounded value is a multiple of 2^-24 under 2^10 of them: exact as an integer
    let sub = (f32::from_bits(a) * 16_777_216.0) as u32;
    // a normal: exponent 127 → 15 bias, mantissa's top 10 bits (its low 13 are zero after `round`)
    let normal = a.wrapping_sub(0x3800_0000) >> 13;
    let inf_nan = 0x7c00 | ((a >> 13) & 0x3ff);
    let h = if a < 0x3880_0000 { sub } else if a >= 0x7f80_0000 { inf_nan } else { normal };
    (h | ((r >> 16) & 0x8000)) as u16
}

#[inline(always)]
pub fn le(b: [u8; 2]) -> f32 {
    to_f32(u16::from_le_bytes(b))
}

#[inline(always)]
pub fn to_le(x: f32) -> [u8; 2] {
    from_f32(x).to_le_bytes()
}

/// Rounds an f32 to the nearest f16 value (ties to even), kept as f32: the same value as
/// `to_f32(from_f32(x))`, without a conversion. Branch-free so loops over it vectorize.
#[inline(always)]
pub fn round(x: f32) -> f32 {
    let b = x.to_bits();
    let sign = b & 0x8000_0000;
    let a = b & 0x7fff_ffff;
    // f16 normal range: round the mantissa to 10 bits (ties to even); a carry moves the exponent.
    let normal = (a + 0x0fff + ((a >> 13) & 1)) & !0x1fff;
    // f16 subnormal range (|x| < 2^-14): round to a multiple of 2^-24 with an exact float add,
    // 2^-24 being the spacing of floats near 0.5.
    let sub = ((f32::from_bits(a) + 0.5) - 0.5).to_bits();
    let r = if a < 0x3880_0000 { sub } else { normal };
    // past f16's largest finite value (65504) → inf; NaN stays NaN.
    let r = if r > 0x477f_e000 { 0x7f80_0000 } else { r };
    let r = if a > 0x7f80_0000 { a | 0x0040_0000 } else { r };
    f32::from_bits(r | sign)
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

    #[test]
    fn from_f32_matches_half() {
        let mut xs: Vec<f32> = vec![0.0, -0.0, 65504.0, 65519.99, 65520.0, -1e9, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 5.96e-8, 2.98e-8, 6.1e-5];
        xs.extend([0x7fc0_0001u32, 0xffa0_0000, 0x7f80_0001, 0x3380_0000, 0x337f_ffff, 0x3880_0000, 0x387f_ffff, 0x477f_efff, 0x477f_f000].map(f32::from_bits));
        for bits in (0..u32::MAX).step_by(4093) {
            xs.push(f32::from_bits(bits));
        }
        for x in xs {
            let (a, b) = (super::from_f32(x), half::f16::from_f32(x).to_bits());
            assert_eq!(a, b, "{x:e} ({:#x}): {a:#06x} vs {b:#06x}", x.to_bits());
        }
    }

    #[test]
    fn round_matches_a_round_trip_through_f16() {
        // every f32 exponent, many mantissas, both signs, plus the edges
        let mut xs: Vec<f32> = vec![0.0, -0.0, 65504.0, 65519.99, 65520.0, 1e9, f32::INFINITY, f32::NAN, 5.96e-8, 2.98e-8, 6.1e-5];
        for bits in (0..u32::MAX).step_by(4093) {
            xs.push(f32::from_bits(bits));
        }
        for x in xs {
            let a = super::round(x);
            let b = half::f16::from_f32(x).to_f32();
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{x:e} ({:#x}): {a:e} vs {b:e}", x.to_bits());
        }
    }
}
