//! A call's usage by billing component ([`Tokens`]) and what it costs by component
//! ([`Cost`], integer nano-USD), from a [`Price`].
//!
//! Money is counted in whole nano-USD (1e-9 USD) so that sums over millions of calls are
//! exact: a price of $0.005 per million tokens (the cheapest cached reads listed) is 5
//! nano-USD a token, so every listed price with up to three decimals costs a whole number
//! of nano-USD per token. Micro-USD would round a cheap call's cost by up to 100%; an
//! `i64` of nano-USD still holds 9.2 billion USD.

use std::ops::AddAssign;

use serde::Serialize;

use super::pricing::Price;
use crate::chat::Usage;

/// Nano-USD in one USD.
pub const NANOS_PER_USD: u64 = 1_000_000_000;

/// Tokens by how they are billed. `input + cached_input + cache_write` is the prompt
/// (each prompt token counted once); `reasoning` is the part of `output` the model spent
/// on hidden reasoning, billed as output and recorded apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Prompt tokens neither read from nor written to the provider's cache.
    pub input: u64,
    /// Prompt tokens read from the provider's cache.
    pub cached_input: u64,
    /// Prompt tokens written to the provider's cache.
    pub cache_write: u64,
    /// Completion tokens, reasoning included.
    pub output: u64,
    /// Of `output`, the hidden reasoning.
    pub reasoning: u64,
}

impl Tokens {
    /// The components of a normalised usage, whose `prompt_tokens` includes the cached
    /// and cache-written tokens (the provider translations make it so). Counts that do not
    /// add up (more cached than prompt tokens) are clamped, never negative.
    pub fn of(usage: &Usage) -> Tokens {
        let prompt = u64::from(usage.prompt_tokens);
        let cached_input = u64::from(usage.cached_tokens()).min(prompt);
        let cache_write = u64::from(usage.cache_write_tokens()).min(prompt - cached_input);
        Tokens {
            input: prompt - cached_input - cache_write,
            cached_input,
            cache_write,
            output: u64::from(usage.completion_tokens),
            reasoning: u64::from(usage.reasoning_tokens()),
        }
    }

    /// Prompt tokens, however billed.
    pub fn prompt(&self) -> u64 {
        self.input + self.cached_input + self.cache_write
    }
}

impl AddAssign for Tokens {
    fn add_assign(&mut self, other: Tokens) {
        self.input += other.input;
        self.cached_input += other.cached_input;
        self.cache_write += other.cache_write;
        self.output += other.output;
        self.reasoning += other.reasoning;
    }
}

/// What a call (or a sum of calls) costs by component, in nano-USD.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    /// Output, reasoning included.
    pub output: u64,
    /// The sum of the components.
    pub total: u64,
}

impl Cost {
    /// The total in USD (for the log line and metrics; sums stay in nano-USD).
    pub fn total_usd(&self) -> f64 {
        usd(self.total)
    }
}

/// Nano-USD as USD.
pub fn usd(nanos: u64) -> f64 {
    nanos as f64 / NANOS_PER_USD as f64
}

impl AddAssign for Cost {
    fn add_assign(&mut self, other: Cost) {
        self.input += other.input;
        self.cached_input += other.cached_input;
        self.cache_write += other.cache_write;
        self.output += other.output;
        self.total += other.total;
    }
}

impl Price {
    /// The cost of `tokens` by component: fresh input at `input`, cache reads at
    /// `cached_input` and cache writes at `cache_write` (each at `input` when the table
    /// has no such price), output (reasoning included) at `output`. Each component is
    /// rounded to the nearest nano-USD once.
    pub fn cost(&self, tokens: &Tokens) -> Cost {
        // USD per million tokens is nano-USD per thousandth of a token: x 1000 per token.
        let nanos = |count: u64, usd_per_million: f64| {
            (count as f64 * usd_per_million * 1000.0).round() as u64
        };
        let input = nanos(tokens.input, self.input);
        let cached_input = nanos(tokens.cached_input, self.cached_input.unwrap_or(self.input));
        let cache_write = nanos(tokens.cache_write, self.cache_write.unwrap_or(self.input));
        let output = nanos(tokens.output, self.output);
        Cost {
            input,
            cached_input,
            cache_write,
            output,
            total: input + cached_input + cache_write + output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::{CompletionTokensDetails, Extra, PromptTokensDetails};

    fn anthropic_like() -> Usage {
        Usage {
            prompt_tokens: 1_500,
            completion_tokens: 200,
            total_tokens: 1_700,
            prompt_tokens_details: Some(PromptTokensDetails {
                cached_tokens: Some(1_000),
                cache_creation_tokens: Some(300),
                extra: Extra::new(),
            }),
            completion_tokens_details: Some(CompletionTokensDetails {
                reasoning_tokens: Some(50),
                extra: Extra::new(),
            }),
            extra: Extra::new(),
        }
    }

    #[test]
    fn tokens_split_the_prompt_into_fresh_cached_and_written() {
        let t = Tokens::of(&anthropic_like());
        assert_eq!(
            t,
            Tokens {
                input: 200,
                cached_input: 1_000,
                cache_write: 300,
                output: 200,
                reasoning: 50
            }
        );
        assert_eq!(t.prompt(), 1_500);
    }

    #[test]
    fn counts_that_do_not_add_up_are_clamped() {
        let mut u = anthropic_like();
        u.prompt_tokens = 100;
        let t = Tokens::of(&u);
        assert_eq!((t.input, t.cached_input, t.cache_write), (0, 100, 0));
    }

    #[test]
    fn cost_is_by_component_in_nano_usd() {
        // Claude Sonnet 4.5: $3 in, $15 out, $0.30 cache read, $3.75 cache write.
        let price = Price {
            input: 3.0,
            output: 15.0,
            cached_input: Some(0.30),
            cache_write: Some(3.75),
        };
        let cost = price.cost(&Tokens::of(&anthropic_like()));
        // 200 x 3000 = 600_000; 1000 x 300 = 300_000; 300 x 3750 = 1_125_000;
        // 200 x 15000 = 3_000_000; total 5_025_000 nano-USD = $0.005025.
        assert_eq!(
            cost,
            Cost {
                input: 600_000,
                cached_input: 300_000,
                cache_write: 1_125_000,
                output: 3_000_000,
                total: 5_025_000
            }
        );
        assert!((cost.total_usd() - 0.005025).abs() < 1e-15);
    }

    #[test]
    fn missing_cache_prices_charge_at_input() {
        let price = Price {
            input: 2.0,
            output: 8.0,
            cached_input: None,
            cache_write: None,
        };
        let cost = price.cost(&Tokens {
            input: 1,
            cached_input: 10,
            cache_write: 100,
            output: 0,
            reasoning: 0,
        });
        assert_eq!(
            (cost.input, cost.cached_input, cost.cache_write),
            (2_000, 20_000, 200_000)
        );
    }

    #[test]
    fn the_cheapest_listed_price_is_a_whole_number_of_nanos() {
        let price = Price {
            input: 0.05,
            output: 0.40,
            cached_input: Some(0.005),
            cache_write: None,
        };
        let t = Tokens {
            cached_input: 1,
            ..Tokens::default()
        };
        assert_eq!(price.cost(&t).cached_input, 5);
    }
}
