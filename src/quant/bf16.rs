//! bfloat16 conversions (BF16 weights, and the BF16 activations llama.cpp's CPU path multiplies
//! them with: ggml-cpu's `vec_dot_type` for BF16 is BF16).

/// bf16 bits → f32: the top half of the f32's bits (exact).
#[inline(always)]
pub fn to_f32(h: u16) -> f32 {
    f32::from_bits((h as u32) << 16)
}

/// f32 → bf16 bits as ggml rounds (`ggml_compute_fp32_to_bf16`): to nearest, ties to even; a NaN
/// stays a NaN (quiet).
#[inline(always)]
pub fn from_f32(x: f32) -> u16 {
    let u = x.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u + (0x7fff + ((u >> 16) & 1))) >> 16) as u16
}

#[cfg(test)]
mod tests {
    #[test]
    fn conversions_match_half() {
        for h in 0..=u16::MAX {
            let (a, b) = (super::to_f32(h), half::bf16::from_bits(h).to_f32());
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{h:#06x}");
        }
        for bits in (0..u32::MAX).step_by(4093).chain([0x3f80_8000, 0x3f81_8000, 0x7f7f_ffff, 0xff80_0000]) {
            let x = f32::from_bits(bits);
            let (a, b) = (super::from_f32(x), half::bf16::from_f32(x).to_bits());
            assert!(a == b || (x.is_nan() && super::to_f32(a).is_nan()), "{x:e} ({bits:#x}): {a:#06x} vs {b:#06x}");
        }
    }
}
