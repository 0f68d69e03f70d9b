//! The live dashboard served at `GET /`: one HTML page, its script and its style sheet,
//! embedded in the binary at compile time (`src/http/page/`). No build step, no CDN, nothing
//! fetched at run time but the engine's own `/markets`, `/stats` and the book stream
//! (docs/http-api.md, "The dashboard"). Pure lookup; the HTTP thread calls it.

/// `(content type, body)` of the page file at `path`, or `None` when `path` is not one.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/" | "/index.html" => Some(("text/html; charset=utf-8", INDEX)),
        "/page/app.js" => Some(("text/javascript; charset=utf-8", APP)),
        "/page/style.css" => Some(("text/css; charset=utf-8", STYLE)),
        _ => None,
    }
}

const INDEX: &str = include_str!("page/index.html");
const APP: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/style.css");

#[cfg(test)]
mod tests {
    use super::asset;

    #[test]
    fn the_page_and_its_files_are_served_and_nothing_else() {
        let (ctype, html) = asset("/").unwrap_or_default();
        assert!(ctype.starts_with("text/html"));
        for linked in ["/page/app.js", "/page/style.css"] {
            assert!(html.contains(linked), "index.html links {linked}");
            assert!(asset(linked).is_some_and(|(_, body)| !body.is_empty()));
        }
        // Self-contained: nothing is loaded from another origin.
        for (_, body) in
            ["/", "/page/app.js", "/page/style.css"].map(|p| asset(p).unwrap_or_default())
        {
            assert!(!body.contains("https://") && !body.contains("http://"));
        }
        assert!(asset("/page/").is_none() && asset("/page/../Cargo.toml").is_none());
    }
}
