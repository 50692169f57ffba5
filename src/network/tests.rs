use super::*;
use http::HeaderValue;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn xff(values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
    }
    h
}

fn trusted(blocks: &[&str]) -> CidrSet {
    CidrSet::parse(blocks).unwrap()
}

#[test]
fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
    let t = trusted(&["10.0.0.0/8"]);
    let spoofed = xff(&["1.2.3.4"]);
    assert_eq!(
        client_ip(ip("203.0.113.5"), &spoofed, &t),
        Some(ip("203.0.113.5"))
    );
    // No trusted proxies at all: the header is never read.
    assert_eq!(
        client_ip(ip("10.0.0.1"), &spoofed, &CidrSet::default()),
        Some(ip("10.0.0.1"))
    );
}

#[test]
fn a_trusted_peer_gives_the_right_most_untrusted_entry() {
    let t = trusted(&["10.0.0.0/8"]);
    // The caller forged "6.6.6.6"; our edge proxy appended the address it saw.
    let h = xff(&["6.6.6.6, 198.51.100.7, 10.1.1.1"]);
    assert_eq!(client_ip(ip("10.2.2.2"), &h, &t), Some(ip("198.51.100.7")));
    // Several header lines read as one list, in order.
    let h = xff(&["6.6.6.6", "198.51.100.7", "10.1.1.1"]);
    assert_eq!(client_ip(ip("10.2.2.2"), &h, &t), Some(ip("198.51.100.7")));
    // Ports and IPv6 forms.
    let h = xff(&["[2001:db8::7]:4711"]);
    assert_eq!(client_ip(ip("10.2.2.2"), &h, &t), Some(ip("2001:db8::7")));
    let h = xff(&["198.51.100.7:80"]);
    assert_eq!(client_ip(ip("10.2.2.2"), &h, &t), Some(ip("198.51.100.7")));
}

#[test]
fn a_trusted_peer_without_a_header_or_with_only_trusted_hops() {
    let t = trusted(&["10.0.0.0/8"]);
    assert_eq!(
        client_ip(ip("10.2.2.2"), &HeaderMap::new(), &t),
        Some(ip("10.2.2.2"))
    );
    let h = xff(&["10.9.9.9, 10.1.1.1"]);
    assert_eq!(client_ip(ip("10.2.2.2"), &h, &t), Some(ip("10.9.9.9")));
    // A dual-stack socket's mapped form is the IPv4 peer.
    assert_eq!(
        client_ip(ip("::ffff:10.2.2.2"), &xff(&["198.51.100.7"]), &t),
        Some(ip("198.51.100.7"))
    );
}

#[test]
fn garbage_in_the_chain_makes_the_client_unknown() {
    let t = trusted(&["10.0.0.0/8"]);
    let h = xff(&["198.51.100.7, unknown"]);
    assert_eq!(client_ip(ip("10.2.2.2"), &h, &t), None);
    // Garbage left of the first untrusted entry is never read.
    let h = xff(&["garbage, 198.51.100.7"]);
    assert_eq!(client_ip(ip("10.2.2.2"), &h, &t), Some(ip("198.51.100.7")));
}

#[test]
fn probes_are_the_health_paths_only() {
    assert!(is_probe("/healthz"));
    assert!(is_probe("/readyz"));
    assert!(is_probe("/grpc.health.v1.Health/Check"));
    assert!(!is_probe("/healthz/../v1/chat/completions"));
    assert!(!is_probe("/v1/models"));
    assert!(!is_probe("/status"));
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Request {
    let mut b = http::Request::builder().uri(uri);
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    b.body(axum::body::Body::empty()).unwrap()
}

#[test]
fn the_head_limits_name_what_was_exceeded() {
    let limits = RequestLimits {
        max_header_count: 3,
        max_header_bytes: 40,
        max_url_bytes: 20,
    };
    assert!(check_head(&limits, &request("/v1/models", &[("a", "b")])).is_ok());
    let many = request("/", &[("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")]);
    let e = check_head(&limits, &many).unwrap_err();
    assert_eq!(e.spec().status, 431);
    assert!(e.to_string().contains("server.max_header_count"), "{e}");
    let big = request("/", &[("a", &"x".repeat(40))]);
    let e = check_head(&limits, &big).unwrap_err();
    assert_eq!(e.spec().status, 431);
    assert!(e.to_string().contains("server.max_header_bytes"), "{e}");
    let long = request(&format!("/v1/models?{}", "q".repeat(20)), &[]);
    let e = check_head(&limits, &long).unwrap_err();
    assert_eq!(e.spec().status, 414);
    assert_eq!(e.spec().code, Some("url_too_long"));
}
