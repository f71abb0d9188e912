//! Fine-tuning with transformers' Trainer semantics: schedules, metrics, and the loop.

pub mod metrics;
pub mod schedule;
