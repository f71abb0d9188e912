//! The pipelines that read a model's output token by token: token classification (`ner`) and
//! fill-mask. Texts are tokenized in parallel, run through the model in batches of similar
//! length without autograd, and each text's logits are turned into transformers' results.
//! (`inference::classify` serves the text-classification pipeline.)

pub mod fill_mask;
pub mod ner;
pub mod numpy;

use crate::error::{Error, Result};
use crate::inference::{Batching, TokenizerInputs};
use crate::models::{Model, Task};
use crate::ops::{Autocast, Half};
use crate::rows::Rows;
use crate::tokenizer::{Details, Request, Sequence, Tokenizer, Truncation};
use crate::train::data::{Collator, Examples, PadSettings};
use std::sync::Mutex;
use tch::{Kind, Tensor};

/// How the forward passes run: the pipeline's `batch_size` (None: grouped by length) and
/// bfloat16 autocast.
#[derive(Debug, Clone, Copy, Default)]
pub struct Run {
    pub batch_size: Option<usize>,
    pub bf16: bool,
}

/// Runs the model over `rows` without gradients, in batches of rows of similar length, and hands
/// each row's logits ([its length, outputs], on the model's device, padding left out) to `each`
/// with the row's index. `interrupt` runs before each batch; its error stops the loop.
pub fn forward_rows(
    model: &Mutex<Model>,
    mut rows: Rows,
    tokenizer: TokenizerInputs,
    run: Run,
    interrupt: &dyn Fn() -> Result<()>,
    each: &mut dyn FnMut(usize, Tensor) -> Result<()>,
) -> Result<()> {
    let model = model.lock().unwrap_or_else(|p| p.into_inner());
    let batching = Batching::for_pipeline(run.batch_size, model.device().is_cuda())?;
    let limit = model.max_sequence_length();
    if let Some(row) = (0..rows.len()).find(|&i| rows.row(i).len() as i64 > limit) {
        return Err(Error::value(format!(
            "input {row} has {} tokens, more than the model's maximum of {limit}; pass \
             truncation=True to truncate long inputs",
            rows.row(row).len()
        )));
    }
    if !(tokenizer.token_type_ids && model.config.type_vocab_size > 0) {
        rows.token_type_ids = None;
    }
    let lengths = rows.lengths();
    let examples = Examples { rows, labels: None, special_tokens_mask: None };
    let pad = PadSettings { pad_token_id: tokenizer.pad_token_id, ..PadSettings::default() };
    let collator = Collator::new(pad, model.config.pad_token_id)?;
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let _no_grad = tch::no_grad_guard();
    let _autocast =
        run.bf16.then(|| Autocast::enter(model.device(), Half::BFloat16)).transpose()?;
    let threads = crate::parallel::Threads::enter();
    for chunk in batching.split(&order, &lengths) {
        interrupt()?;
        threads.adapt();
        let batch = collator.collate(&examples, &chunk, model.device())?;
        let logits = model.forward(&batch.view(), None, false)?.logits;
        for (k, &i) in chunk.iter().enumerate() {
            each(i, logits.get(k as i64).narrow(0, 0, lengths[i] as i64))?;
        }
    }
    Ok(())
}

/// What the forward passes need of the tokenizer.
fn tokenizer_inputs(tokenizer: &Tokenizer) -> TokenizerInputs {
    TokenizerInputs {
        pad_token_id: tokenizer.pad_token_id().map(i64::from),
        token_type_ids: tokenizer.model_input_names().iter().any(|n| n == "token_type_ids"),
    }
}

/// A model of the right task for the pipeline, or an error naming both.
fn check_task(model: &Mutex<Model>, task: Task, pipeline: &str) -> Result<()> {
    let actual = model.lock().unwrap_or_else(|p| p.into_inner()).task;
    if actual != task {
        return Err(Error::value(format!(
            "the {pipeline} pipeline needs a {} model, got a {} model",
            task.name(),
            actual.name()
        )));
    }
    Ok(())
}

/// The texts as the token-classification pipeline tokenizes them (`truncation=True`: a no-op
/// without a `model_max_length`), with the offsets and special-tokens masks.
pub fn encode_for_tokens(tokenizer: &Tokenizer, texts: &[&str]) -> Result<(Rows, Details)> {
    let request = Request { truncation: Some(Truncation::LongestFirst), ..Request::default() };
    let sequences: Vec<Sequence> = texts.iter().map(|t| Sequence::Text(t)).collect();
    tokenizer.encode_details(&sequences, None, &tokenizer.plan(&request)?)
}

/// The entities of each text (`TokenClassificationPipeline`), and whether transformers would
/// have warned that the tokenizer has no real words.
pub fn token_classification(
    model: &Mutex<Model>,
    tokenizer: &Tokenizer,
    texts: &[&str],
    settings: &ner::Settings,
    run: Run,
    interrupt: &dyn Fn() -> Result<()>,
) -> Result<(Vec<Vec<ner::Entity>>, bool)> {
    check_task(model, Task::TokenClassification, "token-classification")?;
    let (rows, details) = encode_for_tokens(tokenizer, texts)?;
    let ids = row_ids(&rows);
    let mut logits: Vec<Vec<f32>> = vec![Vec::new(); rows.len()];
    forward_rows(model, rows, tokenizer_inputs(tokenizer), run, interrupt, &mut |i, row| {
        logits[i] = float_values(&row)?;
        Ok(())
    })?;
    entities_of(tokenizer, texts, &ids, &details, &logits, settings)
}

