//! torch.nn.utils.clip_grad_norm_ over gradients in CPU memory, read once for the norm and
//! written once where they are scaled. libtorch computes a bfloat16 gradient's norm in float32
//! by casting the whole gradient first (a copy of every half weight's gradient at every bfloat16
//! step), and the kept word buffer's norm over its whole table or over a gathered copy of the
//! rows a step wrote; here the kernel reads the bfloat16 values and the written rows where they
//! lie. The squares are summed in float64 in a fixed order, whatever the number of threads, so
//! the norm is the exact one rounded to float32 (libtorch's float32 sums are within a few units
//! in the last place of it).

use crate::error::{Error, Result};
use crate::models::probs::{Bf16, Elem};
use crate::ops::{self, Clipped};
use crate::simd::{Kernel, Target};
use tch::{Device, Kind, Tensor};

/// The values of one gradient, or of one row of the kept word buffer.
#[derive(Clone, Copy)]
enum Values {
    F32(*mut f32),
    Bf16(*mut Bf16),
}

struct Piece {
    values: Values,
    len: usize,
    /// Whether clipping scales these values (the update scales the half weights' gradients).
    scale: bool,
}

/// The elements one kernel call reads: a part of one piece.
const CHUNK: usize = 16 * 1024;

/// Gradients to clip, as the kernels read them.
pub(crate) struct Grads {
    pieces: Vec<Piece>,
    /// (piece, start, end) of each kernel call, in the order their sums are added.
    units: Vec<(usize, usize, usize)>,
}

// SAFETY: the kernels' threads read the pieces and write disjoint parts of them.
unsafe impl Sync for Grads {}

impl Grads {
    /// `grads` with their `scale` flags, `words` (the kept word buffer and the rows a step wrote
    /// into it, sorted and distinct) standing for the gradient that is that buffer. None where a
    /// gradient is not a contiguous float32 or bfloat16 tensor in CPU memory: libtorch's
    /// `ops::clip_grad_norm` clips those.
    pub fn new(
        grads: &[Tensor],
        scale: &[bool],
        words: Option<(&Tensor, &[i64])>,
    ) -> Result<Option<Grads>> {
        assert_eq!(grads.len(), scale.len(), "clip: one flag per gradient");
        let mut pieces = Vec::new();
        for (g, &scale) in grads.iter().zip(scale) {
            if g.device() != Device::Cpu || !g.is_contiguous() {
                return Ok(None);
            }
            let values = match g.kind() {
                Kind::Float => Values::F32(g.data_ptr().cast()),
                Kind::BFloat16 => Values::Bf16(g.data_ptr().cast()),
                _ => return Ok(None),
            };
            let len = g.numel();
            match words {
                Some((buffer, rows)) if g.is_set_to(buffer) => {
                    let (count, width) = match g.size()[..] {
                        [count, width] => (count, width as usize),
                        _ => {
                            return Err(Error::Other(format!(
                                "the word buffer is not a table: {:?}",
                                g.size()
                            )))
                        }
                    };
                    // Distinct rows: the threads scale each row's part alone.
                    if rows.windows(2).any(|w| w[0] >= w[1]) {
                        return Err(Error::Other(
                            "the word buffer's rows must be sorted and distinct".into(),
                        ));
                    }
                    for &row in rows {
                        if !(0..count).contains(&row) {
                            return Err(Error::Other(format!(
                                "row {row} is outside the word buffer's {count} rows"
                            )));
                        }
                        let at = row as usize * width;
                        // SAFETY: the row lies inside the buffer.
                        let values = unsafe {
                            match values {
                                Values::F32(p) => Values::F32(p.add(at)),
                                Values::Bf16(p) => Values::Bf16(p.add(at)),
                            }
                        };
                        pieces.push(Piece { values, len: width, scale });
                    }
                }
                _ => pieces.push(Piece { values, len, scale }),
            }
        }
        let units = (pieces.iter().enumerate())
            .flat_map(|(i, p)| (0..p.len).step_by(CHUNK).map(move |s| (i, s, p.len.min(s + CHUNK))))
            .collect();
        Ok(Some(Grads { pieces, units }))
    }

    /// Their total 2-norm before clipping and the coefficient (`ops::clip_coefficient`) that
    /// multiplies the flagged ones, in place.
    pub fn clip(&self, max_norm: f64) -> Clipped {
        let norm = self.sum_of_squares().sqrt() as f32;
        let coefficient = ops::clip_coefficient(norm, max_norm);
        if coefficient != 1.0 {
            self.scale(coefficient);
        }
        Clipped { norm: f64::from(norm), coefficient: f64::from(coefficient) }
    }

