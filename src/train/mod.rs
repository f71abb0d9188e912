//! Fine-tuning with transformers' Trainer semantics: schedules, metrics, and the loop.

mod adamw;
mod clip;
pub mod config;
pub mod data;
pub mod masking;
pub mod metrics;
pub mod optim;
pub mod plan;
pub mod run;
pub mod scaler;
pub mod schedule;
pub mod seqeval;
