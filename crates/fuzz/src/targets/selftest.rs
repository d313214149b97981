//! Targets that misbehave on purpose, so the driver's own tests can check that it
//! sees each kind of finding: a panic, a broken property, a hang, a death and
//! memory growth, each on every 10th input. Not listed with the real targets.

use super::Target;
use crate::craft::U;

pub struct SelfTest {
    pub kind: &'static str,
}

impl Target for SelfTest {
    fn generate(&self, u: U) -> arbitrary::Result<Vec<u8>> {
        Ok(vec![u.int_in_range(0..=9u8)?])
    }

    fn run(&mut self, input: &[u8]) -> Result<(), String> {
        if input.first() != Some(&0) {
            return Ok(());
        }
        match self.kind {
            "panic" => panic!("a deliberate panic"),
            "violation" => Err("a deliberate violation".into()),
            "hang" => loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            },
            "abort" => std::process::abort(),
            _ => {
                // 256 MiB, touched so that it is resident.
                let v = vec![1u8; 256 << 20];
                std::hint::black_box(&v);
                Ok(())
            }
        }
    }
}
