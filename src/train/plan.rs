//! How many steps a run has, and in which order it visits the examples: transformers'
//! `set_initial_training_values` (trainer.py) and its samplers (accelerate's
//! SeedableRandomSampler, `LengthGroupedSampler` in trainer_pt_utils.py).

use crate::error::{positive, Error, Result};

/// This process's place among the processes that train together (torch.distributed's rank and
/// world size); one process alone is `Shard::ALONE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    pub const ALONE: Shard = Shard { index: 0, count: 1 };
}

/// Steps and epochs of a training run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plan {
    /// Batches per epoch (the dataloader's length).
    pub batches_per_epoch: usize,
    pub grad_accum: usize,
    pub updates_per_epoch: u64,
    /// Optimizer steps of the whole run.
    pub max_steps: u64,
    /// Epochs the loop runs (an integer: `ceil` of a fractional num_train_epochs).
    pub num_epochs: u64,
    /// Examples the run sees, for train_samples_per_second.
    pub num_train_samples: f64,
}

impl Plan {
    /// `max_steps > 0` overrides `num_train_epochs`, as in transformers. With several
    /// processes, `batch_size` is per process and an epoch has this process's batches.
    pub fn new(
        examples: usize,
        batch_size: usize,
        grad_accum: usize,
        num_train_epochs: f64,
        max_steps: i64,
        drop_last: bool,
        shard: Shard,
    ) -> Result<Plan> {
        positive("per_device_train_batch_size", batch_size)?;
        positive("gradient_accumulation_steps", grad_accum)?;
        let all_batches =
            if drop_last { examples / batch_size } else { examples.div_ceil(batch_size) };
        // accelerate's BatchSamplerShard.__len__ (even_batches): a short last round is filled.
        let batches_per_epoch =
            if drop_last { all_batches / shard.count } else { all_batches.div_ceil(shard.count) };
        if batches_per_epoch == 0 {
            return Err(Error::value(format!(
                "the training set has {examples} examples, fewer than one batch of \
                 {batch_size} with dataloader_drop_last=True"
            )));
        }
        let updates_per_epoch = (batches_per_epoch.div_ceil(grad_accum) as u64).max(1);
        let (max_steps, num_epochs, num_train_samples) = if max_steps > 0 {
            let steps = max_steps as u64;
            let epochs = steps.div_ceil(updates_per_epoch);
            (steps, epochs, (steps * (batch_size * grad_accum * shard.count) as u64) as f64)
        } else {
            let steps = (num_train_epochs * updates_per_epoch as f64).ceil().max(0.0) as u64;
            (steps, num_train_epochs.ceil().max(0.0) as u64, examples as f64 * num_train_epochs)
        };
        Ok(Plan {
            batches_per_epoch,
            grad_accum,
            updates_per_epoch,
            max_steps,
            num_epochs,
            num_train_samples,
        })
    }

    /// Where a run resumed at `global_step` starts: (epochs done, batches of the current epoch
    /// already consumed).
    pub fn resume_point(&self, global_step: u64) -> (u64, usize) {
        let epochs = global_step / self.updates_per_epoch;
        let batches = (global_step % self.updates_per_epoch) as usize * self.grad_accum;
        (epochs, batches)
    }
}

/// The order of the examples in an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sampling {
    /// `torch.randperm(n, Generator().manual_seed(seed + epoch))`.
    Random {
        seed: u64,
    },
    Sequential,
    /// transformers' LengthGroupedSampler over groups of `group_size` (= batch × accumulation),
    /// drawing from torch's global generator.
    GroupByLength {
        group_size: usize,
    },
}

