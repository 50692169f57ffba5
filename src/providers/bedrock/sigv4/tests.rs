//! SigV4 pinned to AWS's published test suite, and the parts Bedrock relies on.

use std::time::{Duration, UNIX_EPOCH};

use super::*;

/// The credentials of AWS's SigV4 test suite (also the IAM guide's examples).
const SUITE: Signer<'static> = Signer {
    access_key_id: "AKIDEXAMPLE",
    secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    region: "us-east-1",
    service: "service",
};

/// 2015-08-30T12:36:00Z, the suite's request time.
fn suite_time() -> AmzDate {
    AmzDate::at(UNIX_EPOCH + Duration::from_secs(1_440_938_160))
}

fn empty_hash() -> String {
    sha256_hex(b"")
}

#[test]
fn the_time_is_formatted_as_the_suite_writes_it() {
    assert_eq!(suite_time().as_str(), "20150830T123600Z");
    assert_eq!(suite_time().day(), "20150830");
    // Leap day and year end, against the civil calendar.
    let at = |s| AmzDate::at(UNIX_EPOCH + Duration::from_secs(s));
    assert_eq!(at(951_782_400).as_str(), "20000229T000000Z");
    assert_eq!(at(1_704_067_199).as_str(), "20231231T235959Z");
    assert_eq!(at(0).as_str(), "19700101T000000Z");
}

/// AWS SigV4 test suite, `get-vanilla`, as published with aws-c-auth
/// (awslabs/aws-c-auth, tests/aws-signing-test-suite/v4/get-vanilla; the same vector as
/// the General Reference's "Signature Version 4 test suite"): `GET /` to
/// example.amazonaws.com with `host` and `x-amz-date` signed and an empty body.
#[test]
fn get_vanilla_matches_the_published_signature() {
    let hash = empty_hash();
    let request = Request {
        method: "GET",
        path: "/",
        query: "",
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ],
        payload_hash: &hash,
    };
    let signed = SUITE.sign(&request, &suite_time());
    assert_eq!(
        signed.authorization,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, \
         SignedHeaders=host;x-amz-date, \
         Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
    );
}

/// The same suite, `get-vanilla-with-session-token` (header-signed-request.txt): the
/// session token is a signed `x-amz-security-token` header.
#[test]
fn get_vanilla_with_session_token_matches_the_published_signature() {
    let hash = empty_hash();
    let token = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267";
    let request = Request {
        method: "GET",
        path: "/",
        query: "",
        headers: &[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
            ("x-amz-security-token", token),
        ],
        payload_hash: &hash,
    };
    let signed = SUITE.sign(&request, &suite_time());
    assert_eq!(
        signed.signed_headers,
        "host;x-amz-date;x-amz-security-token"
    );
    assert_eq!(
        signed.signature,
        "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"
    );
}

#[test]
fn path_segments_are_encoded_again_so_a_colon_signs_as_percent_25_3a() {
    let hash = empty_hash();
    let request = Request {
        method: "POST",
        path: "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse",
        query: "",
        headers: &[("host", "bedrock-runtime.us-east-1.amazonaws.com")],
        payload_hash: &hash,
    };
    let (canonical, signed) = canonical_request(&request);
    assert_eq!(
        canonical.lines().nth(1),
        Some("/model/anthropic.claude-3-5-haiku-20241022-v1%253A0/converse")
    );
    assert_eq!(signed, "host");
    assert_eq!(uri_encode("a b/c~d_e.f-g:h"), "a%20b%2Fc~d_e.f-g%3Ah");
}

#[test]
fn header_values_are_trimmed_and_names_sorted_case_insensitively() {
    let hash = empty_hash();
    let request = Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &[
            ("X-Amz-Date", "  20150830T123600Z "),
            ("Content-Type", "application/json"),
            ("host", "h  with   spaces"),
        ],
        payload_hash: &hash,
    };
    let (canonical, signed) = canonical_request(&request);
    assert_eq!(signed, "content-type;host;x-amz-date");
    assert!(canonical.contains(
        "content-type:application/json\nhost:h with spaces\nx-amz-date:20150830T123600Z\n\n"
    ));
}

#[test]
fn dates_parse_only_when_well_formed() {
    assert_eq!(AmzDate::parse("20150830T123600Z"), Some(suite_time()));
    for bad in [
        "20150830T123600",
        "2015-08-30T12:36:00Z",
        "20151330T123600Z",
        "",
    ] {
        assert_eq!(AmzDate::parse(bad), None, "{bad}");
    }
}

#[test]
fn an_authorization_header_round_trips_through_parse() {
    let hash = empty_hash();
    let request = Request {
        method: "GET",
        path: "/",
        query: "",
        headers: &[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", "20150830T123600Z"),
        ],
        payload_hash: &hash,
    };
    let signed = SUITE.sign(&request, &suite_time());
    let parsed = Authorization::parse(&signed.authorization).unwrap();
    assert_eq!(parsed.access_key_id, "AKIDEXAMPLE");
    assert_eq!(parsed.day, "20150830");
    assert_eq!(parsed.region, "us-east-1");
    assert_eq!(parsed.service, "service");
    assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
    assert_eq!(parsed.signature, signed.signature);
    for bad in [
        "Bearer abc",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service, SignedHeaders=host, Signature=00",
        "AWS4-HMAC-SHA256 Credential=AKID/2015083/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=x-amz-date;host, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/bedrock/aws4_request, SignedHeaders=host, Signature=xyz",
    ] {
        assert!(Authorization::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn secrets_stay_out_of_the_signature_output() {
    let hash = empty_hash();
    let request = Request {
        method: "GET",
        path: "/",
        query: "",
        headers: &[("host", "example.amazonaws.com")],
        payload_hash: &hash,
    };
    let signed = SUITE.sign(&request, &suite_time());
    let debug = format!("{signed:?}");
    assert!(!debug.contains(SUITE.secret_access_key));
}
