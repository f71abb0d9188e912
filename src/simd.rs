//! ferrotune's kernels are written once, in portable Rust that the compiler vectorizes, and
//! compiled here for each set of x86-64 vector instructions they may run on: AVX-512, AVX2 with
//! FMA, or none (the portable build). `Target::detect` picks the widest the CPU has, at run
//! time. Rust never fuses a multiply and an add by itself, so the results are the same bits on
//! every target: only the explicit `mul_add`s are fused, everywhere.

/// Code that `Target::run` compiles for each target. Its `run` must be `#[inline(always)]`, so
/// that it is compiled inside the target's function, with its instructions.
pub(crate) trait Kernel {
    fn run(self);
}

/// The vector instructions a kernel runs with; made only by `detect`, so that it names
/// instructions this CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Target(Level);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// AVX-512 F, DQ and BW (16 floats, 64-bit integer multiplies), with AVX2 and FMA.
    Avx512,
    /// AVX2 and FMA (8 floats).
    Avx2,
    Portable,
}

impl Target {
    /// The widest target this CPU runs.
    pub fn detect() -> Target {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx2") && has!("fma") {
                if has!("avx512f") && has!("avx512dq") && has!("avx512bw") {
                    return Target(Level::Avx512);
                }
                return Target(Level::Avx2);
            }
        }
        Target(Level::Portable)
    }

    /// Runs `kernel` compiled for this target.
    #[inline(always)]
    pub fn run<K: Kernel>(self, kernel: K) {
        match self.0 {
            // SAFETY: `detect` found these instructions on this CPU.
            #[cfg(target_arch = "x86_64")]
            Level::Avx512 => unsafe { avx512(kernel) },
            #[cfg(target_arch = "x86_64")]
            Level::Avx2 => unsafe { avx2(kernel) },
            _ => kernel.run(),
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512bw,avx2,fma")]
unsafe fn avx512<K: Kernel>(kernel: K) {
    kernel.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2<K: Kernel>(kernel: K) {
    kernel.run()
}
