use crate::config::{Config, SecurityLevel};

const BASE: &str = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9\"\n\
                    [[models]]\nname = \"m\"\ndeployments = [{ provider = \"p\", model = \"m\" }]\n";

fn parse(extra: &str) -> Result<Config, crate::config::ConfigError> {
    Config::parse(&format!("{extra}\n{BASE}"))
}

fn err_key(extra: &str) -> String {
    parse(extra).unwrap_err().key
}

#[test]
fn nothing_configured_redacts_nothing() {
    let c = parse("").unwrap();
    assert!(!c.data.redacts() && !c.data.rules.any() && c.data.guards.is_empty());
    assert!(c.data.redaction(None, SecurityLevel::High).is_none());
}

#[test]
fn the_most_specific_scope_wins() {
    let c = parse(
        "[redaction]\ndetectors = [\"email\"]\n\
         [redaction.profiles.strict]\ndetectors = [\"card\"]\nmode = \"block\"\n\
         [redaction.levels]\nhigh = \"strict\"\nmedium = \"off\"\n\
         [[keys]]\nname = \"a\"\nkey = \"key-a-0123456789abcdef\"\nredaction = \"off\"\n\
         [[keys]]\nname = \"b\"\nkey = \"key-b-0123456789abcdef\"\n",
    )
    .unwrap();
    let d = &c.data;
    assert_eq!(
        &*d.redaction(Some("b"), SecurityLevel::Low).unwrap().name,
        "gateway"
    );
    assert_eq!(
        &*d.redaction(Some("b"), SecurityLevel::High).unwrap().name,
        "strict"
    );
    assert!(d.redaction(Some("b"), SecurityLevel::Medium).is_none());
    assert!(d.redaction(Some("a"), SecurityLevel::High).is_none());
}

#[test]
fn mistakes_name_their_key() {
    assert_eq!(
        err_key("[redaction]\ndetectors = [\"dna\"]\n"),
        "redaction.detectors"
    );
    assert_eq!(
        err_key("[redaction]\nmode = \"mask\"\n"),
        "redaction.detectors"
    );
    assert_eq!(
        err_key("[redaction]\ndetectors = [\"email\"]\nmode = \"block\"\nrestore = true\n"),
        "redaction.restore"
    );
    assert_eq!(
        err_key("[redaction]\ndetectors = [\"email\"]\nmode = \"shred\"\n"),
        "redaction.mode"
    );
    assert_eq!(
        err_key("[redaction.levels]\nhigh = \"nope\"\n"),
        "redaction.levels.high"
    );
    assert_eq!(
        err_key("[redaction.levels]\nextreme = \"off\"\n"),
        "redaction.levels.extreme"
    );
    assert_eq!(
        err_key("[[keys]]\nname = \"a\"\nkey = \"key-a-0123456789abcdef\"\nredaction = \"nope\"\n"),
        "keys[0].redaction"
    );
    assert_eq!(
        err_key("[[content_rules]]\nname = \"r\"\nwords = [\"x\"]\non = \"sideways\"\n"),
        "content_rules[0].on"
    );
    assert_eq!(
        err_key("[[content_rules]]\nname = \"r\"\nwords = [\"x\"]\naction = \"shout\"\n"),
        "content_rules[0].action"
    );
    assert_eq!(
        err_key(
            "[[content_rules]]\nname = \"r\"\nwords = [\"x\"]\n[[content_rules]]\nname = \"r\"\nwords = [\"y\"]\n"
        ),
        "content_rules[1].name"
    );
}

#[test]
fn a_guard_name_is_a_file_name() {
    let bad = BASE.replace(
        "name = \"m\"\n",
        "name = \"m\"\nguard = \"../etc/passwd\"\n",
    );
    assert_eq!(Config::parse(&bad).unwrap_err().key, "models[0].guard");
}
