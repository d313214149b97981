//! hubkeeper's fuzz targets and their driver, shared by the `hubkeeper-fuzz` runner
//! (stable, seeded, structure-aware) and the optional coverage-guided AFL++ harness
//! (`hubkeeper-fuzz-afl`, feature `afl`), which feeds its bytes to the same generators.

pub mod craft;
pub mod driver;
pub mod http;
pub mod targets;
