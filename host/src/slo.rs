//! Service level objectives per route class (`[slo]`): a target share of
//! requests that do not fail (no 5xx) and of requests answered within a
//! latency, and how fast each class burns its error budget over 5 minutes,
//! 30 minutes, 1 hour and 6 hours (`plinth_slo_burn_rate`), so operators
//! can alert on a fast burn over a short and a long window together (the
//! multiwindow, multi-burn-rate alerts of the SRE workbook). A burn rate of
//! 1 spends the budget exactly over the objective's period; 14.4 over an
//! hour spends 2 % of a 30-day budget.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::{Objective, SloConfig};

/// Width of one bucket of counts.
const BUCKET_SECS: u64 = 10;
/// The windows burn rates are given over, with their label.
pub const WINDOWS: [(&str, u64); 4] = [("5m", 300), ("30m", 1800), ("1h", 3600), ("6h", 21_600)];
/// Buckets kept: the longest window.
const BUCKETS: usize = (21_600 / BUCKET_SECS) as usize;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    /// Its start, in seconds since the epoch, a multiple of [`BUCKET_SECS`].
    start: u64,
    total: u64,
    errors: u64,
    slow: u64,
}

/// One class's counts over the last six hours.
#[derive(Default)]
struct History {
    buckets: VecDeque<Bucket>,
}

impl History {
    fn add(&mut self, now: u64, error: bool, slow: bool) {
        let start = now - now % BUCKET_SECS;
        if self.buckets.back().is_none_or(|b| b.start != start) {
            self.buckets.push_back(Bucket { start, ..Bucket::default() });
            while self.buckets.len() > BUCKETS {
                self.buckets.pop_front();
            }
        }
        let bucket = self.buckets.back_mut().expect("just pushed");
        bucket.total += 1;
        bucket.errors += u64::from(error);
        bucket.slow += u64::from(slow);
    }

    /// (total, errors, slow) in the last `secs` seconds.
    fn within(&self, now: u64, secs: u64) -> (u64, u64, u64) {
        let from = now.saturating_sub(secs);
        self.buckets
            .iter()
            .rev()
            .take_while(|b| b.start + BUCKET_SECS > from)
            .fold((0, 0, 0), |(t, e, s), b| (t + b.total, e + b.errors, s + b.slow))
    }
}

/// One burn rate, as published.
#[derive(Debug, Clone, PartialEq)]
pub struct BurnRate {
    /// The route class.
    pub class: String,
    /// `availability` or `latency`.
    pub objective: &'static str,
    /// `5m`, `30m`, `1h` or `6h`.
    pub window: &'static str,
    /// The share of bad requests over the share the objective allows.
    pub rate: f64,
}

/// The objectives and what requests did against them.
pub struct Slos {
    state: Mutex<State>,
}

/// One lock for both, so that a request takes one.
struct State {
    config: SloConfig,
    history: HashMap<String, History>,
}

impl State {
    fn objective(&self, class: &str) -> Objective {
        self.config.classes.get(class).copied().unwrap_or(self.config.default)
    }
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Slos {
    /// Objectives from the config.
    pub fn new(config: &SloConfig) -> Self {
        Self { state: Mutex::new(State { config: config.clone(), history: HashMap::new() }) }
    }

    /// Takes a reloaded config's objectives; the history stays.
    pub fn set(&self, config: &SloConfig) {
        self.state.lock().expect("slo lock poisoned").config = config.clone();
    }

    /// Counts one request of `class`.
    pub fn record(&self, class: &str, status: u16, took: Duration) {
        self.record_at(now_secs(), class, status, took);
    }

    fn record_at(&self, now: u64, class: &str, status: u16, took: Duration) {
        let mut state = self.state.lock().expect("slo lock poisoned");
        let slow = took.as_millis() > u128::from(state.objective(class).latency_ms);
        if !state.history.contains_key(class) {
            state.history.insert(class.to_owned(), History::default());
        }
        state.history.get_mut(class).expect("inserted").add(now, status >= 500, slow);
    }

    /// Every class's burn rates now.
    pub fn burn_rates(&self) -> Vec<BurnRate> {
        self.burn_rates_at(now_secs())
    }

    fn burn_rates_at(&self, now: u64) -> Vec<BurnRate> {
        let state = self.state.lock().expect("slo lock poisoned");
        let classes: BTreeMap<&String, &History> = state.history.iter().collect();
        let mut rates = Vec::new();
        for (class, counts) in classes {
            let objective = state.objective(class);
            for (window, secs) in WINDOWS {
                let (total, errors, slow) = counts.within(now, secs);
                let burn = |bad: u64, target: f64| {
                    if total == 0 { 0.0 } else { (bad as f64 / total as f64) / (1.0 - target / 100.0) }
                };
                rates.push(BurnRate {
                    class: class.clone(),
                    objective: "availability",
                    window,
                    rate: burn(errors, objective.availability),
                });
                rates.push(BurnRate {
                    class: class.clone(),
                    objective: "latency",
                    window,
                    rate: burn(slow, objective.latency_target),
                });
            }
        }
        rates
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slos() -> Slos {
        let mut config = SloConfig::default();
        config.classes.insert("login".into(), Objective { availability: 99.0, latency_ms: 100, latency_target: 90.0 });
        Slos::new(&config)
    }

    fn rate(rates: &[BurnRate], class: &str, objective: &str, window: &str) -> f64 {
        rates.iter().find(|r| r.class == class && r.objective == objective && r.window == window).unwrap().rate
    }

    #[test]
    fn burn_rates_are_bad_shares_over_the_allowed_share_per_window() {
        let slos = slos();
        let start = 1_800_000_000;
        // An hour ago: 100 fine requests. Now: 100 with 5 failures and 20 slow.
        for i in 0..100 {
            slos.record_at(start - 3000, "login", 200, Duration::from_millis(10 + i));
        }
        for i in 0..100u64 {
            let status = if i < 5 { 503 } else { 200 };
            let took = Duration::from_millis(if i < 20 { 500 } else { 5 });
            slos.record_at(start, "login", status, took);
        }
        let rates = slos.burn_rates_at(start);
        assert!((rate(&rates, "login", "availability", "5m") - 5.0).abs() < 1e-9, "5 % failed, 1 % allowed");
        assert!((rate(&rates, "login", "availability", "1h") - 2.5).abs() < 1e-9, "5 of 200 in the hour");
        assert!((rate(&rates, "login", "latency", "5m") - 2.0).abs() < 1e-9, "20 % slow, 10 % allowed");
        slos.record_at(start, "default", 200, Duration::from_millis(1));
        let rates = slos.burn_rates_at(start + 7 * 3600);
        assert_eq!(rate(&rates, "login", "availability", "6h"), 0.0, "old requests leave the windows");
        assert_eq!(
            rates.iter().filter(|r| r.class == "default").count(),
            8,
            "every class seen, each objective and window"
        );
    }
}