    fn sum_of_squares(&self) -> f64 {
        let mut sums = vec![0.0f64; self.units.len()];
        let out = Out(sums.as_mut_ptr());
        let target = Target::detect();
        ops::parallel_for(self.units.len(), 1, |range| {
            for u in range {
                let (piece, start, end) = self.units[u];
                let p = &self.pieces[piece];
                // SAFETY: the unit lies inside its piece, and `u` is this thread's alone.
                let out = unsafe { &mut *out.at(u) };
                match p.values {
                    Values::F32(v) => {
                        target.run(Squares { values: unsafe { part(v, start, end) }, out })
                    }
                    Values::Bf16(v) => {
                        target.run(Squares { values: unsafe { part(v, start, end) }, out })
                    }
                }
            }
        });
        sums.iter().sum()
    }

    fn scale(&self, coefficient: f32) {
        let target = Target::detect();
        ops::parallel_for(self.units.len(), 1, |range| {
            for u in range {
                let (piece, start, end) = self.units[u];
                let p = &self.pieces[piece];
                if !p.scale {
                    continue;
                }
                // SAFETY: the unit lies inside its piece, and no other thread writes it.
                match p.values {
                    Values::F32(v) => {
                        target.run(Scale { values: unsafe { part(v, start, end) }, coefficient })
                    }
                    Values::Bf16(v) => {
                        target.run(Scale { values: unsafe { part(v, start, end) }, coefficient })
                    }
                }
            }
        });
    }
}

/// Where each unit's sum goes, for the kernels' threads.
#[derive(Clone, Copy)]
struct Out(*mut f64);
// SAFETY: each thread writes the sums of its own units.
unsafe impl Sync for Out {}

impl Out {
    fn at(self, u: usize) -> *mut f64 {
        self.0.wrapping_add(u)
    }
}

/// Elements `start..end` of a piece's values.
///
/// # Safety
/// The range lies inside the piece, and no other thread writes it while the slice lives.
unsafe fn part<'a, T>(values: *mut T, start: usize, end: usize) -> &'a mut [T] {
    unsafe { std::slice::from_raw_parts_mut(values.add(start), end - start) }
}

/// The sum of the squares of `values`, in float64: 16 running sums, then the rest.
struct Squares<'a, T> {
    values: &'a [T],
    out: &'a mut f64,
}

impl<T: Elem> Kernel for Squares<'_, T> {
    #[inline(always)]
    fn run(self) {
        let mut sums = [0.0f64; 16];
        let chunks = self.values.chunks_exact(16);
        let rest = chunks.remainder();
        for chunk in chunks {
            for (sum, &x) in sums.iter_mut().zip(chunk) {
                let x = f64::from(x.load());
                *sum += x * x;
            }
        }
        let mut total: f64 = sums.iter().sum();
        for &x in rest {
            let x = f64::from(x.load());
            total += x * x;
        }
        *self.out = total;
    }
}

/// `values *= coefficient`, computed in float32 and rounded to the values' type, as libtorch's
/// multiply by a float32 scalar.
struct Scale<'a, T> {
    values: &'a mut [T],
    coefficient: f32,
}