/// The values of a tensor of any kind and device as float32, in row-major order.
pub fn float_values(tensor: &Tensor) -> Result<Vec<f32>> {
    let flat = tensor.to_kind(Kind::Float).to_device(tch::Device::Cpu).contiguous().view([-1]);
    Ok(Vec::try_from(flat)?)
}

/// The ids of each row.
fn row_ids(rows: &Rows) -> Vec<Vec<u32>> {
    (0..rows.len())
        .map(|i| rows.input_ids[rows.row(i)].iter().map(|&id| id as u32).collect())
        .collect()
}

/// The entities of each encoded text from its tokens' logits ([tokens × labels] each), in
/// parallel; and whether a text's words came from the fallback heuristic.
pub fn entities_of(
    tokenizer: &Tokenizer,
    texts: &[&str],
    ids: &[Vec<u32>],
    details: &Details,
    logits: &[Vec<f32>],
    settings: &ner::Settings,
) -> Result<(Vec<Vec<ner::Entity>>, bool)> {
    let prefix = tokenizer.continuing_subword_prefix().is_some_and(|p| !p.is_empty());
    let id_to_token = |id: u32| tokenizer.id_to_token(id).unwrap_or_default();
    let tokens_to_string = |tokens: &[String]| tokenizer.convert_tokens_to_string(tokens);
    let vocab = ner::Vocabulary {
        word_aware: prefix,
        unk_token_id: tokenizer.special_token_id("unk_token"),
        id_to_token: &id_to_token,
        tokens_to_string: &tokens_to_string,
    };
    let rows: Vec<usize> = (0..texts.len()).collect();
    let results = crate::parallel::map(&rows, |&i| {
        let encoded = ner::Encoded {
            text: texts[i],
            ids: &ids[i],
            offsets: &details.offsets[i],
            special: &details.special_tokens_mask[i],
        };
        ner::entities(&encoded, &logits[i], settings, &vocab)
            .map_err(|e| Error::value(format!("input {i}: {e}")))
    });
    let mut entities = Vec::with_capacity(results.len());
    let mut warned = false;
    for result in results {
        let (found, heuristic) = result?;
        entities.push(found);
        warned |= heuristic;
    }
    Ok((entities, warned))
}

/// `entities_of` for logits computed elsewhere (another model's, [tokens × labels] per text,
/// row-major): the texts are tokenized as `token_classification` tokenizes them.
pub fn entities_from_logits(
    tokenizer: &Tokenizer,
    texts: &[&str],
    logits: &[Vec<f32>],
    settings: &ner::Settings,
) -> Result<(Vec<Vec<ner::Entity>>, bool)> {
    if logits.len() != texts.len() {
        return Err(Error::value(format!(
            "{} logits tensors for {} texts",
            logits.len(),
            texts.len()
        )));
    }
    let (rows, details) = encode_for_tokens(tokenizer, texts)?;
    let ids = row_ids(&rows);
    entities_of(tokenizer, texts, &ids, &details, logits, settings)
}

/// What `fill_mask` is asked for.
pub struct FillMask<'a> {
    pub top_k: usize,
    /// Sorted token ids (`fill_mask::target_ids`).
    pub targets: Option<&'a [i64]>,
    pub request: Request,
}

/// The candidates of each mask of each text (`FillMaskPipeline`): per text, one list per mask.
pub fn fill_mask(
    model: &Mutex<Model>,
    tokenizer: &Tokenizer,
    texts: &[&str],
    ask: &FillMask,
    run: Run,
    interrupt: &dyn Fn() -> Result<()>,
) -> Result<Vec<Vec<Vec<fill_mask::Candidate>>>> {
    check_task(model, Task::MaskedLm, "fill-mask")?;
    let (mask_token, mask_id) =
        match (tokenizer.special_token("mask_token"), tokenizer.special_token_id("mask_token")) {
            (Some(token), Some(id)) => (token.to_string(), id),
            _ => return Err(Error::value("The tokenizer does not define a `mask_token`.")),
        };
    let rows = tokenizer.encode_batch(texts, None, &tokenizer.plan(&ask.request)?)?;
    let ids: Vec<Vec<i32>> =
        (0..rows.len()).map(|i| rows.input_ids[rows.row(i)].to_vec()).collect();
    let slices: Vec<&[i32]> = ids.iter().map(Vec::as_slice).collect();
    let masks = fill_mask::mask_positions(&slices, mask_id, &mask_token, texts)?;
    let mut top: Vec<Vec<Vec<(f64, i64)>>> = vec![Vec::new(); rows.len()];
    forward_rows(model, rows, tokenizer_inputs(tokenizer), run, interrupt, &mut |i, row| {
        let positions: Vec<i64> = masks[i].iter().map(|&p| p as i64).collect();
        let at_masks = row.index_select(0, &Tensor::from_slice(&positions).to_device(row.device()));
        top[i] = fill_mask::top_tokens(&at_masks, ask.top_k, ask.targets)?;
        Ok(())
    })?;
    let rows: Vec<usize> = (0..texts.len()).collect();
    crate::parallel::map(&rows, |&i| fill_mask::candidates(tokenizer, &ids[i], &masks[i], &top[i]))
        .into_iter()
        .collect()
}
