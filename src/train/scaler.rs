//! Loss scaling for float16 training: torch.amp.GradScaler (torch/amp/grad_scaler.py), which
//! transformers' Trainer uses through accelerate with fp16=True on a GPU. The loss is multiplied
//! by the scale before backward so that small gradients survive in float16; the gradients are
//! divided by it before clipping; an update whose gradients hold an inf or a NaN is skipped and
//! halves the scale, and 2000 updates in a row without one double it.

use crate::error::{Error, Result};
use crate::ops;
use tch::{Device, Kind, Tensor};

pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_FACTOR: f64 = 2.0;
pub const BACKOFF_FACTOR: f64 = 0.5;
pub const GROWTH_INTERVAL: i64 = 2000;

pub struct LossScaler {
    /// float32 scalar, on the device, as GradScaler's `_scale`.
    scale: Tensor,
    /// int32 scalar: updates in a row without an inf.
    growth_tracker: Tensor,
    /// float32 scalar: 1 when the last unscaled gradients held an inf or a NaN.
    found_inf: Tensor,
}

impl LossScaler {
    pub fn new(device: Device) -> LossScaler {
        LossScaler {
            scale: Tensor::full([], INIT_SCALE, (Kind::Float, device)),
            growth_tracker: Tensor::zeros([], (Kind::Int, device)),
            found_inf: Tensor::zeros([], (Kind::Float, device)),
        }
    }

    /// `loss * scale`, to call backward on.
    pub fn scale(&self, loss: &Tensor) -> Tensor {
        loss * &self.scale
    }

    /// Divides `grads` by the scale in place (`GradScaler.unscale_`) and records whether any
    /// holds an inf or a NaN.
    pub fn unscale(&mut self, grads: &[Tensor]) -> Result<()> {
        let _ = self.found_inf.zero_();
        // As GradScaler: the reciprocal in float64, then float32.
        let inv_scale = self.scale.to_kind(Kind::Double).reciprocal().to_kind(Kind::Float);
        ops::unscale(grads, &self.found_inf, &inv_scale)
    }

    /// Whether the gradients last unscaled held an inf or a NaN: the update is skipped.
    pub fn found_inf(&self) -> bool {
        self.found_inf.double_value(&[]) > 0.0
    }

    /// `GradScaler.update()`: backs off after an inf, grows after GROWTH_INTERVAL clean updates.
    pub fn update(&mut self) -> Result<()> {
        let _ = self
            .scale
            .f_internal_amp_update_scale_(
                &self.growth_tracker,
                &self.found_inf,
                GROWTH_FACTOR,
                BACKOFF_FACTOR,
                GROWTH_INTERVAL,
            )
            .map_err(Error::from)?;
        Ok(())
    }

    /// (scale, growth tracker), as GradScaler.state_dict() has them.
    pub fn state(&self) -> (f64, i64) {
        (self.scale.double_value(&[]), self.growth_tracker.int64_value(&[]))
    }

    pub fn load_state(&mut self, scale: f64, growth_tracker: i64) -> Result<()> {
        if !(scale.is_finite() && scale > 0.0) || growth_tracker < 0 {
            return Err(Error::value(format!(
                "a loss scale must be positive and finite with a non-negative growth tracker, got \
                 scale {scale} and growth tracker {growth_tracker}"
            )));
        }
        let _ = self.scale.fill_(scale);
        let _ = self.growth_tracker.fill_(growth_tracker);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grads(values: &[&[f32]]) -> Vec<Tensor> {
        values.iter().map(|v| Tensor::from_slice(v)).collect()
    }

    #[test]
    fn unscaling_divides_and_detects_non_finite_gradients() {
        let mut scaler = LossScaler::new(Device::Cpu);
        let g = grads(&[&[65536.0, -131072.0], &[32768.0]]);
        scaler.unscale(&g).unwrap();
        assert_eq!(Vec::<f32>::try_from(&g[0]).unwrap(), vec![1.0, -2.0]);
        assert_eq!(Vec::<f32>::try_from(&g[1]).unwrap(), vec![0.5]);
        assert!(!scaler.found_inf());
        scaler.unscale(&grads(&[&[1.0], &[f32::NAN]])).unwrap();
        assert!(scaler.found_inf());
    }

    #[test]
    fn the_scale_backs_off_after_an_inf_and_grows_after_the_interval() {
        let mut scaler = LossScaler::new(Device::Cpu);
        scaler.unscale(&grads(&[&[f32::INFINITY]])).unwrap();
        scaler.update().unwrap();
        assert_eq!(scaler.state(), (32768.0, 0));
        scaler.load_state(1024.0, GROWTH_INTERVAL - 1).unwrap();
        scaler.unscale(&grads(&[&[1.0]])).unwrap();
        scaler.update().unwrap();
        assert_eq!(scaler.state(), (2048.0, 0));
        scaler.unscale(&grads(&[&[1.0]])).unwrap();
        scaler.update().unwrap();
        assert_eq!(scaler.state(), (2048.0, 1));
        assert!(scaler.load_state(f64::NAN, 0).is_err());
    }

    #[test]
    fn the_loss_is_multiplied_by_the_scale() {
        let scaler = LossScaler::new(Device::Cpu);
        let scaled = scaler.scale(&Tensor::from(0.5f32));
        assert_eq!(scaled.double_value(&[]), 32768.0);
    }
}