impl<T: Elem> Kernel for Scale<'_, T> {
    #[inline(always)]
    fn run(self) {
        for x in self.values.iter_mut() {
            *x = T::store(x.load() * self.coefficient);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random(n: i64, kind: Kind) -> Tensor {
        (Tensor::randn([n], (Kind::Float, Device::Cpu)) * 0.01).to_kind(kind)
    }

    /// The norm in float64, rounded to float32.
    fn exact(grads: &[Tensor]) -> f32 {
        let squares: f64 = grads
            .iter()
            .map(|g| g.to_kind(Kind::Double).square().sum(Kind::Double).double_value(&[]))
            .sum();
        squares.sqrt() as f32
    }

    #[test]
    fn the_norm_is_the_exact_one_and_the_flagged_gradients_are_scaled_as_torch_scales_them() {
        tch::manual_seed(0);
        // Longer than a kernel call, with tails of every kind; bfloat16 ones among them.
        let kinds = [Kind::Float, Kind::BFloat16, Kind::Float, Kind::BFloat16, Kind::Float];
        let sizes = [3 * CHUNK as i64 + 5, 384 * 37, 7, 1, 16];
        let grads: Vec<Tensor> = sizes.iter().zip(kinds).map(|(&n, k)| random(n, k)).collect();
        let before: Vec<Tensor> = grads.iter().map(Tensor::copy).collect();
        let scale = [true, true, false, true, true];
        let theirs =
            ops::clip_grad_norm(&before.iter().map(Tensor::copy).collect::<Vec<_>>(), &scale, 0.01)
                .unwrap();
        let clipped = Grads::new(&grads, &scale, None).unwrap().unwrap().clip(0.01);
        assert_eq!(clipped.norm as f32, exact(&before));
        assert!((clipped.norm - theirs.norm).abs() <= 1e-6 * theirs.norm, "{clipped:?} {theirs:?}");
        assert!(clipped.coefficient < 1.0);
        assert_eq!(clipped.coefficient as f32, ops::clip_coefficient(clipped.norm as f32, 0.01));
        for ((g, b), s) in grads.iter().zip(&before).zip(scale) {
            // libtorch's multiply by the float32 coefficient, in the gradient's type.
            let expected = if s { b * Tensor::from(clipped.coefficient as f32) } else { b.copy() };
            assert_eq!(g.kind(), b.kind());
            assert!(g.equal(&expected), "{:?} {s}", g.size());
        }
        // Under the limit nothing changes.
        let small = [Tensor::from_slice(&[0.1f32, 0.2])];
        let clipped = Grads::new(&small, &[true], None).unwrap().unwrap().clip(1.0);
        assert_eq!(clipped.coefficient, 1.0);
        assert_eq!(Vec::<f32>::try_from(&small[0]).unwrap(), [0.1, 0.2]);
        assert_eq!(clipped.norm as f32, 0.05f32.sqrt());
    }

    #[test]
    fn the_word_buffer_counts_and_is_scaled_at_its_written_rows() {
        tch::manual_seed(1);
        let buffer = Tensor::zeros([50, 24], (Kind::Float, Device::Cpu));
        let rows = [0i64, 3, 4, 17, 49];
        for &r in &rows {
            buffer.get(r).copy_(&random(24, Kind::Float));
        }
        let other = random(100, Kind::Float);
        let dense = [buffer.copy(), other.copy()];
        let expected = Grads::new(&dense, &[true, true], None).unwrap().unwrap().clip(0.001);
        let grads = [buffer.shallow_clone(), other.shallow_clone()];
        let clipped =
            Grads::new(&grads, &[true, true], Some((&buffer, &rows))).unwrap().unwrap().clip(0.001);
        assert_eq!(clipped, expected);
        assert!(buffer.equal(&dense[0]) && other.equal(&dense[1]));

        let error = Grads::new(&grads, &[true, true], Some((&buffer, &[3, 3]))).err().unwrap();
        assert!(error.to_string().contains("sorted and distinct"), "{error}");
        let error = Grads::new(&grads, &[true, true], Some((&buffer, &[2, 50]))).err().unwrap();
        assert!(
            error.to_string().contains("row 50 is outside the word buffer's 50 rows"),
            "{error}"
        );
    }

    #[test]
    fn other_gradients_are_left_to_libtorch() {
        let strided = Tensor::zeros([4, 6], (Kind::Float, Device::Cpu)).transpose(0, 1);
        assert!(Grads::new(&[strided], &[true], None).unwrap().is_none());
        let half = Tensor::zeros([4], (Kind::Half, Device::Cpu));
        assert!(Grads::new(&[half], &[true], None).unwrap().is_none());
    }

    #[test]
    fn the_coefficient_is_torchs() {
        tch::manual_seed(2);
        let norms = Tensor::rand([4096], (Kind::Float, Device::Cpu)) * 10.0;
        for max_norm in [1.0, 0.3, 5.0] {
            // clip_grad_norm_: `max_norm / (total_norm + 1e-6)`, then clamp(max=1).
            let theirs = ((&norms + 1e-6).reciprocal() * max_norm).clamp_max(1.0);
            let ours: Vec<f32> = Vec::<f32>::try_from(&norms)
                .unwrap()
                .into_iter()
                .map(|n| ops::clip_coefficient(n, max_norm))
                .collect();
            assert_eq!(ours, Vec::<f32>::try_from(&theirs).unwrap(), "{max_norm}");
        }
        assert!(ops::clip_coefficient(f32::NAN, 1.0).is_nan());
        assert_eq!(ops::clip_coefficient(f32::INFINITY, 1.0), 0.0);
        assert_eq!(ops::clip_coefficient(f32::INFINITY, f64::INFINITY), 1.0);
    }
}
