//! Learning-rate schedules with transformers' formulas (`optimization.py`, the
//! `_get_*_schedule_with_warmup_lr_lambda` functions): the multiplier of the base learning rate
//! after `step` scheduler steps, as torch's LambdaLR applies it.

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    Linear,
    Cosine,
    Constant,
    ConstantWithWarmup,
}

impl ScheduleKind {
    /// Each schedule with its `lr_scheduler_type` name.
    pub const ALL: [(&'static str, ScheduleKind); 4] = [
        ("linear", ScheduleKind::Linear),
        ("cosine", ScheduleKind::Cosine),
        ("constant", ScheduleKind::Constant),
        ("constant_with_warmup", ScheduleKind::ConstantWithWarmup),
    ];

    pub fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(name, _)| *name).collect()
    }

    pub fn parse(name: &str) -> Result<ScheduleKind> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, kind)| *kind).ok_or_else(|| {
            Error::value(format!(
                "lr_scheduler_type {name:?} is not supported; use {}",
                Self::names().join(", ")
            ))
        })
    }
}

/// The warmup of a run of `total_steps` updates: `warmup_steps` ≥ 1 is a number of steps, below
/// 1 a ratio of the run (transformers' `TrainingArguments.get_warmup_steps`).
pub fn warmup_steps(warmup_steps: f64, total_steps: u64) -> u64 {
    if warmup_steps >= 1.0 {
        warmup_steps as u64
    } else {
        (total_steps as f64 * warmup_steps).ceil() as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub kind: ScheduleKind,
    pub base_lr: f64,
    pub warmup_steps: u64,
    pub total_steps: u64,
}

impl Schedule {
    /// The multiplier after `step` scheduler steps (LambdaLR's lr_lambda(last_epoch)).
    pub fn factor(&self, step: u64) -> f64 {
        let (step, warmup, total) =
            (step as f64, self.warmup_steps as f64, self.total_steps as f64);
        let warming = step < warmup;
        let warmup_factor = step / warmup.max(1.0);
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::ConstantWithWarmup => {
                if warming {
                    warmup_factor
                } else {
                    1.0
                }
            }
            ScheduleKind::Linear => {
                if warming {
                    warmup_factor
                } else {
                    ((total - step) / (total - warmup).max(1.0)).max(0.0)
                }
            }
            ScheduleKind::Cosine => {
                if warming {
                    warmup_factor
                } else {
                    // num_cycles = 0.5: a half cosine from 1 down to 0.
                    let progress = (step - warmup) / (total - warmup).max(1.0);
                    (0.5 * (1.0 + (std::f64::consts::PI * 0.5 * 2.0 * progress).cos())).max(0.0)
                }
            }
        }
    }

    /// The learning rate used by the optimizer step that follows `step` scheduler steps.
    pub fn lr(&self, step: u64) -> f64 {
        self.base_lr * self.factor(step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(kind: ScheduleKind) -> Schedule {
        Schedule { kind, base_lr: 1.0, warmup_steps: 2, total_steps: 10 }
    }

    #[test]
    fn linear_warms_up_then_decays_to_zero() {
        let s = schedule(ScheduleKind::Linear);
        let got: Vec<f64> = (0..=11).map(|i| s.factor(i)).collect();
        let want = [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0, 0.0];
        assert_eq!(got, want);
    }

    #[test]
    fn cosine_is_half_at_the_middle() {
        let s = schedule(ScheduleKind::Cosine);
        assert_eq!(s.factor(1), 0.5);
        assert!((s.factor(2) - 1.0).abs() < 1e-12);
        assert!((s.factor(6) - 0.5).abs() < 1e-12);
        assert!(s.factor(10).abs() < 1e-12);
    }

    #[test]
    fn constants() {
        assert_eq!(schedule(ScheduleKind::Constant).factor(0), 1.0);
        let s = schedule(ScheduleKind::ConstantWithWarmup);
        assert_eq!((s.factor(0), s.factor(1), s.factor(2), s.factor(9)), (0.0, 0.5, 1.0, 1.0));
    }

    #[test]
    fn no_warmup_starts_at_the_full_rate() {
        let s =
            Schedule { kind: ScheduleKind::Linear, base_lr: 2e-5, warmup_steps: 0, total_steps: 4 };
        assert_eq!(s.lr(0), 2e-5);
        assert_eq!(s.lr(2), 1e-5);
    }
}
