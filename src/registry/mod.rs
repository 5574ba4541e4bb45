//! The registry: organisations by VFC PIN, their suffix locations with coordinators, storage
//! units with their temperature ranges, data loggers, and which logger served which unit when.
//!
//! Each function takes the caller's [`Scope`](crate::accounts::Scope) and answers `NotFound`
//! for anything outside it, so a clinic cannot even learn that another PIN's unit exists.

pub mod assignments;
pub mod gateways;
pub mod locations;
pub mod loggers;
pub mod units;
pub mod waiting;

pub use crate::error::{Error, Result};

use std::sync::atomic::{AtomicU64, Ordering};

/// Bumped whenever this process changes what names a location or a vaccine (a location's time
/// zone, facility ids, the catalog), so that lookups kept by the HL7 intake are dropped at once.
static DIRECTORY_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Says that names changed (see [`directory_generation`]).
pub fn directory_changed() {
    DIRECTORY_GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Changes whenever [`directory_changed`] is called: a lookup kept under an older value is stale.
pub fn directory_generation() -> u64 {
    DIRECTORY_GENERATION.load(Ordering::Relaxed)
}
