//! The labels of language modeling, as transformers' `DataCollatorForLanguageModeling`
//! (data/data_collator.py, `torch_call` and `torch_mask_tokens`) makes them: with `mlm`, a random
//! 15% of the tokens that are neither special nor padding become targets, 80% of those are
//! replaced by the mask token, 10% by a random token and 10% are left as they are; the other
//! labels are -100. The draws are the same torch operations in the same order on torch's default
//! generator, so that under `torch.manual_seed` the masks are transformers'.

use crate::error::{Error, Result};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

/// The label the loss ignores.
pub const IGNORED: i64 = -100;

/// `DataCollatorForLanguageModeling`'s settings, with what it reads from its tokenizer.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LanguageModeling {
    /// Masked language modeling; false: the labels are the inputs with the padding ignored.
    pub mlm: bool,
    pub mlm_probability: f64,
    pub mask_replace_prob: f64,
    pub random_replace_prob: f64,
    /// The tokenizer's mask token id (needed with `mlm`).
    pub mask_token_id: Option<i64>,
    /// `len(tokenizer)`: random replacements are drawn from [0, vocab_size).
    pub vocab_size: i64,
    /// `tokenizer.all_special_ids`: tokens never masked where the data has no
    /// `special_tokens_mask`.
    pub special_ids: Vec<i64>,
    /// The tokenizer's pad id: without `mlm`, labels of padding are -100.
    pub pad_token_id: Option<i64>,
}

impl LanguageModeling {
    /// `DataCollatorForLanguageModeling.__post_init__`'s checks, with its messages.
    pub fn check(&self) -> Result<()> {
        let unit = |p: f64| (0.0..=1.0).contains(&p);
        if self.mlm {
            if self.mask_token_id.is_none() {
                return Err(Error::value(
                    "This tokenizer does not have a mask token which is necessary for masked \
                     language modeling. You should pass `mlm=False` to train on causal language \
                     modeling instead.",
                ));
            }
            if !unit(self.mlm_probability) {
                return Err(Error::value(format!(
                    "mlm_probability should be between 0 and 1, got {}",
                    self.mlm_probability
                )));
            }
        }
        if self.mask_replace_prob + self.random_replace_prob > 1.0 {
            return Err(Error::value(format!(
                "The sum of mask_replace_prob and random_replace_prob should not exceed 1, got \
                 {} + {}",
                self.mask_replace_prob, self.random_replace_prob
            )));
        }
        for (name, p) in [
            ("mask_replace_prob", self.mask_replace_prob),
            ("random_replace_prob", self.random_replace_prob),
        ] {
            if !unit(p) {
                return Err(Error::value(format!("{name} should be between 0 and 1, got {p}")));
            }
        }
        if self.mlm && self.vocab_size < 1 {
            return Err(Error::value(format!(
                "the tokenizer has {} tokens; random replacements need at least one",
                self.vocab_size
            )));
        }
        Ok(())
    }

    /// Whether each token of `input_ids` is special (`get_special_tokens_mask(...,
    /// already_has_special_tokens=True)`: membership in `all_special_ids`, padding included).
    pub fn special_tokens(&self, input_ids: &Tensor) -> Result<Tensor> {
        let special = Tensor::from_slice(&self.special_ids);
        Ok(Tensor::f_isin(input_ids, &special, false, false)?)
    }

