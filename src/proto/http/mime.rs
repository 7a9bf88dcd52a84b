//! Content types from file names (by extension), and the reverse for Blossom URLs; which
//! types are passive (a browser only displays them, never runs them). Pure.

const TYPES: &[(&str, &str)] = &[
    ("aac", "audio/aac"),
    ("avif", "image/avif"),
    ("bin", "application/octet-stream"),
    ("bz2", "application/x-bzip2"),
    ("css", "text/css"),
    ("csv", "text/csv"),
    ("epub", "application/epub+zip"),
    ("flac", "audio/flac"),
    ("gif", "image/gif"),
    ("gz", "application/gzip"),
    ("htm", "text/html"),
    ("html", "text/html"),
    ("ico", "image/vnd.microsoft.icon"),
    ("iso", "application/x-iso9660-image"),
    ("jpeg", "image/jpeg"),
    ("jpg", "image/jpeg"),
    ("js", "text/javascript"),
    ("json", "application/json"),
    ("m4a", "audio/mp4"),
    ("md", "text/markdown"),
    ("mkv", "video/x-matroska"),
    ("mov", "video/quicktime"),
    ("mp3", "audio/mpeg"),
    ("mp4", "video/mp4"),
    ("oga", "audio/ogg"),
    ("ogg", "audio/ogg"),
    ("ogv", "video/ogg"),
    ("opus", "audio/opus"),
    ("pdf", "application/pdf"),
    ("png", "image/png"),
    ("svg", "image/svg+xml"),
    ("tar", "application/x-tar"),
    ("torrent", "application/x-bittorrent"),
    ("txt", "text/plain"),
    ("wasm", "application/wasm"),
    ("wav", "audio/wav"),
    ("webm", "video/webm"),
    ("webp", "image/webp"),
    ("xml", "application/xml"),
    ("xz", "application/x-xz"),
    ("zip", "application/zip"),
    ("zst", "application/zstd"),
];

/// The default for unknown extensions.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// The content type for a file name, by its extension (case-insensitive).
pub fn from_name(name: &str) -> &'static str {
    let Some((_, ext)) = name.rsplit_once('.') else {
        return OCTET_STREAM;
    };
    let ext = ext.to_ascii_lowercase();
    TYPES
        .iter()
        .find(|(e, _)| *e == ext)
        .map_or(OCTET_STREAM, |(_, t)| t)
}

/// A file extension for a content type (without the dot), if one is known.
pub fn extension_for(content_type: &str) -> Option<&'static str> {
    let base = content_type.split(';').next()?.trim();
    TYPES
        .iter()
        .find(|(_, t)| t.eq_ignore_ascii_case(base))
        .map(|(e, _)| *e)
}

/// Whether a browser only displays this type and never runs code from it: raster images
/// (not SVG), audio, video, `text/plain` and `application/octet-stream`. Everything else
/// (HTML, SVG, XML, JavaScript, PDF, unknown types) is active and must not be served inline
/// on an origin that holds any authority.
pub fn is_passive(content_type: &str) -> bool {
    let base = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((top, sub)) = base.split_once('/') else {
        return false;
    };
    let sub_ok = !sub.is_empty()
        && !sub.contains("xml")
        && !sub.contains("html")
        && sub
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-_".contains(&b));
    match top {
        "image" => sub_ok && sub != "svg",
        "audio" | "video" => sub_ok,
        "text" => sub == "plain",
        "application" => sub == "octet-stream",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_extension_and_back() {
        assert_eq!(from_name("movie.MP4"), "video/mp4");
        assert_eq!(from_name("archive.tar.gz"), "application/gzip");
        assert_eq!(from_name("README"), OCTET_STREAM);
        assert_eq!(from_name("x."), OCTET_STREAM);
        assert_eq!(extension_for("image/png; q=1"), Some("png"));
        assert_eq!(extension_for("application/x-unknown"), None);
    }

    #[test]
    fn passive_types() {
        for t in [
            "image/png",
            "IMAGE/JPEG; q=1",
            "video/mp4",
            "audio/ogg",
            "text/plain; charset=utf-8",
            "application/octet-stream",
        ] {
            assert!(is_passive(t), "{t}");
        }
        for t in [
            "text/html",
            "image/svg+xml",
            "image/svg",
            "application/xml",
            "text/xml",
            "application/xhtml+xml",
            "text/javascript",
            "application/javascript",
            "application/pdf",
            "application/json",
            "text/css",
            "multipart/x-mixed-replace",
            "image/",
            "nonsense",
            "",
        ] {
            assert!(!is_passive(t), "{t}");
        }
    }
}
