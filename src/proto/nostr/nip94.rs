//! NIP-94 file metadata (kind 1063) for a stored file: the tags of the event the gateway
//! publishes and of a Blossom descriptor's `nip94` field (BUD-08). Pure.

/// The event kind of file metadata.
pub const KIND: u32 = 1063;

/// What a NIP-94 event says about a file.
#[derive(Debug, Clone)]
pub struct FileMeta<'a> {
    /// Where the file is fetched over HTTP (the Blossom URL, or the API's download URL).
    pub url: &'a str,
    pub mime: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub magnet: &'a str,
    /// Hex info-hash of the torrent.
    pub info_hash: &'a str,
    /// BEP-19 webseed URL of the torrent's file.
    pub webseed: &'a str,
    /// Other URLs serving the same bytes.
    pub fallbacks: &'a [String],
    pub name: &'a str,
}

fn tag(name: &str, value: &str) -> Vec<String> {
    vec![name.to_string(), value.to_string()]
}

/// The tags `url`, `m`, `x`, `ox`, `size`, `magnet`, `i`, `webseed`, `fallback`, `alt`.
pub fn tags(meta: &FileMeta<'_>) -> Vec<Vec<String>> {
    let mut tags = vec![
        tag("url", meta.url),
        tag("m", meta.mime),
        tag("x", meta.sha256),
        tag("ox", meta.sha256),
        tag("size", &meta.size.to_string()),
        tag("magnet", meta.magnet),
        tag("i", meta.info_hash),
        tag("webseed", meta.webseed),
    ];
    tags.extend(meta.fallbacks.iter().map(|f| tag("fallback", f)));
    tags.push(tag("alt", &format!("File: {}", meta.name)));
    tags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_required_tags() {
        let fallbacks = vec!["http://gw/download/ab".to_string()];
        let meta = FileMeta {
            url: "http://b/ab.txt",
            mime: "text/plain",
            sha256: "ab",
            size: 12,
            magnet: "magnet:?xt=urn:btih:cd",
            info_hash: "cd",
            webseed: "http://gw/webseed/cd/a.txt",
            fallbacks: &fallbacks,
            name: "a.txt",
        };
        let t = tags(&meta);
        for name in [
            "url", "m", "x", "size", "magnet", "i", "webseed", "fallback",
        ] {
            assert!(t.iter().any(|v| v[0] == name && v.len() == 2), "{name}");
        }
        assert!(t.contains(&tag("size", "12")));
    }
}
