use super::*;

fn found(detectors: &[Detector], text: &str) -> Vec<(Detector, String)> {
    let scanner = Scanner::new(detectors).unwrap();
    let mut out = Vec::new();
    scanner.scan(text, &mut out);
    out.into_iter()
        .map(|f| (f.detector, text[f.start..f.end].to_owned()))
        .collect()
}

fn all(text: &str) -> Vec<(Detector, String)> {
    found(&Detector::ALL, text)
}

#[test]
fn emails_are_found_with_their_whole_address() {
    assert_eq!(
        all("write to jane.doe+news@mail.example.co.uk today"),
        vec![(
            Detector::Email,
            "jane.doe+news@mail.example.co.uk".to_owned()
        )]
    );
    // A long local part is not mistaken for a secret token.
    let long = "averyveryverylongusernamethatislong123@example.com";
    assert_eq!(all(long), vec![(Detector::Email, long.to_owned())]);
    assert!(all("not an address: a@b, @home").is_empty());
}

#[test]
fn cards_pass_luhn_or_are_left_alone() {
    assert_eq!(
        all("card 4111 1111 1111 1111 exp"),
        vec![(Detector::Card, "4111 1111 1111 1111".to_owned())]
    );
    assert_eq!(
        all("card 5500-0000-0000-0004."),
        vec![(Detector::Card, "5500-0000-0000-0004".to_owned())]
    );
    // One digit off: Luhn fails, and no part of it is taken for something else.
    assert!(all("card 4111 1111 1111 1112 exp").is_empty());
    assert!(luhn("378282246310005"));
    assert!(!luhn("378282246310006"));
    assert!(!luhn("0000"));
}

#[test]
fn ibans_pass_mod_97_or_are_left_alone() {
    assert_eq!(
        all("pay DE89370400440532013000 now"),
        vec![(Detector::Iban, "DE89370400440532013000".to_owned())]
    );
    assert_eq!(
        all("IBAN: GB82 WEST 1234 5698 7654 32 THANKS"),
        vec![(Detector::Iban, "GB82 WEST 1234 5698 7654 32".to_owned())]
    );
    assert!(all("pay DE89370400440532013001 now").is_empty());
    assert!(iban("FR1420041010050500013M02606"));
    assert!(!iban("FR1420041010050500013M02607"));
}

#[test]
fn ssns_skip_numbers_never_issued() {
    assert_eq!(
        all("ssn 536-22-1234."),
        vec![(Detector::Ssn, "536-22-1234".to_owned())]
    );
    assert!(
        found(
            &[Detector::Ssn],
            "000-12-3456 666-12-3456 912-12-3456 123-00-4567"
        )
        .is_empty()
    );
}

#[test]
fn ip_addresses_v4_and_v6() {
    assert_eq!(
        all("from 192.168.10.254 and 2001:db8::8a2e:370:7334 ok"),
        vec![
            (Detector::Ip, "192.168.10.254".to_owned()),
            (Detector::Ip, "2001:db8::8a2e:370:7334".to_owned())
        ]
    );
    assert!(found(&[Detector::Ip], "version 999.1.1.1 at 12:30:45").is_empty());
}

#[test]
fn phones_international_and_grouped_not_dates() {
    assert_eq!(
        all("call +1 415 555 2671 or (020) 7946 0958"),
        vec![
            (Detector::Phone, "+1 415 555 2671".to_owned()),
            (Detector::Phone, "(020) 7946 0958".to_owned())
        ]
    );
    assert_eq!(
        all("call +14155552671."),
        vec![(Detector::Phone, "+14155552671".to_owned())]
    );
    assert!(found(&[Detector::Phone], "on 2024-01-15 at 10").is_empty());
}

#[test]
fn secrets_by_prefix_and_by_entropy() {
    let cases = [
        "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123",
        "sk-ant-api03-AbCdEfGhIjKlMnOpQrSt",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "github_pat_11ABCDEFG0123456789_abcdefghij",
        "xoxb-1234567890-abcdefghij",
        "AIzaSyA-0123456789abcdefghijABCDEFGHIJ_",
        "Zx9Qm2Lp7Vt4Rk8Wn3Hy6Jc1Bd5Fg0Ts",
    ];
    for secret in cases {
        assert_eq!(
            all(&format!("key: {secret} end")),
            vec![(Detector::Secret, secret.to_owned())],
            "{secret}"
        );
    }
    // Long but not random: words, hex digests, one-case identifiers.
    for plain in [
        "internationalization_of_the_application_layer",
        "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        "task-abcdefghijklmnopqrstuvwxyz",
    ] {
        assert!(all(plain).is_empty(), "{plain}");
    }
    assert!(entropy("aaaa") < 0.01);
}

#[test]
fn only_enabled_detectors_find_anything() {
    let text = "a@b.io 4111111111111111 192.168.0.1";
    assert_eq!(
        found(&[Detector::Ip], text),
        vec![(Detector::Ip, "192.168.0.1".to_owned())]
    );
    assert!(found(&[], text).is_empty());
}

#[test]
fn non_ascii_text_around_findings() {
    assert_eq!(
        all("Grüße an jürgen@example.de — danke"),
        vec![(Detector::Email, "jürgen@example.de".to_owned())]
    );
}

#[test]
fn a_rejected_candidate_does_not_hide_what_is_inside_it() {
    // A card followed by its expiry: the 18 digits fail Luhn, the first 16 pass.
    assert_eq!(
        all("card 4111 1111 1111 1111 12/27 please"),
        vec![(Detector::Card, "4111 1111 1111 1111".to_owned())]
    );
    // Inside a path the long-token shape swallows (and rejects for its low entropy).
    assert_eq!(
        all("https://api.example.com/payments/cards/4111111111111111/charge"),
        vec![(Detector::Card, "4111111111111111".to_owned())]
    );
    assert_eq!(
        all("/home/jane/documents/tax/ssn-123-45-6789.pdf"),
        vec![(Detector::Ssn, "123-45-6789".to_owned())]
    );
    let phone = all("call-me-at-the-office-number-415-555-2671");
    assert!(
        phone.iter().any(|(_, v)| v.contains("555-2671")),
        "{phone:?}"
    );
}

#[test]
fn a_long_rejected_run_is_scanned_once() {
    // Megabytes of low-entropy token characters: one pass, nothing found, no stall.
    let run = "ab/".repeat(400_000);
    assert!(all(&run).is_empty());
}
