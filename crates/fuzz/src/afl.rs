//! The coverage-guided harness for AFL++ (built with `cargo afl build --features afl`):
//! AFL's bytes go through the same structure-aware generators as the seeded runner,
//! then through the target. A property violation panics, which AFL records as a crash.
//! The target is named by `HUBKEEPER_FUZZ_TARGET`.

#![allow(clippy::expect_used)]

use arbitrary::Unstructured;
use hubkeeper_fuzz::targets;

fn main() {
    let name = std::env::var("HUBKEEPER_FUZZ_TARGET").unwrap_or_else(|_| "config".into());
    // A panic ends the process under AFL (its hook aborts): no state outlives one.
    let mut target = std::panic::AssertUnwindSafe(
        targets::make(&name).expect("HUBKEEPER_FUZZ_TARGET names a target"),
    );
    afl::fuzz!(|data: &[u8]| {
        let mut u = Unstructured::new(data);
        let input = target.generate(&mut u).unwrap_or_default();
        if let Err(violation) = target.run(&input) {
            panic!("{name}: {violation}");
        }
    });
}