    /// The model's inputs and labels for `input_ids` ([batch, length] int64, on the CPU), whose
    /// tokens `no_mask` (bool, same shape) are never masked.
    pub fn inputs_and_labels(
        &self,
        input_ids: &Tensor,
        no_mask: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        if !self.mlm {
            let labels = match self.pad_token_id {
                Some(pad) => input_ids.f_masked_fill(&input_ids.f_eq(pad)?, IGNORED)?,
                None => input_ids.copy(),
            };
            return Ok((input_ids.shallow_clone(), labels));
        }
        let shape = input_ids.size();
        let full = |p: f64| Tensor::f_full(shape.as_slice(), p, (Kind::Float, Device::Cpu));
        let draw =
            |p: f64| -> Result<Tensor> { Ok(full(p)?.f_bernoulli()?.f_to_kind(Kind::Bool)?) };
        let mut probability = full(self.mlm_probability)?;
        let _ = probability.f_masked_fill_(no_mask, 0.0)?;
        let masked = probability.f_bernoulli()?.f_to_kind(Kind::Bool)?;
        let labels = input_ids.f_masked_fill(&masked.f_logical_not()?, IGNORED)?;
        let replaced = draw(self.mask_replace_prob)?.f_logical_and(&masked)?;
        let mask_id = self.mask_token_id.ok_or_else(|| Error::value("no mask token"))?;
        let inputs = input_ids.f_masked_fill(&replaced, mask_id)?;
        if self.mask_replace_prob == 1.0 || self.random_replace_prob == 0.0 {
            return Ok((inputs, labels));
        }
        let scaled = self.random_replace_prob / (1.0 - self.mask_replace_prob);
        let random =
            draw(scaled)?.f_logical_and(&masked)?.f_logical_and(&replaced.f_logical_not()?)?;
        let words =
            Tensor::f_randint(self.vocab_size, shape.as_slice(), (Kind::Int64, Device::Cpu))?;
        Ok((words.f_where_self(&random, &inputs)?, labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LanguageModeling {
        LanguageModeling {
            mlm: true,
            mlm_probability: 0.15,
            mask_replace_prob: 0.8,
            random_replace_prob: 0.1,
            mask_token_id: Some(4),
            vocab_size: 50,
            special_ids: vec![0, 1, 2, 3, 4],
            pad_token_id: Some(0),
        }
    }

    #[test]
    fn specials_and_padding_are_never_masked_and_rates_are_as_asked() {
        let _generator = crate::ops::lock_default_generator();
        tch::manual_seed(0);
        let lm = settings();
        let ids = Tensor::randint_low(5, 50, [400, 64], (Kind::Int64, Device::Cpu));
        let _ = ids.narrow(1, 0, 1).fill_(2); // [CLS]
        let _ = ids.narrow(1, 60, 4).fill_(0); // padding
        let special = lm.special_tokens(&ids).unwrap();
        let (inputs, labels) = lm.inputs_and_labels(&ids, &special).unwrap();
        let targets = labels.ne(IGNORED);
        assert_eq!(targets.logical_and(&special).sum(Kind::Int64).int64_value(&[]), 0);
        let n = targets.sum(Kind::Int64).double_value(&[]);
        let candidates = special.logical_not().sum(Kind::Int64).double_value(&[]);
        assert!((n / candidates - 0.15).abs() < 0.01, "{}", n / candidates);
        // Labels hold the original token where they are targets.
        assert!(labels.masked_select(&targets).equal(&ids.masked_select(&targets)));
        let at_targets = inputs.masked_select(&targets);
        let masked = at_targets.eq(4).sum(Kind::Int64).double_value(&[]) / n;
        let kept = at_targets.eq_tensor(&ids.masked_select(&targets));
        let kept = kept.sum(Kind::Int64).double_value(&[]) / n;
        assert!((masked - 0.8).abs() < 0.02, "{masked}");
        // Random replacements may draw the original token (1 in 50).
        assert!((kept - (0.1 + 0.1 / 50.0)).abs() < 0.02, "{kept}");
        // Outside the targets the inputs are unchanged.
        let others = targets.logical_not();
        assert!(inputs.masked_select(&others).equal(&ids.masked_select(&others)));
    }

    #[test]
    fn without_mlm_labels_are_the_inputs_without_padding() {
        let lm = LanguageModeling { mlm: false, ..settings() };
        let ids = Tensor::from_slice(&[2i64, 7, 8, 3, 0, 0]).view([1, 6]);
        let (inputs, labels) =
            lm.inputs_and_labels(&ids, &lm.special_tokens(&ids).unwrap()).unwrap();
        assert!(inputs.equal(&ids));
        assert_eq!(Vec::<i64>::try_from(labels.view([-1])).unwrap(), [2, 7, 8, 3, -100, -100]);
    }

    #[test]
    fn bad_settings_are_named() {
        let e = |lm: LanguageModeling| lm.check().unwrap_err().to_string();
        assert!(e(LanguageModeling { mask_token_id: None, ..settings() })
            .starts_with("This tokenizer does not have a mask token"));
        assert_eq!(
            e(LanguageModeling { mlm_probability: 1.5, ..settings() }),
            "mlm_probability should be between 0 and 1, got 1.5"
        );
        assert_eq!(
            e(LanguageModeling { mask_replace_prob: 0.9, random_replace_prob: 0.2, ..settings() }),
            "The sum of mask_replace_prob and random_replace_prob should not exceed 1, got 0.9 + 0.2"
        );
        assert_eq!(
            e(LanguageModeling { random_replace_prob: -0.1, ..settings() }),
            "random_replace_prob should be between 0 and 1, got -0.1"
        );
        assert!(LanguageModeling { mask_token_id: None, mlm: false, ..settings() }.check().is_ok());
    }
}
