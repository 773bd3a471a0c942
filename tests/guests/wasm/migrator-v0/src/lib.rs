//! The migrator test guest at data version 0: see `../../migrator.rs`.

const STEPS: u32 = 0;

include!("../../migrator.rs");
