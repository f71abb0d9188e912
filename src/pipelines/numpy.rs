//! The float32 arithmetic of numpy that transformers' token-classification post-processing runs
//! (`TokenClassificationPipeline.postprocess`: `np.exp`, `np.sum`, `np.nanmean`, `argmax`),
//! written out so that the scores are numpy's to the bit.

/// numpy's `exp` of a float32 on x86-64 (`simd_exp_FLOAT` in numpy's
/// `_core/src/umath/loops_exponent_log.dispatch.c.src`, the AVX2/AVX512F kernel every x86-64 CPU
/// with AVX2 runs): Cody-Waite range reduction `r = x - k ln 2`, `exp(r)` as a rational
/// function P5/Q2, then `2^k`. It differs from a correctly rounded `expf` in about a third of
/// the inputs (by up to 2.5 ulp), so the scores need this one. The constants are numpy's
/// literals as written there (rounded to float32 by the compiler, as by numpy's).
#[allow(clippy::excessive_precision)]
pub fn exp(x: f32) -> f32 {
    // npy_math.h and npy_simd_data.h.
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const RINT_MAGIC: f32 = 12_582_912.0; // 0x1.8p23: adding and removing it rounds to an integer
    const LN2_HIGH: f32 = -6.931_457_5e-1;
    const LN2_LOW: f32 = -1.428_606_8e-6;
    const P: [f32; 6] = [
        9.999_999_999_980_871e-1,
        7.257_664_613_233_124e-1,
        2.473_615_434_895_521e-1,
        5.114_512_081_637_298e-2,
        6.757_896_990_527_505e-3,
        5.082_762_527_590_694e-4,
    ];
    const Q: [f32; 3] = [1.0, -2.742_335_390_411_667_5e-1, 2.159_509_375_685_83e-2];
    const XMAX: f32 = 88.722_839_355_468_75;
    const XMIN: f32 = -103.972_084_045_410_156_25;
    if x.is_nan() {
        return f32::NAN;
    }
    if x >= XMAX {
        return f32::INFINITY;
    }
    if x <= XMIN {
        return 0.0;
    }
    let k = (x * LOG2E + RINT_MAGIC) - RINT_MAGIC;
    let r = k.mul_add(LN2_HIGH, x);
    let r = k.mul_add(LN2_LOW, r);
    let r = k.mul_add(0.0, r); // the kernel's third reduction step, with c3 = 0
    let num = P[5].mul_add(r, P[4]).mul_add(r, P[3]).mul_add(r, P[2]).mul_add(r, P[1]);
    let num = num.mul_add(r, P[0]);
    let den = Q[2].mul_add(r, Q[1]).mul_add(r, Q[0]);
    scale(num / den, k)
}

/// `poly * 2^k` as the AVX2 kernel's `fma_scalef_ps` computes it: by adding `k` to the exponent
/// bits, and, where the result is subnormal (`k <= -125`), by a division that rounds once.
fn scale(poly: f32, k: f32) -> f32 {
    let add_exponent = |p: f32, k: i32| f32::from_bits(p.to_bits().wrapping_add((k << 23) as u32));
    if k <= -125.0 {
        let shift = (-(k + 125.0)) as u32;
        add_exponent(poly, -125) / (1u32 << shift) as f32
    } else {
        add_exponent(poly, k as i32)
    }
}

/// `np.sum` of a contiguous float32 row: numpy's pairwise summation (`pairwise_sum` in
/// `loops_utils.h.src`): blocks of up to 128 summed in 8 interleaved accumulators, larger
/// rows split in halves.
pub fn sum(values: &[f32]) -> f32 {
    let n = values.len();
    if n < 8 {
        return values.iter().fold(0.0, |acc, &v| acc + v);
    }
    if n <= 128 {
        let mut r: [f32; 8] = values[..8].try_into().expect("8 values");
        let full = n - n % 8;
        for block in values[8..full].chunks_exact(8) {
            for (acc, &v) in r.iter_mut().zip(block) {
                *acc += v;
            }
        }
        let mut total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &values[full..] {
            total += v;
        }
        return total;
    }
    let half = n / 2;
    let half = half - half % 8;
    sum(&values[..half]) + sum(&values[half..])
}

