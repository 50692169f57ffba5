//! Config kinds: each names a wire format, a default base URL and the usual key variable.
//!
//! An OpenAI-compatible vendor is a preset here, not code; a new wire format is a module
//! beside this one and a [`Wire`] variant.

/// The wire formats the gateway speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI chat completions (`{base_url}/chat/completions`, bearer key).
    OpenAi,
    /// Azure OpenAI: the OpenAI format at
    /// `{base_url}/openai/deployments/{deployment}/chat/completions?api-version=...`,
    /// `api-key` header; the deployment's `model` names the Azure deployment.
    Azure,
    /// Anthropic Messages (`{base_url}/v1/messages`, `x-api-key`, `anthropic-version`).
    Anthropic,
    /// Gemini (`{base_url}/v1beta/models/{model}:generateContent`, `x-goog-api-key`).
    Gemini,
    /// Cohere v2 chat (`{base_url}/v2/chat`, bearer key).
    Cohere,
    /// AWS Bedrock Converse (`{base_url}/model/{model}/converse` and `/converse-stream`),
    /// SigV4-signed with the provider's `access_key_id` and `secret_access_key`; the base
    /// URL defaults to `https://bedrock-runtime.{region}.amazonaws.com`.
    Bedrock,
}

/// A config `kind`: its wire format, where it lives and where its key usually is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preset {
    /// The config `kind`.
    pub kind: &'static str,
    pub wire: Wire,
    /// Default `base_url`, version prefix included; `None` when it must be configured.
    pub base_url: Option<&'static str>,
    /// The environment variable conventionally holding the key; `None` for local servers
    /// and for Bedrock, whose credentials are the standard AWS variables (see
    /// [`AWS_ENV`]).
    pub key_env: Option<&'static str>,
    /// Models the embedded default config offers when the key is present.
    pub default_models: &'static [&'static str],
}

/// Every kind the gateway knows.
pub const PRESETS: &[Preset] = &[
    Preset {
        wire: Wire::Bedrock,
        kind: "bedrock",
        // Derived from the provider's `region`.
        base_url: None,
        key_env: None,
        // Base model ids with on-demand throughput; cross-region inference profiles
        // (`us.anthropic...`) depend on the region, so they are left to config files.
        default_models: &[
            "anthropic.claude-3-5-haiku-20241022-v1:0",
            "anthropic.claude-3-haiku-20240307-v1:0",
            "amazon.nova-lite-v1:0",
            "amazon.nova-pro-v1:0",
        ],
    },
    Preset {
        wire: Wire::Cohere,
        kind: "cohere",
        base_url: Some("https://api.cohere.com"),
        key_env: Some("CO_API_KEY"),
        default_models: &[
            "command-a-03-2025",
            "command-r-plus-08-2024",
            "command-r7b-12-2024",
        ],
    },
    Preset {
        wire: Wire::Gemini,
        kind: "gemini",
        base_url: Some("https://generativelanguage.googleapis.com"),
        key_env: Some("GEMINI_API_KEY"),
        default_models: &["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"],
    },
    Preset {
        wire: Wire::Azure,
        kind: "azure",
        base_url: None,
        key_env: Some("AZURE_OPENAI_API_KEY"),
        default_models: &[],
    },
    Preset {
        wire: Wire::Anthropic,
        kind: "anthropic",
        base_url: Some("https://api.anthropic.com"),
        key_env: Some("ANTHROPIC_API_KEY"),
        default_models: &["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "openai",
        base_url: Some("https://api.openai.com/v1"),
        key_env: Some("OPENAI_API_KEY"),
        default_models: &["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "deepseek",
        base_url: Some("https://api.deepseek.com/v1"),
        key_env: Some("DEEPSEEK_API_KEY"),
        default_models: &["deepseek-chat", "deepseek-reasoner"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "mistral",
        base_url: Some("https://api.mistral.ai/v1"),
        key_env: Some("MISTRAL_API_KEY"),
        default_models: &["mistral-small-latest", "mistral-large-latest"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "qwen",
        base_url: Some("https://dashscope-intl.aliyuncs.com/compatible-mode/v1"),
        key_env: Some("DASHSCOPE_API_KEY"),
        default_models: &["qwen-plus", "qwen-turbo", "qwen-max"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "fireworks",
        base_url: Some("https://api.fireworks.ai/inference/v1"),
        key_env: Some("FIREWORKS_API_KEY"),
        default_models: &["accounts/fireworks/models/llama-v3p1-8b-instruct"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "groq",
        base_url: Some("https://api.groq.com/openai/v1"),
        key_env: Some("GROQ_API_KEY"),
        default_models: &["llama-3.3-70b-versatile", "llama-3.1-8b-instant"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "together",
        base_url: Some("https://api.together.xyz/v1"),
        key_env: Some("TOGETHER_API_KEY"),
        default_models: &["meta-llama/Llama-3.3-70B-Instruct-Turbo"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "xai",
        base_url: Some("https://api.x.ai/v1"),
        key_env: Some("XAI_API_KEY"),
        default_models: &["grok-3-mini", "grok-3"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "openrouter",
        base_url: Some("https://openrouter.ai/api/v1"),
        key_env: Some("OPENROUTER_API_KEY"),
        default_models: &["openrouter/auto"],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "vllm",
        base_url: Some("http://127.0.0.1:8000/v1"),
        key_env: None,
        default_models: &[],
    },
    Preset {
        wire: Wire::OpenAi,
        kind: "ollama",
        base_url: Some("http://127.0.0.1:11434/v1"),
        key_env: None,
        default_models: &[],
    },
];

/// The standard AWS variables the embedded default reads for a Bedrock provider: region,
/// access key id, secret access key, and the session token (used when set).
pub const AWS_ENV: [&str; 4] = [
    "AWS_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// The Azure OpenAI `api-version` used when a provider sets none (the latest GA version
/// at the time of writing).
pub const AZURE_API_VERSION: &str = "2024-10-21";

impl Preset {
    /// The preset for a config `kind`.
    pub fn find(kind: &str) -> Option<&'static Preset> {
        PRESETS.iter().find(|p| p.kind == kind)
    }

    /// All kinds, for error messages.
    pub fn kinds() -> String {
        PRESETS
            .iter()
            .map(|p| p.kind)
            .collect::<Vec<_>>()
            .join(", ")
    }
}
