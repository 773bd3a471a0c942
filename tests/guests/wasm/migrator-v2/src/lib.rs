//! The migrator test guest at data version 2: see `../../migrator.rs`.

const STEPS: u32 = 2;

include!("../../migrator.rs");
