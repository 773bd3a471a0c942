//! The records the migration benches convert: the migrator test guest's
//! notes at data version 0 (`note/{n}` → `{"text"}`).

use plinth::storage::{Op, Storage};

/// Notes written per batch.
const BATCH: usize = 1_000;

/// Writes `count` notes (a multiple of 1,000) into plugin `notes`'s data
/// at version 0, durably.
pub async fn seed(storage: &dyn Storage, count: usize) {
    let notes = storage.namespace(plinth::migrations::namespace_at("notes", 0), None).unwrap();
    for batch in 0..count / BATCH {
        let ops = (0..BATCH)
            .map(|i| {
                let n = batch * BATCH + i;
                Op::Set(format!("note/{n:08}"), format!("{{\"text\":\"note number {n} of many\"}}").into_bytes())
            })
            .collect();
        notes.batch(ops).await.unwrap();
    }
    storage.flush().await.unwrap();
}
