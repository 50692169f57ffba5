//! The in-process engine: the same windows, holds and refusals as the Redis scripts
//! (`reserve.lua`, `settle.lua`), on this process's counters.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, PoisonError},
};

use tokio::time::Instant;

use super::{Ask, Day, Granted, Refusal, Settle, WINDOW_MS};

/// Every subject's window and every key's spend, behind one lock held for microseconds.
pub struct Local {
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    windows: crate::FastMap<Arc<str>, Window>,
    spends: crate::FastMap<Arc<str>, Spend>,
}

/// One subject's last 60 s: admitted requests with their tokens, and the calls in
/// flight. One log serves `rpm` (its length) and `tpm` (its sum); the Redis scripts keep
/// two sorted sets with the same members and times when both are set.
#[derive(Default)]
struct Window {
    /// `(admitted at, rid, tokens)`, oldest first, while `rpm` or `tpm` is set.
    log: VecDeque<(u64, u64, u64)>,
    token_sum: u64,
    /// `(expires at, rid)`.
    in_flight: Vec<(u64, u64)>,
}

/// One key's spend in micro-USD: today's, this month's, and what is held.
#[derive(Default)]
struct Spend {
    day: (u32, u64),
    month: (u32, u64),
    /// `(expires at, rid, micro-USD)`.
    holds: Vec<(u64, u64, u64)>,
}

impl Spend {
    fn held(&self) -> u64 {
        self.holds.iter().map(|h| h.2).sum()
    }

    fn spent(&mut self, day: Day) -> (u64, u64) {
        if self.day.0 != day.day {
            self.day = (day.day, 0);
        }
        if self.month.0 != day.month {
            self.month = (day.month, 0);
        }
        (self.day.1, self.month.1)
    }
}

impl Spend {
    /// Adds a settled cost to the day and month it was reserved in, as the Redis engine
    /// does (its counters are per day and month): a period already over takes it, and
    /// the current one's counter never goes back to an older period.
    fn charge(&mut self, day: Day, micros: u64) {
        for (counter, period) in [(&mut self.day, day.day), (&mut self.month, day.month)] {
            if counter.0 == period {
                counter.1 += micros;
            } else if counter.0 < period {
                *counter = (period, micros);
            }
        }
    }
}

impl Local {
    pub fn new() -> Local {
        Local {
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reserves `ask` against every limit and budget at once, or refuses it.
    pub fn reserve(&self, ask: &Ask, rid: u64, hold_ms: u64, day: Day) -> Result<Granted, Refusal> {
        let now = self.now_ms();
        let mut inner = self.lock();
        let mut granted = Granted::default();
        for (i, subject) in ask.subjects.iter().enumerate() {
            let w = inner.windows.entry(subject.id.clone()).or_default();
            w.trim(now);
            let l = subject.limits;
            if let Some(rpm) = l.rpm {
                let count = w.log.len() as u64;
                if count >= rpm {
                    let at = w.log[(count - rpm) as usize].0 + WINDOW_MS;
                    return Err(Refusal::Requests {
                        subject: i,
                        limit: rpm,
                        retry_ms: at.saturating_sub(now),
                    });
                }
                let reset = w.log.front().map_or(0, |r| r.0 + WINDOW_MS - now);
                granted.requests(rpm, rpm - count - 1, reset);
            }
            if let Some(tpm) = l.tpm {
                let sum = w.token_sum;
                if ask.tokens > tpm {
                    return Err(Refusal::TokensNever {
                        subject: i,
                        limit: tpm,
                    });
                }
                if sum + ask.tokens > tpm {
                    let need = sum + ask.tokens - tpm;
                    let mut freed = 0;
                    let mut at = now + WINDOW_MS;
                    for &(t, _, n) in &w.log {
                        freed += n;
                        if freed >= need {
                            at = t + WINDOW_MS;
                            break;
                        }
                    }
                    return Err(Refusal::Tokens {
                        subject: i,
                        limit: tpm,
                        remaining: tpm.saturating_sub(sum),
                        retry_ms: at.saturating_sub(now),
                    });
                }
                let reset = w.log.front().map_or(0, |r| r.0 + WINDOW_MS - now);
                granted.tokens(tpm, tpm - sum - ask.tokens, reset);
            }
            if let Some(max) = l.max_concurrent
                && w.in_flight.len() as u64 >= max
            {
                return Err(Refusal::Concurrent {
                    subject: i,
                    limit: max,
                });
            }
        }
        if let Some((key, budget)) = &ask.budget {
            let spend = inner.spends.entry(key.clone()).or_default();
            spend.holds.retain(|h| h.0 > now);
            let held = spend.held();
            let (spent_day, spent_month) = spend.spent(day);
            if let Some(cap) = budget.day_micros()
                && spent_day + held + ask.cost_micros > cap
            {
                return Err(Refusal::BudgetDay { cap });
            }
            if let Some(cap) = budget.month_micros()
                && spent_month + held + ask.cost_micros > cap
            {
                return Err(Refusal::BudgetMonth { cap });
            }
        }
        // Everything admits it: take the places.
        for subject in &ask.subjects {
            let w = inner.windows.entry(subject.id.clone()).or_default();
            let l = subject.limits;
            if l.rpm.is_some() || l.tpm.is_some() {
                w.log.push_back((now, rid, ask.tokens));
                w.token_sum += ask.tokens;
            }
            if l.max_concurrent.is_some() {
                w.in_flight.push((now + hold_ms, rid));
            }
        }
        if let Some((key, _)) = &ask.budget
            && let Some(spend) = inner.spends.get_mut(key)
        {
            spend.holds.push((now + hold_ms, rid, ask.cost_micros));
        }
        Ok(granted)
    }

    /// Settles the reservation `rid` of `ask`.
    pub fn settle(&self, ask: &Ask, rid: u64, settle: Settle, day: Day) {
        let mut inner = self.lock();
        for subject in &ask.subjects {
            let Some(w) = inner.windows.get_mut(&subject.id) else {
                continue;
            };
            if let Some(entry) = w.log.iter_mut().rev().find(|e| e.1 == rid) {
                let now = settle.tokens.unwrap_or(0);
                w.token_sum = w.token_sum - entry.2 + now;
                entry.2 = now;
            }
            w.in_flight.retain(|e| e.1 != rid);
        }
        if let Some((key, _)) = &ask.budget
            && let Some(spend) = inner.spends.get_mut(key)
        {
            spend.holds.retain(|h| h.1 != rid);
            if settle.cost_micros > 0 {
                spend.charge(day, settle.cost_micros);
            }
        }
    }
}

impl Window {
    /// Drops what left the window by `now` (as the scripts' `<= now - 60 s`) and the
    /// places that expired.
    fn trim(&mut self, now: u64) {
        while let Some(&(t, _, n)) = self.log.front() {
            if t + WINDOW_MS > now {
                break;
            }
            self.token_sum -= n;
            self.log.pop_front();
        }
        self.in_flight.retain(|e| e.0 > now);
    }
}
