//! Config validation: every bad value names its key; secrets never print.

use std::time::Duration;

use super::*;

const VALID: &str = r#"
[server]
http_addr = "127.0.0.1:8080"
grpc_addr = "127.0.0.1:50051"

[failover]
deadline_ms = 10000
backoff_max_ms = 400

[[providers]]
name = "openai-main"
kind = "openai"
base_url = "https://api.openai.com/v1/"
api_key = "sk-literal"

[[providers]]
name = "local"
kind = "vllm"

[[models]]
name = "gpt-4o-mini"
deployments = [ { provider = "openai-main", model = "gpt-4o-mini" },
                { provider = "local", model = "llama" } ]
"#;

#[test]
fn a_valid_file_becomes_a_config_with_presets_filled_in() {
    let c = Config::parse(VALID).unwrap();
    assert_eq!(c.server.http_addr.port(), 8080);
    assert_eq!(c.failover.deadline, Duration::from_secs(10));
    assert_eq!(c.failover.backoff_max, Duration::from_millis(400));
    assert_eq!(c.providers[0].base_url, "https://api.openai.com/v1");
    assert_eq!(c.providers[1].base_url, "http://127.0.0.1:8000/v1");
    assert!(c.providers[1].api_key.is_none());
    assert_eq!(c.models[0].deployments[1].model, "llama");
}

fn err(text: &str) -> ConfigError {
    Config::parse(text).unwrap_err()
}

#[test]
fn resilience_settings_parse_with_their_defaults() {
    let c = Config::parse(VALID).unwrap();
    assert_eq!(c.server.max_in_flight, 4096);
    assert_eq!(c.server.body_timeout, Duration::from_secs(10));
    assert_eq!(c.models[0].hedge, None);
    assert_eq!(c.models[0].alert_p95, None);
    assert_eq!(c.providers[0].connect_timeout, None);
    assert_eq!(c.models[0].deployments[0].max_concurrent, None);

    let text = VALID
        .replace(
            "grpc_addr = \"127.0.0.1:50051\"",
            "grpc_addr = \"127.0.0.1:50051\"\nmax_in_flight = 64",
        )
        .replace(
            "kind = \"vllm\"",
            "kind = \"vllm\"\nconnect_timeout_ms = 250",
        )
        .replace(
            "name = \"gpt-4o-mini\"",
            "name = \"gpt-4o-mini\"\nhedge = true\nalert_p95_ms = 2000",
        )
        .replace(
            "model = \"llama\" }",
            "model = \"llama\", max_concurrent = 8 }",
        );
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.server.max_in_flight, 64);
    assert_eq!(
        c.providers[1].connect_timeout,
        Some(Duration::from_millis(250))
    );
    assert_eq!(c.models[0].hedge, Some(Hedge::P95));
    assert_eq!(c.models[0].alert_p95, Some(Duration::from_secs(2)));
    assert_eq!(c.models[0].deployments[1].max_concurrent, Some(8));
    let off = Config::parse(&format!(
        "{VALID}\n[breaker]\nfailures = 0\nthrottles = 0\n"
    ))
    .unwrap();
    assert_eq!(
        (off.breaker.failures, off.breaker.throttles),
        (0, 0),
        "0 disables a trigger"
    );
    let fixed = Config::parse(&VALID.replace(
        "name = \"gpt-4o-mini\"",
        "name = \"gpt-4o-mini\"\nhedge_delay_ms = 300",
    ))
    .unwrap();
    assert_eq!(
        fixed.models[0].hedge,
        Some(Hedge::After(Duration::from_millis(300)))
    );
}

#[test]
fn unknown_keys_are_rejected_by_name() {
    let e = err(&VALID.replace("deadline_ms", "dedline_ms"));
    assert!(e.reason.contains("dedline_ms"), "{e}");
}