impl Sampling {
    /// The `train_sampling_strategy` names.
    pub const NAMES: [&'static str; 3] = ["random", "sequential", "group_by_length"];

    /// The sampling `name`s: random from `seed`, length groups of `group_size` examples.
    pub fn parse(name: &str, seed: u64, group_size: usize) -> Result<Sampling> {
        match name {
            "random" => Ok(Sampling::Random { seed }),
            "sequential" => Ok(Sampling::Sequential),
            "group_by_length" => Ok(Sampling::GroupByLength { group_size }),
            other => Err(Error::value(format!(
                "train_sampling_strategy must be one of {}, got {other:?}",
                Self::NAMES.map(|n| format!("'{n}'")).join(", ")
            ))),
        }
    }

    pub fn order(&self, epoch: u64, lengths: &[usize]) -> Result<Vec<usize>> {
        let n = lengths.len();
        match *self {
            Sampling::Sequential => Ok((0..n).collect()),
            Sampling::Random { seed } => crate::ops::randperm(n, seed.wrapping_add(epoch)),
            Sampling::GroupByLength { group_size } => {
                let perm = tch::Tensor::randperm(n as i64, (tch::Kind::Int64, tch::Device::Cpu));
                let perm: Vec<i64> = Vec::try_from(perm).map_err(crate::Error::from)?;
                Ok(group_by_length(
                    perm.into_iter().map(|i| i as usize).collect(),
                    lengths,
                    group_size,
                ))
            }
        }
    }
}

/// `get_length_grouped_indices`: megabatches of the permutation, each sorted longest first, with
/// the longest example of all moved to the very front.
fn group_by_length(perm: Vec<usize>, lengths: &[usize], group_size: usize) -> Vec<usize> {
    let group_size = group_size.max(1);
    let mult = (lengths.len() / (group_size * 4)).clamp(1, 50);
    let mut megabatches: Vec<Vec<usize>> =
        perm.chunks(mult * group_size).map(<[usize]>::to_vec).collect();
    for m in &mut megabatches {
        m.sort_by(|&a, &b| lengths[b].cmp(&lengths[a])); // stable, as Python's sorted
    }
    if let Some(longest) = (0..megabatches.len()).reduce(|best, i| {
        if lengths[megabatches[i][0]] > lengths[megabatches[best][0]] {
            i
        } else {
            best
        }
    }) {
        let first = megabatches[0][0];
        megabatches[0][0] = megabatches[longest][0];
        megabatches[longest][0] = first;
    }
    megabatches.concat()
}

/// Consecutive batches of `order`; the last one short unless `drop_last`.
pub fn batches(order: &[usize], batch_size: usize, drop_last: bool) -> Vec<Vec<usize>> {
    order
        .chunks(batch_size)
        .filter(|b| !drop_last || b.len() == batch_size)
        .map(<[usize]>::to_vec)
        .collect()
}

/// This process's batches, as accelerate's `BatchSamplerShard` (even_batches, no split) deals
/// them: batch i goes to process i % count, and every process gets as many full batches, the
/// last round completed with examples from the start of the epoch (unless `drop_last`).
pub fn shard_batches(
    order: &[usize],
    batch_size: usize,
    drop_last: bool,
    shard: Shard,
) -> Vec<Vec<usize>> {
    let all = batches(order, batch_size, drop_last);
    if shard.count == 1 {
        return all;
    }
    let full_rounds = all.iter().filter(|b| b.len() == batch_size).count() / shard.count;
    let mut mine: Vec<Vec<usize>> = all[..full_rounds * shard.count]
        .iter()
        .skip(shard.index)
        .step_by(shard.count)
        .cloned()
        .collect();
    let rest = &all[full_rounds * shard.count..];
    if drop_last || rest.is_empty() {
        return mine;
    }
    // The rest, then the first round's examples again (cycled, as accelerate doubles them
    // while they are too few), cut into full batches until every process has one more.
    let start = all.iter().take(shard.count).flatten().copied();
    let mut flat: Vec<usize> = rest.concat();
    let missing = shard.count * batch_size - flat.len();
    flat.extend(start.cycle().take(missing));
    mine.push(flat[shard.index * batch_size..(shard.index + 1) * batch_size].to_vec());
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_and_steps_as_transformers() {
        // 10 examples, batch 4 → 3 batches; accumulation 2 → 2 updates per epoch.
        let p = Plan::new(10, 4, 2, 3.0, -1, false, Shard::ALONE).unwrap();
        assert_eq!(
            (p.batches_per_epoch, p.updates_per_epoch, p.max_steps, p.num_epochs),
            (3, 2, 6, 3)
        );
        assert_eq!(p.num_train_samples, 30.0);
        let p = Plan::new(10, 4, 1, 1.5, -1, false, Shard::ALONE).unwrap();
        assert_eq!((p.max_steps, p.num_epochs), (5, 2)); // ceil(1.5 * 3)
        let p = Plan::new(10, 4, 1, 3.0, 4, false, Shard::ALONE).unwrap();
        assert_eq!((p.max_steps, p.num_epochs, p.num_train_samples), (4, 2, 16.0));
        let p = Plan::new(10, 4, 1, 3.0, -1, true, Shard::ALONE).unwrap();
        assert_eq!((p.batches_per_epoch, p.max_steps), (2, 6));
        assert_eq!(
            Plan::new(10, 4, 1, 3.0, -1, false, Shard::ALONE).unwrap().resume_point(4),
            (1, 1)
        );
        assert_eq!(
            Plan::new(10, 4, 2, 3.0, -1, false, Shard::ALONE).unwrap().resume_point(3),
            (1, 2)
        );
    }

    #[test]
    fn zero_sizes_are_value_errors() {
        assert!(Plan::new(10, 0, 1, 1.0, -1, false, Shard::ALONE)
            .unwrap_err()
            .to_string()
            .contains("got 0"));
        assert!(Plan::new(10, 4, 0, 1.0, -1, false, Shard::ALONE).is_err());
        assert!(Plan::new(3, 4, 1, 1.0, -1, true, Shard::ALONE).is_err());
    }

    #[test]
    fn random_order_is_torchs_seeded_permutation_per_epoch() {
        let s = Sampling::Random { seed: 42 };
        assert_eq!(s.order(0, &[1; 10]).unwrap(), vec![2, 6, 1, 8, 4, 5, 0, 9, 3, 7]);
        assert_eq!(s.order(1, &[1; 10]).unwrap(), vec![8, 4, 9, 0, 5, 1, 6, 7, 2, 3]);
    }

    #[test]
    fn length_groups_sort_megabatches_and_lead_with_the_longest() {
        let lengths = [1, 9, 3, 4, 8, 2, 7, 5];
        // group 2 → mult = max(min(8 / 8, 50), 1) = 1 → megabatches of 2.
        let order = group_by_length(vec![0, 1, 2, 3, 4, 5, 6, 7], &lengths, 2);
        assert_eq!(order, vec![1, 0, 3, 2, 4, 5, 6, 7]);
        let order = group_by_length(vec![2, 3, 0, 1, 4, 5, 6, 7], &lengths, 2);
        assert_eq!(order, vec![1, 2, 3, 0, 4, 5, 6, 7]);
    }

    #[test]
    fn batches_keep_or_drop_the_tail() {
        assert_eq!(batches(&[0, 1, 2, 3, 4], 2, false), vec![vec![0, 1], vec![2, 3], vec![4]]);
        assert_eq!(batches(&[0, 1, 2, 3, 4], 2, true), vec![vec![0, 1], vec![2, 3]]);
    }

    #[test]
    fn shards_are_dealt_as_accelerate_deals_them() {
        // BatchSamplerShard(BatchSampler(range(n), b, drop_last), count, index) in accelerate.
        let deal = |n: usize, b: usize, count: usize, drop_last: bool| -> Vec<Vec<Vec<usize>>> {
            let order: Vec<usize> = (0..n).collect();
            (0..count)
                .map(|index| shard_batches(&order, b, drop_last, Shard { index, count }))
                .collect()
        };
        assert_eq!(
            deal(10, 2, 2, false),
            vec![
                vec![vec![0, 1], vec![4, 5], vec![8, 9]],
                vec![vec![2, 3], vec![6, 7], vec![0, 1]]
            ]
        );
        assert_eq!(
            deal(11, 2, 2, false),
            vec![
                vec![vec![0, 1], vec![4, 5], vec![8, 9]],
                vec![vec![2, 3], vec![6, 7], vec![10, 0]]
            ]
        );
        assert_eq!(
            deal(9, 2, 3, false),
            vec![
                vec![vec![0, 1], vec![6, 7]],
                vec![vec![2, 3], vec![8, 0]],
                vec![vec![4, 5], vec![1, 2]]
            ]
        );
        assert_eq!(deal(7, 4, 2, false), vec![vec![vec![0, 1, 2, 3]], vec![vec![4, 5, 6, 0]]]);
        assert_eq!(
            deal(11, 2, 2, true),
            vec![vec![vec![0, 1], vec![4, 5]], vec![vec![2, 3], vec![6, 7]]]
        );
        assert_eq!(deal(6, 4, 2, false), vec![vec![vec![0, 1, 2, 3]], vec![vec![4, 5, 0, 1]]]);
        for (n, b, count, drop_last) in
            [(10, 2, 2, false), (11, 2, 2, false), (9, 2, 3, false), (11, 2, 2, true)]
        {
            let plan = Plan::new(n, b, 1, 1.0, -1, drop_last, Shard { index: 0, count }).unwrap();
            assert_eq!(plan.batches_per_epoch, deal(n, b, count, drop_last)[0].len());
        }
    }
}