/// transformers' softmax of one token's logits, in numpy float32: `exp(x - max) / sum`.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, |m, v| {
        if v.is_nan() || m.is_nan() {
            f32::NAN
        } else {
            m.max(v)
        }
    });
    let shifted: Vec<f32> = logits.iter().map(|&v| exp(v - max)).collect();
    let total = sum(&shifted);
    shifted.iter().map(|&v| v / total).collect()
}

/// `np.argmax`: the first largest value (a NaN counts as the largest).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if values[best].is_nan() {
            break;
        }
        if v.is_nan() || v > values[best] {
            best = i;
        }
    }
    best
}

/// `np.nanmean` of a float32 row: the sum of the values that are not NaN (zeros in their
/// place, summed pairwise) over their count; NaN when all are.
pub fn nanmean(values: &[f32]) -> f32 {
    let kept: Vec<f32> = values.iter().map(|&v| if v.is_nan() { 0.0 } else { v }).collect();
    let count = values.iter().filter(|v| !v.is_nan()).count();
    sum(&kept) / count as f32
}

/// `np.nanmean(rows, axis=0)` of equally long float32 rows: column sums taken row after row.
pub fn nanmean_rows(rows: &[&[f32]]) -> Vec<f32> {
    let width = rows.first().map_or(0, |r| r.len());
    (0..width)
        .map(|j| {
            let mut total = 0.0f32;
            let mut count = 0usize;
            for row in rows {
                if !row[j].is_nan() {
                    total += row[j];
                    count += 1;
                }
            }
            total / count as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bit patterns of `np.exp(np.float32(x))` from numpy 2.4 on an AVX2 CPU.
    #[test]
    fn exp_is_numpys() {
        for (x, expected) in EXP_CASES {
            let got = exp(f32::from_bits(*x));
            assert_eq!(got.to_bits(), *expected, "exp({})", f32::from_bits(*x));
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(100.0), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    /// `np.float32` sums of 1..=n divided by 7 (exactly representable partial sums differ by
    /// order only for inexact values), checked against numpy's results.
    #[test]
    fn sum_is_pairwise() {
        for (n, expected) in SUM_CASES {
            let values: Vec<f32> = (1..=*n).map(|i| (i as f32) / 7.0).collect();
            assert_eq!(sum(&values).to_bits(), *expected, "n = {n}");
        }
    }

    #[test]
    fn argmax_takes_the_first_largest_and_nan() {
        assert_eq!(argmax(&[0.1, 0.5, 0.5, 0.2]), 1);
        assert_eq!(argmax(&[0.1, f32::NAN, 0.9]), 1);
        assert_eq!(argmax(&[0.3]), 0);
    }

    #[test]
    fn nanmean_skips_nan() {
        assert_eq!(nanmean(&[1.0, f32::NAN, 2.0]), 1.5);
        assert!(nanmean(&[f32::NAN]).is_nan());
        let rows: [&[f32]; 2] = [&[1.0, f32::NAN], &[3.0, 4.0]];
        assert_eq!(nanmean_rows(&rows), vec![2.0, 4.0]);
    }

    #[test]
    fn softmax_sums_to_one_and_keeps_order() {
        let p = softmax(&[1.0, 2.0, 3.0]);
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(p[0] < p[1] && p[1] < p[2]);
    }

    // (input bits, numpy's output bits), generated with
    // `x = np.random.RandomState(0).uniform(-110, 90, 40).astype(np.float32); np.exp(x)` plus
    // values near 0 and near the subnormal range.
    include!("numpy_cases.rs");
}