#[test]
fn each_bad_value_names_its_key() {
    let cases = [
        (
            VALID.replace("kind = \"vllm\"", "kind = \"nope\""),
            "providers[1].kind",
        ),
        (
            VALID.replace("provider = \"local\"", "provider = \"ghost\""),
            "models[0].deployments[1].provider",
        ),
        (
            VALID.replace("backoff_max_ms = 400", "backoff_max_ms = 900"),
            "failover.backoff_max_ms",
        ),
        (
            VALID.replace("127.0.0.1:8080", "localhost"),
            "server.http_addr",
        ),
        (
            VALID.replace("https://api.openai.com/v1/", "ftp://x"),
            "providers[0].base_url",
        ),
        (
            VALID.replace("name = \"local\"", "name = \"openai-main\""),
            "providers[1].name",
        ),
        (
            VALID.replace("deadline_ms = 10000", "deadline_ms = 0"),
            "failover.deadline_ms",
        ),
        (
            VALID.replace(
                "model = \"llama\" }",
                "model = \"llama\", ttft_timeout_ms = 0 }",
            ),
            "models[0].deployments[1].ttft_timeout_ms",
        ),
        (
            VALID.replace(
                "model = \"llama\" }",
                "model = \"llama\", price_in = -1.0 }",
            ),
            "models[0].deployments[1].price_in",
        ),
        (
            VALID.replace(
                "model = \"llama\" }",
                "model = \"llama\" }, { provider = \"local\", model = \"llama\" }",
            ),
            "models[0].deployments[2].model",
        ),
        (
            VALID.replace(
                "model = \"llama\" }",
                "model = \"llama\", max_concurrent = 0 }",
            ),
            "models[0].deployments[1].max_concurrent",
        ),
        (
            format!("{VALID}\n[breaker]\nthrottles = 1001\n"),
            "breaker.throttles",
        ),
        (
            VALID.replace("grpc_addr = \"127.0.0.1:50051\"", "max_in_flight = 0"),
            "server.max_in_flight",
        ),
        (
            VALID.replace("grpc_addr = \"127.0.0.1:50051\"", "body_timeout_ms = 0"),
            "server.body_timeout_ms",
        ),
        (
            VALID.replace("kind = \"vllm\"", "kind = \"vllm\"\nconnect_timeout_ms = 0"),
            "providers[1].connect_timeout_ms",
        ),
        (
            VALID.replace(
                "name = \"gpt-4o-mini\"",
                "name = \"gpt-4o-mini\"\nhedge = false\nhedge_delay_ms = 50",
            ),
            "models[0].hedge_delay_ms",
        ),
        (
            VALID.replace(
                "name = \"gpt-4o-mini\"",
                "name = \"gpt-4o-mini\"\nalert_p95_ms = 0",
            ),
            "models[0].alert_p95_ms",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(err(&text).key, key);
    }
}

#[test]
fn missing_env_key_names_the_variable_and_never_a_value() {
    let text = VALID.replace("\"sk-literal\"", "\"env:SWITCHYARD_TEST_SURELY_UNSET\"");
    let e = err(&text);
    assert_eq!(e.key, "providers[0].api_key");
    assert!(e.reason.contains("SWITCHYARD_TEST_SURELY_UNSET"));
}

#[test]
fn secrets_never_print() {
    let c = Config::parse(VALID).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("sk-literal"), "{debug}");
    assert!(debug.contains("*****"));
}

#[test]
fn embedded_default_uses_the_keys_present_else_simulates() {
    let none = embedded_default(|_| None).unwrap();
    assert!(matches!(none, EmbeddedDefault::Simulated));
    // Which providers a set of keys calls for (resolving the `env:` references needs the
    // real environment, so the decision is checked before that step).
    let keys = |k: &str| {
        ["OPENAI_API_KEY", "CO_API_KEY"]
            .contains(&k)
            .then(|| "x".to_owned())
    };
    let file = default_file(keys).unwrap();
    let providers: Vec<(&str, Option<&str>)> = file
        .providers
        .iter()
        .map(|p| (p.kind.as_str(), p.api_key.as_deref()))
        .collect();
    assert_eq!(
        providers,
        [
            ("cohere", Some("env:CO_API_KEY")),
            ("openai", Some("env:OPENAI_API_KEY"))
        ]
    );
    assert!(
        file.models
            .iter()
            .any(|m| m.name == "gpt-4o-mini" && m.deployments[0].provider == "openai")
    );
    assert!(file.models.iter().any(|m| m.name == "command-a-03-2025"));
    assert!(
        default_file(|k| (k == "PATH").then(|| "x".to_owned())).is_none(),
        "no provider key, no providers"
    );
    assert!(
        default_file(|k| (k == "OPENAI_API_KEY").then(String::new)).is_none(),
        "an empty key is no key"
    );
    let sim = simulated(
        "127.0.0.1:1".parse().unwrap(),
        "127.0.0.1:2".parse().unwrap(),
    )
    .unwrap();
    assert_eq!(sim.providers.len(), 2);
    assert!(sim.models.iter().all(|m| m.deployments.len() == 2));
    assert_eq!(sim.providers[0].base_url, "http://127.0.0.1:1/v1");
}

