//! Splits an XMPP stream into top-level elements (stanzas, stream-management and SASL
//! elements) without a full parser: tags are found and nesting counted, which is all the
//! driver needs to count stanzas for `h` and to read the few attributes it looks at. Pure, so
//! every chunking is tested.

/// Bytes arrive in any chunking; `next` yields each complete top-level element once.
#[derive(Default)]
pub struct Splitter {
    buf: String,
    /// Where scanning resumes.
    pos: usize,
    /// 0 before the stream header, 1 inside the stream, more inside an element.
    depth: usize,
    /// Where the element being read started.
    start: usize,
}

/// What `next` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    Element(String),
    /// The server closed its stream.
    StreamEnd,
}

impl Splitter {
    pub fn push(&mut self, bytes: &str) {
        self.buf.push_str(bytes);
    }

    pub fn next(&mut self) -> Option<Item> {
        loop {
            let lt = self.pos + self.buf[self.pos..].find('<')?;
            let gt = tag_end(&self.buf, lt)?;
            let tag = &self.buf[lt..=gt];
            self.pos = gt + 1;
            if tag.starts_with("<?") || tag.starts_with("<!") {
                continue;
            }
            if tag.starts_with("<stream:stream") {
                // A (re)started stream: whatever came before is finished with.
                self.depth = 1;
                self.compact();
                continue;
            }
            if tag.starts_with("</") {
                self.depth = self.depth.saturating_sub(1);
                match self.depth {
                    0 => {
                        self.compact();
                        return Some(Item::StreamEnd);
                    }
                    1 => return Some(self.element()),
                    _ => continue,
                }
            }
            if self.depth == 1 {
                self.start = lt;
            }
            if tag.ends_with("/>") {
                if self.depth == 1 {
                    return Some(self.element());
                }
            } else {
                self.depth += 1;
            }
        }
    }

    fn element(&mut self) -> Item {
        let e = self.buf[self.start..self.pos].to_string();
        self.compact();
        Item::Element(e)
    }

    /// Drops what was read, so the buffer holds at most one element in progress.
    fn compact(&mut self) {
        self.buf.drain(..self.pos);
        self.pos = 0;
        self.start = 0;
    }
}

/// The index of the `>` closing the tag that opens at `lt`, skipping quoted attribute values.
fn tag_end(s: &str, lt: usize) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s[lt..].char_indices() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '>') => return Some(lt + i),
            _ => {}
        }
    }
    None
}

/// The element's name (`message`, `presence`, `a`, `stream:features`, ...).
pub fn name(element: &str) -> &str {
    let rest = element.strip_prefix('<').unwrap_or(element);
    let end = rest.find(|c: char| c.is_whitespace() || c == '>' || c == '/').unwrap_or(rest.len());
    &rest[..end]
}

/// An attribute of the element's opening tag, in either quoting.
pub fn attr<'a>(element: &'a str, key: &str) -> Option<&'a str> {
    let tag = &element[..tag_end(element, 0).unwrap_or(element.len())];
    for q in ['\'', '"'] {
        let needle = format!(" {key}={q}");
        if let Some(at) = tag.find(&needle) {
            let rest = &tag[at + needle.len()..];
            return rest.find(q).map(|end| &rest[..end]);
        }
    }
    None
}

/// The text of the first `<child>` in the element, if any.
pub fn child_text<'a>(element: &'a str, child: &str) -> Option<&'a str> {
    let open = element.find(&format!("<{child}>"))? + child.len() + 2;
    let close = element[open..].find(&format!("</{child}>"))?;
    Some(&element[open..open + close])
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' id='x'>\
        <stream:features><mechanisms><mechanism>PLAIN</mechanism></mechanisms></stream:features>\
        <success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>\
        <stream:stream id='y'><message from=\"a@b/c\" to='d'><body>t12 x&gt;y</body></message>\
        <r xmlns='urn:xmpp:sm:3'/><presence from='q@b' type='subscribe' note='1>0'/>\
        </stream:stream>";

    fn all(chunks: &[&str]) -> Vec<Item> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c);
            while let Some(i) = s.next() {
                out.push(i);
            }
        }
        out
    }

    #[test]
    fn any_chunking_gives_the_same_elements() {
        let whole = all(&[STREAM]);
        let names: Vec<&str> = whole
            .iter()
            .map(|i| match i {
                Item::Element(e) => name(e),
                Item::StreamEnd => "END",
            })
            .collect();
        assert_eq!(names, ["stream:features", "success", "message", "r", "presence", "END"]);
        for cut in 1..STREAM.len() {
            if STREAM.is_char_boundary(cut) {
                assert_eq!(all(&[&STREAM[..cut], &STREAM[cut..]]), whole, "cut at {cut}");
            }
        }
    }

    #[test]
    fn attributes_and_children() {
        let m = "<message from=\"a@b/c\" type='chat'><body>t12 hi</body></message>";
        assert_eq!(attr(m, "from"), Some("a@b/c"));
        assert_eq!(attr(m, "type"), Some("chat"));
        assert_eq!(attr(m, "id"), None);
        assert_eq!(child_text(m, "body"), Some("t12 hi"));
        assert_eq!(name("<a xmlns='urn:xmpp:sm:3' h='3'/>"), "a");
    }

    #[test]
    fn the_buffer_holds_one_element_at_most() {
        let mut s = Splitter::default();
        s.push("<stream:stream>");
        for _ in 0..1000 {
            s.push("<message><body>x</body></message>");
            while s.next().is_some() {}
        }
        assert!(s.buf.is_empty(), "{}", s.buf.len());
    }
}
