//! Accounting: token counting before the call (prices and budgets come later).

pub mod pricing;
pub mod tokens;