#[test]
fn azure_needs_an_endpoint_and_only_azure_takes_api_version() {
    let azure = |extra: &str| {
        format!(
            "[[providers]]\nname = \"az\"\nkind = \"azure\"\n{extra}\n[[models]]\nname = \"m\"\n\
             deployments = [{{ provider = \"az\", model = \"my-deployment\" }}]\n"
        )
    };
    assert_eq!(err(&azure("")).key, "providers[0].base_url");
    let c = Config::parse(&azure("base_url = \"https://res.openai.azure.com\"")).unwrap();
    assert_eq!(
        c.providers[0].api_version.as_deref(),
        Some(crate::providers::presets::AZURE_API_VERSION)
    );
    let c = Config::parse(&azure(
        "base_url = \"https://res.openai.azure.com\"\napi_version = \"2025-01-01-preview\"",
    ))
    .unwrap();
    assert_eq!(
        c.providers[0].api_version.as_deref(),
        Some("2025-01-01-preview")
    );
    let e = err(&VALID.replace("kind = \"vllm\"", "kind = \"vllm\"\napi_version = \"x\""));
    assert_eq!(e.key, "providers[1].api_version");
}

#[test]
fn max_response_bytes_defaults_to_32_mib_and_must_be_positive() {
    let c = Config::parse(VALID).unwrap();
    assert_eq!(c.providers[0].max_response_bytes, 33_554_432);
    let text = VALID.replace(
        "kind = \"vllm\"",
        "kind = \"vllm\"\nmax_response_bytes = 4096",
    );
    assert_eq!(
        Config::parse(&text).unwrap().providers[1].max_response_bytes,
        4096
    );
    let text = VALID.replace("kind = \"vllm\"", "kind = \"vllm\"\nmax_response_bytes = 0");
    assert_eq!(err(&text).key, "providers[1].max_response_bytes");
}

#[test]
fn a_toml_error_names_the_line_it_is_on() {
    // The bad key starts line 3 (and an error at the very start is line 1).
    assert_eq!(
        err("[server]\nhttp_addr = \"127.0.0.1:1\"\nbogus_key = 1\n").key,
        "at line 3"
    );
    assert_eq!(err("= 1\n").key, "at line 1");
    assert_eq!(err("[server]\nhttp_addr = \n").key, "at line 2");
}

const KEY: &str = "\n[[keys]]\nname = \"team-a\"\nkey = \"sk-team-a-0123456789\"\n";

#[test]
fn state_cache_limits_and_budgets_parse_with_their_defaults() {
    let c = Config::parse(VALID).unwrap();
    assert_eq!(c.state, StateConfig::default());
    assert_eq!(c.state.on_redis_error, OnRedisError::Open);
    assert!(!c.cache.enabled, "no [cache] section: no cache");

    let text = format!(
        "[state]\nredis_url = \"redis://:pw@127.0.0.1:6379/2\"\non_redis_error = \"closed\"\n\
         redis_timeout_ms = 100\nhold_ttl_s = 30\ndir = \"data\"\n\
         [cache]\nttl_s = 60\nscope = \"shared\"\n{VALID}\
         limits = {{ rpm = 6000, tpm = 2000000 }}\ncache_ttl_s = 0\n{KEY}\
         limits = {{ rpm = 600, max_concurrent = 20 }}\n\
         model_limits = {{ \"gpt-4o-mini\" = {{ tpm = 1000 }} }}\n\
         budget = {{ usd_per_day = 20.0, usd_per_month = 300.0 }}\n"
    );
    let c = Config::parse(&text).unwrap();
    assert_eq!(c.state.on_redis_error, OnRedisError::Closed);
    assert_eq!(c.state.redis_timeout, Duration::from_millis(100));
    assert_eq!(c.state.hold_ttl, Duration::from_secs(30));
    assert_eq!(c.state.dir, PathBuf::from("data"));
    assert!(c.cache.enabled);
    assert_eq!(c.cache.scope, CacheScope::Shared);
    assert_eq!(c.models[0].cache_ttl, Some(Duration::ZERO));
    assert_eq!(c.models[0].limits.rpm, Some(6000));
    let k = &c.keys[0];
    assert_eq!(k.limits.max_concurrent, Some(20));
    assert_eq!(k.limits.tpm, None);
    assert_eq!(k.model_limits["gpt-4o-mini"].tpm, Some(1000));
    assert_eq!(k.budget.usd_per_month, Some(300.0));
    // The URL holds a password: it never prints.
    assert!(!format!("{:?}", c.state).contains("pw@"));
}

