//! A minimal XML reader for the answers of S3 and Azure (listings, upload ids, errors): elements,
//! text, the five predefined entities and numeric character references, CDATA; attributes,
//! comments, processing instructions and doctypes are skipped. Namespaces prefixes are dropped
//! from element names. Enough for the documents these services send; not a general parser.

use crate::error::{Error, Kind, Result};

/// An element: its name (without namespace prefix), its text (concatenated), its children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Every child named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub fn child_text(&self, name: &str) -> Option<String> {
        self.child(name).map(|c| c.text.clone())
    }
}

/// Escape text for an XML body.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(
        Kind::Storage,
        format!("malformed XML answer: {}", msg.into()),
    )
}

fn decode_entities(raw: &str, out: &mut String) -> Result<()> {
    let mut rest = raw;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or_else(|| bad("unterminated entity"))?;
        let ent = &after[..end];
        match ent {
            "amp" => out.push('&'),
            "lt" => out.push('<'),
            "gt" => out.push('>'),
            "quot" => out.push('"'),
            "apos" => out.push('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => {
                let v = u32::from_str_radix(&e[2..], 16)
                    .map_err(|_| bad(format!("bad entity &{e};")))?;
                out.push(char::from_u32(v).ok_or_else(|| bad(format!("bad entity &{e};")))?);
            }
            e if e.starts_with('#') => {
                let v: u32 = e[1..]
                    .parse()
                    .map_err(|_| bad(format!("bad entity &{e};")))?;
                out.push(char::from_u32(v).ok_or_else(|| bad(format!("bad entity &{e};")))?);
            }
            e => return Err(bad(format!("unknown entity &{e};"))),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(())
}

fn local_name(tag: &str) -> &str {
    let name = tag
        .split(|c: char| c.is_ascii_whitespace() || c == '/')
        .next()
        .unwrap_or("");
    match name.rfind(':') {
        Some(i) => &name[i + 1..],
        None => name,
    }
}

/// Parse a document and return its root element.
pub fn parse(text: &str) -> Result<Element> {
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find('<') {
            None => {
                decode_entities(rest, &mut stack.last_mut().expect("root").text)?;
                break;
            }
            Some(i) => {
                if i > 0 {
                    decode_entities(&rest[..i], &mut stack.last_mut().expect("root").text)?;
                }
                rest = &rest[i..];
            }
        }
        if let Some(r) = rest.strip_prefix("<!--") {
            let end = r.find("-->").ok_or_else(|| bad("unterminated comment"))?;
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("<![CDATA[") {
            let end = r.find("]]>").ok_or_else(|| bad("unterminated CDATA"))?;
            stack.last_mut().expect("root").text.push_str(&r[..end]);
            rest = &r[end + 3..];
        } else if rest.starts_with("<?") || rest.starts_with("<!") {
            let end = rest
                .find('>')
                .ok_or_else(|| bad("unterminated declaration"))?;
            rest = &rest[end + 1..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = r.find('>').ok_or_else(|| bad("unterminated end tag"))?;
            let name = local_name(r[..end].trim());
            let el = stack.pop().ok_or_else(|| bad("unbalanced end tag"))?;
            if el.name != name || stack.is_empty() {
                return Err(bad(format!(
                    "end tag </{name}> does not match <{}>",
                    el.name
                )));
            }
            stack.last_mut().expect("parent").children.push(el);
            rest = &r[end + 1..];
        } else {
            let r = &rest[1..];
            let end = r.find('>').ok_or_else(|| bad("unterminated start tag"))?;
            let inner = &r[..end];
            let self_closing = inner.ends_with('/');
            let el = Element {
                name: local_name(inner).to_owned(),
                ..Element::default()
            };
            if el.name.is_empty() {
                return Err(bad("empty tag name"));
            }
            if self_closing {
                stack.last_mut().expect("parent").children.push(el);
            } else {
                stack.push(el);
            }
            rest = &r[end + 1..];
        }
    }
    if stack.len() != 1 {
        return Err(bad(format!(
            "unclosed element <{}>",
            stack.last().map(|e| e.name.as_str()).unwrap_or("")
        )));
    }
    let root = stack.pop().expect("root");
    root.children
        .into_iter()
        .next()
        .ok_or_else(|| bad("no root element"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_listing() {
        let doc = parse(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name>
<Contents><Key>p/a&amp;b</Key><Size>5</Size></Contents>
<Contents><Key><![CDATA[p/<c>]]></Key><Size>0</Size><Owner/></Contents>
<!-- comment --><IsTruncated>false</IsTruncated></ListBucketResult>"#,
        )
        .unwrap();
        assert_eq!(doc.name, "ListBucketResult");
        let keys: Vec<_> = doc
            .children_named("Contents")
            .map(|c| c.child_text("Key").unwrap())
            .collect();
        assert_eq!(keys, ["p/a&b", "p/<c>"]);
        assert_eq!(doc.child_text("IsTruncated").as_deref(), Some("false"));
        assert_eq!(parse("<a>&#65;&#x42;</a>").unwrap().text, "AB");
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["<a>", "<a></b>", "</a>", "<a>&bogus;</a>", "", "<a x=1"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(escape("<a&'\">"), "&lt;a&amp;&apos;&quot;&gt;");
    }
}
