//! Accounting: token counting before the call, the price table, the cost of a call by
//! component, and the usage ledger that sums them by key, model, deployment and hour.

pub mod cost;
pub mod ledger;
pub mod pricing;
pub mod tokens;