#[test]
fn bad_state_and_limits_values_name_their_key() {
    let with_key = |extra: &str| format!("{VALID}{KEY}{extra}\n");
    let cases = [
        (
            format!("[state]\nredis_url = \"http://x\"\n{VALID}"),
            "state.redis_url",
        ),
        (
            format!("[state]\non_redis_error = \"maybe\"\n{VALID}"),
            "state.on_redis_error",
        ),
        (
            format!("[state]\nhold_ttl_s = 0\n{VALID}"),
            "state.hold_ttl_s",
        ),
        (format!("[cache]\nscope = \"all\"\n{VALID}"), "cache.scope"),
        (format!("[cache]\nttl_s = 0\n{VALID}"), "cache.ttl_s"),
        (with_key("limits = { rpm = 0 }"), "keys[0].limits.rpm"),
        (
            with_key("budget = { usd_per_day = -1.0 }"),
            "keys[0].budget.usd_per_day",
        ),
        (
            with_key("model_limits = { \"nope\" = { rpm = 1 } }"),
            "keys[0].model_limits.nope",
        ),
        (
            format!("{VALID}limits = {{ max_concurrent = 0 }}\n"),
            "models[0].limits.max_concurrent",
        ),
    ];
    for (text, key) in cases {
        assert_eq!(err(&text).key, key, "{text}");
    }
    // A bad Redis URL is not echoed: it may hold a password.
    let e = err(&format!(
        "[state]\nredis_url = \"nope://:secret@x\"\n{VALID}"
    ));
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn telemetry_parses_with_its_defaults_and_keeps_header_values_secret() {
    let c = Config::parse(VALID).unwrap();
    assert_eq!(c.telemetry, TelemetryConfig::default());
    assert_eq!(c.telemetry.traces_url, None);
    let c = Config::parse(&format!(
        "[telemetry]\notlp_endpoint = \"http://collector:4318/\"\nsampling_ratio = 0.25\n\
         capture_content = true\nheaders = {{ Authorization = \"Bearer tok-secret-1\" }}\n{VALID}"
    ))
    .unwrap();
    let t = &c.telemetry;
    assert_eq!(
        t.traces_url.as_deref(),
        Some("http://collector:4318/v1/traces")
    );
    assert_eq!(t.sampling_ratio, 0.25);
    assert!(t.capture_content);
    assert_eq!(t.headers[0].0, "authorization");
    assert_eq!(t.headers[0].1.expose(), "Bearer tok-secret-1");
    assert!(!format!("{c:?}").contains("tok-secret-1"));
    // A full traces URL is taken as it is.
    let c = Config::parse(&format!(
        "[telemetry]\notlp_endpoint = \"https://otel.example/v1/traces\"\n{VALID}"
    ))
    .unwrap();
    assert_eq!(
        c.telemetry.traces_url.as_deref(),
        Some("https://otel.example/v1/traces")
    );
}

#[test]
fn bad_telemetry_values_name_their_key_and_never_a_header_value() {
    let cases = [
        (
            "otlp_endpoint = \"collector:4318\"",
            "telemetry.otlp_endpoint",
        ),
        (
            "otlp_endpoint = \"grpc://c:4317\"",
            "telemetry.otlp_endpoint",
        ),
        (
            "otlp_endpoint = \"http://c:4318\"\nsampling_ratio = 1.5",
            "telemetry.sampling_ratio",
        ),
        (
            "otlp_endpoint = \"http://c:4318\"\nsampling_ratio = -0.1",
            "telemetry.sampling_ratio",
        ),
        ("sampling_ratio = 0.5", "telemetry.otlp_endpoint"),
        (
            "otlp_endpoint = \"http://c:4318\"\nheaders = { \"bad name\" = \"x\" }",
            "telemetry.headers.bad name",
        ),
        (
            "otlp_endpoint = \"http://c:4318\"\nheaders = { x-token = \"env:SWITCHYARD_TEST_UNSET_OTLP\" }",
            "telemetry.headers.x-token",
        ),
        (
            "otlp_endpoint = \"http://c:4318\"\nservice_name = \" \"",
            "telemetry.service_name",
        ),
    ];
    for (section, key) in cases {
        let text = format!("[telemetry]\n{section}\n{VALID}");
        assert_eq!(err(&text).key, key, "{text}");
    }
    let e = err(&format!(
        "[telemetry]\notlp_endpoint = \"http://c:4318\"\nheaders = {{ x-token = \"tok\\nsecret\" }}\n{VALID}"
    ));
    assert!(!e.to_string().contains("secret"), "{e}");
}

#[test]
fn stream_keepalive_is_off_or_at_least_a_tenth_of_a_second() {
    let with = |ms: &str| {
        VALID.replace(
            "grpc_addr = \"127.0.0.1:50051\"",
            &format!("grpc_addr = \"127.0.0.1:50051\"\nstream_keepalive_ms = {ms}"),
        )
    };
    let c = Config::parse(VALID).unwrap();
    assert_eq!(c.server.stream_keepalive, Some(Duration::from_secs(15)));
    assert_eq!(
        Config::parse(&with("0")).unwrap().server.stream_keepalive,
        None
    );
    assert_eq!(
        Config::parse(&with("100")).unwrap().server.stream_keepalive,
        Some(Duration::from_millis(100))
    );
    let e = err(&with("5"));
    assert_eq!(e.key, "server.stream_keepalive_ms");
    assert!(e.to_string().contains("at least 100"), "{e}");
}
