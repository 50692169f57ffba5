use super::*;

#[test]
fn cache_control_takes_the_strongest_directive() {
    assert_eq!(Directive::parse(""), Directive::Normal);
    assert_eq!(Directive::parse("max-age=0"), Directive::Normal);
    assert_eq!(Directive::parse("No-Cache"), Directive::NoCache);
    assert_eq!(Directive::parse("no-store, no-cache"), Directive::NoStore);
    assert_eq!(Directive::parse("no-cache ,no-store"), Directive::NoStore);
    assert_eq!(Directive::parse("private, no-cache"), Directive::NoCache);
}
