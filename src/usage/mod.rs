//! Accounting: token counting before the call, and the price table (budgets come later).

pub mod pricing;
pub mod tokens;
