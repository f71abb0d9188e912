//! ferrotune's Rust core: fine-tuning pretrained transformers for text classification on
//! libtorch. Everything here is plain Rust; `py` is the only module that touches pyo3.

pub mod error;
pub mod files;
pub mod heap;
pub mod inference;
pub mod models;
pub mod ops;
pub mod parallel;
pub mod pipelines;
mod py;
pub mod rows;
mod simd;
pub mod tokenizer;
pub mod train;

pub use error::{Error, Result};

/// The torch version (`torch.__version__`) whose libtorch this build links against.
pub const TORCH_VERSION: &str = env!("FERROTUNE_TORCH_VERSION");
