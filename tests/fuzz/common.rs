//! The runner the fuzz targets share: proptest with `PROPTEST_CASES` cases (a small default so
//! `cargo test` stays fast), no regression files, panics caught and reported with their
//! location, and one `FUZZ_RESULT` line per property for `tests/fuzz/run.sh` to add up.

#![allow(dead_code)]

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use std::cell::Cell;
use std::fmt::Debug;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

thread_local! {
    /// Inputs the code under test accepted (returned Ok) in the current property.
    static ACCEPTED: Cell<usize> = const { Cell::new(0) };
}

/// Counts an input the code under test accepted: the `accepted=` of `FUZZ_RESULT`, which
/// shows how deep the inputs reach.
pub fn accepted() {
    ACCEPTED.with(|n| n.set(n.get() + 1));
}

/// Cases per property when `PROPTEST_CASES` is not set: keeps a debug `cargo test` to seconds.
const DEFAULT_CASES: u32 = 64;

/// The message and location of the latest panic, recorded by a quiet panic hook (shrinking
/// replays a panicking input many times; the default hook would print each one).
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn quiet_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let message = info
                .payload()
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| info.payload().downcast_ref::<&str>().copied())
                .unwrap_or("(non-string panic payload)");
            let location = info.location().map(|l| l.to_string()).unwrap_or_default();
            *LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("panicked at {location}: {message}"));
        }));
    });
}

pub fn config() -> Config {
    let cases =
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_CASES);
    Config {
        cases,
        // No proptest-regressions/ files in the source tree: a finding is written up by hand.
        failure_persistence: None,
        max_shrink_time: 60_000,
        ..Config::default()
    }
}

/// Runs `property` on `strategy`'s values; a panic inside it is a failure like a failed
/// `prop_assert!`. Prints `FUZZ_RESULT name=.. executions=.. accepted=.. findings=..` and, on a failure,
/// the minimal input, then fails the test.
pub fn fuzz<S, F>(name: &str, strategy: S, property: F)
where
    S: Strategy,
    S::Value: Debug,
    F: Fn(S::Value) -> Result<(), TestCaseError>,
{
    quiet_panic_hook();
    let executions = AtomicUsize::new(0);
    ACCEPTED.with(|n| n.set(0));
    let mut runner = TestRunner::new(config());
    let result = runner.run(&strategy, |input| {
        executions.fetch_add(1, Ordering::Relaxed);
        match catch_unwind(AssertUnwindSafe(|| property(input))) {
            Ok(outcome) => outcome,
            Err(_) => {
                let panic = LAST_PANIC.lock().unwrap_or_else(|e| e.into_inner()).take();
                Err(TestCaseError::fail(panic.unwrap_or_else(|| "panicked".into())))
            }
        }
    });
    let executions = executions.load(Ordering::Relaxed);
    let findings = usize::from(result.is_err());
    let accepted = ACCEPTED.with(Cell::get);
    println!(
        "FUZZ_RESULT name={name} executions={executions} accepted={accepted} findings={findings}"
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, minimal)) => {
            println!("FUZZ_FINDING name={name}\n  reason: {reason}\n  minimal input: {minimal:#?}");
            panic!("{name}: {reason}\nminimal input: {minimal:#?}");
        }
        Err(TestError::Abort(reason)) => panic!("{name}: aborted: {reason}"),
    }
}

/// Fails the case when an error has an empty message.
pub fn nonempty_message<E: std::fmt::Display>(error: &E) -> Result<(), TestCaseError> {
    let message = error.to_string();
    prop_assert!(!message.trim().is_empty(), "an error with an empty message");
    Ok(())
}

/// Strings a tokenizer or a parser may trip on: empty, whitespace, accents, CJK, controls,
/// combining marks, long words, special tokens written out, lone surrogate escapes.
pub fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just(" ".to_string()),
        Just("\u{0}\u{1}\t\n\r\u{7f}".to_string()),
        Just("Hello, world! Don't".to_string()),
        Just("café naïve ¿que? 中文 日本語".to_string()),
        Just("e\u{301}\u{301}\u{301} \u{200b}\u{feff}\u{fffd}".to_string()),
        Just("[CLS] [SEP] [PAD] [MASK] [UNK] <s></s><pad>".to_string()),
        Just("a".repeat(300)),
        Just("hello ".repeat(200)),
        Just("🤗🏳️‍🌈 \u{10ffff}".to_string()),
        any::<String>(),
        "[a-z ##\\[\\]!,.'?]{0,40}",
    ]
}
