//! The migrator test guest at data version 1: see `../../migrator.rs`.

const STEPS: u32 = 1;

include!("../../migrator.rs");
