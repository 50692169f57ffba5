//! Reading the canonical request the same way for every wire format: tool-call arguments
//! as a JSON object, and `data:` URLs of images.

use serde_json::value::RawValue;

/// A tool call's arguments as a JSON object, checked but not rebuilt (sent as written);
/// empty arguments are the empty object. `None` when they are not a JSON object.
pub(crate) fn arguments_object(arguments: &str) -> Option<&RawValue> {
    let text = match arguments.trim() {
        "" => "{}",
        text => text,
    };
    let raw: &RawValue = serde_json::from_str(text).ok()?;
    raw.get().starts_with('{').then_some(raw)
}

/// A base64 `data:` URL: `data:{media_type};base64,{data}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DataUrl<'a> {
    pub media_type: &'a str,
    pub data: &'a str,
}

/// `None` when `url` is not a `data:` URL; an error naming the problem when it is one but
/// malformed or not base64.
pub(crate) fn data_url(url: &str) -> Option<Result<DataUrl<'_>, &'static str>> {
    let rest = url.strip_prefix("data:")?;
    let Some((meta, data)) = rest.split_once(',') else {
        return Some(Err("malformed data URL"));
    };
    Some(match meta.strip_suffix(";base64") {
        Some(media_type) => Ok(DataUrl { media_type, data }),
        None => Err("only base64 data URLs are supported"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_must_be_an_object_and_empty_means_empty() {
        assert_eq!(arguments_object(" ").unwrap().get(), "{}");
        assert_eq!(
            arguments_object("{\"a\": [1]}").unwrap().get(),
            "{\"a\": [1]}"
        );
        assert!(arguments_object("[1]").is_none());
        assert!(arguments_object("{broken").is_none());
    }

    #[test]
    fn data_urls_parse_or_say_why_not() {
        assert_eq!(
            data_url("data:image/png;base64,AAAA"),
            Some(Ok(DataUrl {
                media_type: "image/png",
                data: "AAAA"
            }))
        );
        assert_eq!(data_url("https://x/y.png"), None);
        assert_eq!(
            data_url("data:image/png,AAAA"),
            Some(Err("only base64 data URLs are supported"))
        );
        assert_eq!(data_url("data:nocomma"), Some(Err("malformed data URL")));
    }
}
